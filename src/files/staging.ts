/**
 * The one interface between population (the route step) and legacy file delivery: memberships of
 * file-mode platforms are staged durably here, and the scheduled exporter publishes them per
 * (platform, segment, time window). A staged membership counts as delivered only once its file is
 * published.
 *
 * The route step calls `stage` and treats a resolved promise as "durably accepted" (it may then
 * delete the SQS message); a rejected promise means nothing was accepted and the caller retries.
 * Staging is idempotent per (platform, segment, dmpUserId, op, ts): a redelivered SQS message
 * stages nothing twice.
 */
export interface StagedMembership {
  readonly platformId: number;
  /** The partner's segment id, exactly as the partner sent it (text, never a JS number). */
  readonly segmentId: string;
  /** The DMP audience the segment belongs to (for accounting and `dmp why`). */
  readonly audienceId: string;
  readonly dmpUserId: string;
  /** The partner's user id from the mapping table: what the file carries. */
  readonly partnerUserId: string;
  readonly op: 'add' | 'remove';
  /** Event time (ISO 8601) from the audience event: orders an add and a later remove. */
  readonly ts: string;
  /** Membership lifetime in seconds, when the event carries one. */
  readonly ttlSeconds?: number;
}

export interface FileStaging {
  /** Stages every membership, or rejects having staged none that a retry would duplicate. */
  stage(memberships: readonly StagedMembership[]): Promise<void>;
}

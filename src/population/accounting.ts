/**
 * Where every accepted (platform, segment, user) event ends, counted per platform and segment:
 *
 * - `delivered`: the partner acknowledged it;
 * - `pending`: the user has no partner id yet (decremented when the sync releases it);
 * - `rejected`: set aside with a reason (`dmp rejected` lists them);
 * - `dlq`: its delivery message went to the dead-letter queue after `maxReceiveCount` receives;
 * - `superseded`: a newer event for the same user and segment was applied instead (order).
 *
 * A redelivered event that was already applied is counted nowhere a second time.
 */
export const OUTCOMES = ['delivered', 'pending', 'rejected', 'dlq', 'superseded'] as const;
export type Outcome = (typeof OUTCOMES)[number];

/**
 * Counted beside the outcomes: `calls` (partner calls, under NO_SEGMENT) and `expired` (removals
 * the service sent because an add expired, src/population/expiry.ts: not accepted events).
 */
export const TALLIES = ['calls', 'expired'] as const;
export type Tally = Outcome | (typeof TALLIES)[number];

export type Counts = Partial<Record<Tally, number>>;

/** Segment key for counts that belong to no segment yet (an invalid message, an unknown platform). */
export const NO_SEGMENT = '-';

export class CountBatch {
  private readonly counts = new Map<string, { platformId: number; segmentId: string; counts: Counts }>();

  add(platformId: number, segmentId: string, outcome: Tally, by = 1): void {
    if (by === 0) return;
    const key = `${platformId}#${segmentId}`;
    let entry = this.counts.get(key);
    if (!entry) {
      entry = { platformId, segmentId, counts: {} };
      this.counts.set(key, entry);
    }
    entry.counts[outcome] = (entry.counts[outcome] ?? 0) + by;
  }

  entries(): { platformId: number; segmentId: string; counts: Counts }[] {
    return [...this.counts.values()];
  }
}

export interface RejectedEntry {
  /** Stable per rejected thing (SQS message id and position), so a redelivery records it once. */
  readonly id: string;
  readonly reason: string;
  readonly detail: string;
  readonly platformId?: number | undefined;
  readonly segmentId?: string | undefined;
  readonly audienceId?: string | undefined;
  readonly dmpUserId?: string | undefined;
  /** How many memberships this entry stands for (a whole message: users x platforms). */
  readonly memberships: number;
  /** The start of the message body, for a malformed message. */
  readonly snippet?: string | undefined;
}

/**
 * The outcomes of one delivery message's memberships of one segment, computed from the stored
 * states when the message is settled. Written by key (message, platform, segment), not added: a
 * redelivery after a crash writes the same tally again, so `dmp stats` (which sums the tallies) counts
 * every membership exactly once, whatever crashed between the state writes and the count.
 */
export interface RecordTally {
  readonly recordId: string;
  readonly platformId: number;
  readonly segmentId: string;
  readonly counts: Counts;
}

export interface AccountingStore {
  addCounts(batch: CountBatch): Promise<void>;
  /** Writes (or rewrites) each tally. */
  putTallies(tallies: readonly RecordTally[]): Promise<void>;
  /** Records rejections; returns the ids recorded now (not before). */
  recordRejections(entries: readonly RejectedEntry[]): Promise<Set<string>>;
}

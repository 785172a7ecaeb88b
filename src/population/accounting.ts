import { createHash } from 'node:crypto';

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

/**
 * The count of one event before delivery (route and release steps): keyed by the event itself
 * (a pending event: platform, segment, user, ts, op) or by what was set aside (a rejection's id),
 * never by the invocation. Written after the state change it reflects, and again whenever a step
 * is repeated (a redelivery after a crash): writing the same key twice counts once. A tally with
 * no counts is deleted (a pending event released: the deliver step counts it from then on).
 */
export interface EventTally {
  readonly platformId: number;
  readonly segmentId: string;
  readonly key: string;
  readonly counts: Counts;
}

/** The tally key of a pending event; the user enters it as a digest, never as the id. */
export function pendingEventKey(m: {
  readonly platformId: number;
  readonly segmentId: string;
  readonly dmpUserId: string;
  readonly ts: number;
  readonly op: string;
}): string {
  const user = createHash('sha256').update(`${m.platformId}\u0000${m.dmpUserId}`).digest('hex').slice(0, 24);
  return `ev#${m.segmentId}#${user}#${m.ts}#${m.op}`;
}

type PendingEventLike = Parameters<typeof pendingEventKey>[0] & {
  readonly replaced: readonly { readonly ts: number; readonly op: string }[];
};

/**
 * The tallies of pending events once a step has moved them: each event's own (`counts`; none when
 * released to delivery, which counts it from then on) and `superseded` for every older event it
 * replaced.
 */
export function pendingTallies(events: readonly PendingEventLike[], counts: Counts): EventTally[] {
  return events.flatMap((event) => [
    { platformId: event.platformId, segmentId: event.segmentId, key: pendingEventKey(event), counts },
    ...event.replaced.map((older) => ({
      platformId: event.platformId,
      segmentId: event.segmentId,
      key: pendingEventKey({ ...event, ts: older.ts, op: older.op }),
      counts: { superseded: 1 },
    })),
  ]);
}

/** The tally of a rejection before delivery: its memberships, keyed by the rejection's id. */
export function rejectionTally(entry: RejectedEntry, platformId: number, segmentId: string): EventTally {
  return { platformId, segmentId, key: `rej#${entry.id}`, counts: { rejected: entry.memberships } };
}

export interface AccountingStore {
  addCounts(batch: CountBatch): Promise<void>;
  /** Writes (or rewrites) each tally. */
  putTallies(tallies: readonly RecordTally[]): Promise<void>;
  /** Writes (or rewrites) each event tally; one without counts is deleted. */
  putEventTallies(tallies: readonly EventTally[]): Promise<void>;
  /** Records rejections; returns the ids recorded now (not before). */
  recordRejections(entries: readonly RejectedEntry[]): Promise<Set<string>>;
}

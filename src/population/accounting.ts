import { createHash } from 'node:crypto';

/**
 * Where every accepted (platform, segment, user) event ends, counted per platform and segment:
 *
 * - `delivered`: the partner acknowledged it;
 * - `pending`: the user has no partner id yet (decremented when the sync releases it);
 * - `rejected`: set aside with a reason (`dmp rejected` lists them);
 * - `dlq`: its delivery message went to the dead-letter queue after `maxReceiveCount` receives;
 * - `superseded`: a newer event for the same user and segment was applied instead (order);
 * - `lapsed`: the user had no partner id within the time a pending event waits (14 days): the
 *   event was never delivered and never will be (a pending tally whose lapse time has passed,
 *   classified when the counts are read: `classifyEventTally`).
 *
 * A redelivered event that was already applied is counted nowhere a second time.
 */
export const OUTCOMES = ['delivered', 'pending', 'rejected', 'dlq', 'superseded', 'lapsed'] as const;
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
 * The count of one event keyed by the event itself (a pending event: platform, segment, user, ts,
 * op) or by what was set aside (a rejection's id), never by the invocation. Written after the state
 * change it reflects, and again whenever a step is repeated (a redelivery after a crash): writing
 * the same key twice counts once.
 *
 * A pending event keeps ONE tally for its whole life, whoever moves it: the route writes `pending`
 * (with `lapseAt`) or `superseded`, the release marks it handed to delivery (it counts nothing while
 * the delivery queue carries it), and the deliver step writes its outcome there (not in its
 * message's tally). Any interleaving of these steps, and any number of copies of the event sent
 * by repeated releases, therefore count it once (docs/population.md section 5).
 */
export interface EventTally {
  readonly platformId: number;
  readonly segmentId: string;
  readonly key: string;
  readonly counts: Counts;
  /** A pending event's lapse time (epoch seconds): counted `lapsed`, not `pending`, from then on. */
  readonly lapseAt?: number | undefined;
}

/**
 * What a stored event tally counts at `nowSeconds`: a `pending` one whose lapse time has passed
 * counts `lapsed` (its pending event is dropped; no release delivers it any more).
 */
export function classifyEventTally(counts: Counts, lapseAt: number | undefined, nowSeconds: number): Counts {
  if (!counts.pending || lapseAt === undefined || lapseAt > nowSeconds) return counts;
  const { pending, ...rest } = counts;
  return { ...rest, lapsed: (rest.lapsed ?? 0) + pending };
}

/** Whether a pending event lapsed at `nowSeconds` (it then is neither released nor re-counted). */
export const lapsed = (lapseAt: number, nowSeconds: number) => lapseAt <= nowSeconds;

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
  readonly lapseAt?: number | undefined;
};

/**
 * The tallies of pending events once a step has moved them: each event's own (`counts`; none when
 * handed to delivery, which counts it from then on; `pending` carries the event's lapse time) and
 * `superseded` for every older event it replaced.
 */
export function pendingTallies(events: readonly PendingEventLike[], counts: Counts): EventTally[] {
  return events.flatMap((event) => [
    {
      platformId: event.platformId,
      segmentId: event.segmentId,
      key: pendingEventKey(event),
      counts,
      ...(counts.pending && event.lapseAt !== undefined ? { lapseAt: event.lapseAt } : {}),
    },
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

/**
 * The partner calls of one deliver invocation, as a tally keyed by the invocation (a fresh id per
 * invocation, under NO_SEGMENT): written once with PutItem, so an SDK retry of the write counts
 * them once, and a redelivered message's calls (another invocation, really made again) count again.
 */
export function callsTally(platformId: number, invocationId: string, calls: number): RecordTally {
  return { recordId: `calls#${invocationId}`, platformId, segmentId: NO_SEGMENT, counts: { calls } };
}

export interface AccountingStore {
  /** Writes (or rewrites) each tally. */
  putTallies(tallies: readonly RecordTally[]): Promise<void>;
  /** Writes (or rewrites) each event tally; one without counts is deleted (rejections, forget). */
  putEventTallies(tallies: readonly EventTally[]): Promise<void>;
  /**
   * Pending events' tallies (route, release: `pending`, `superseded`, `rejected`), each written only
   * while its event is neither handed to delivery nor lapsed: what those say is final here.
   */
  putPendingTallies(tallies: readonly EventTally[], nowMs: number): Promise<void>;
  /**
   * These pending events were handed to delivery (after the send): their tallies count nothing
   * until the deliver step settles them; a tally the deliver step settled already is left alone.
   */
  markHandedOver(tallies: readonly Omit<EventTally, 'counts'>[]): Promise<void>;
  /**
   * Clears pending events' tallies (forget: no counts; `superseded` for the events they replaced),
   * each only while its event is not handed to delivery: the deliver step's count is left alone.
   */
  clearPendingTallies(tallies: readonly EventTally[]): Promise<void>;
  /**
   * Which of these event tallies exist (strongly consistent), as `${platformId}#${key}`: the route
   * asks it for a redelivered message only (an event an earlier receive made pending).
   */
  eventTalliesFound(tallies: readonly Omit<EventTally, 'counts'>[]): Promise<Set<string>>;
  /** The deliver step's outcome of released events, unless one of their copies was delivered. */
  settleEventTallies(tallies: readonly EventTally[]): Promise<void>;
  /** Records rejections; returns the ids recorded now (not before). */
  recordRejections(entries: readonly RejectedEntry[]): Promise<Set<string>>;
}

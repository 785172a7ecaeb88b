import type { Tally } from './accounting.ts';
import type { Membership } from './membership.ts';
import type { AppliedState } from './ordering.ts';

/**
 * What became of each membership of one delivery message, written once per message and receive
 * (`prog#<messageId>`), not once per membership: this is what makes the state one write per
 * membership (the intent, before the partner call) instead of two (docs/population.md section 3).
 *
 * One character per item of the message, by its position in the message (a message body never
 * changes between receives):
 *
 * - `-` open: not settled yet (never tried, tried and failed, or its receive died);
 * - `d` delivered: the partner acknowledged it;
 * - `r` rejected: set aside with a reason (`dmp rejected`);
 * - `s` superseded: a newer event of the membership was stored or came in the same batch;
 * - `u` the same event was stored by another message, which accounts for it.
 *
 * Every status but `-` is final: a redelivered message sends and counts nothing settled again.
 */

export const STATUS = {
  open: '-',
  delivered: 'd',
  rejected: 'r',
  superseded: 's',
  elsewhere: 'u',
} as const;
export type Status = (typeof STATUS)[keyof typeof STATUS];

export interface MessageProgress {
  /** One status per item of the message. */
  readonly statuses: string;
  /** When it was written (epoch ms): `dmp why` shows it as the acknowledgement time. */
  readonly writtenAt: number;
}

/** A membership with its place: the delivery message carrying it and its position in it. */
export type PlacedMembership = Membership & { readonly recordId: string; readonly index: number };

/**
 * After the deadline of the invocation that wrote an intent, its partner call may still be
 * answered for this long (a partner finishing a request the client gave up on).
 */
export const IN_FLIGHT_MARGIN_MS = 2_000;

export function isSettled(status: string | undefined): boolean {
  return status !== undefined && status !== STATUS.open;
}

/**
 * What a settled message counts for a membership (undefined: nothing). A removal at expiry is not
 * an accepted event: it counts `expired` when delivered, nothing otherwise.
 */
export function outcomeOf(status: string | undefined, expiry: boolean): Tally | undefined {
  switch (status) {
    case STATUS.delivered:
      return expiry ? 'expired' : 'delivered';
    case STATUS.elsewhere:
      return undefined;
    case STATUS.rejected:
      return expiry ? undefined : 'rejected';
    case STATUS.superseded:
      return expiry ? undefined : 'superseded';
    default:
      // Still open when its message is settled: this was its last receive.
      return expiry ? undefined : 'dlq';
  }
}

/**
 * Until when (epoch ms) the partner call of a stored intent may still land, or undefined when it
 * cannot: written by another message whose invocation's calls end by `dl`, and not settled by it.
 * An event sent before that time could reach the partner before the older one and be undone by it.
 */
export function inFlightUntil(
  stored: AppliedState | undefined,
  ownRecordId: string,
  progress: ReadonlyMap<string, MessageProgress>,
  nowMs: number,
): number | undefined {
  const until = callsMayLandUntil(stored, ownRecordId, nowMs);
  if (until === undefined || !stored?.by) return undefined;
  const status = stored.ix === undefined ? undefined : progress.get(stored.by)?.statuses[stored.ix];
  return isSettled(status) ? undefined : until;
}

/** Until when another message's call for a stored intent may land, by time alone (no progress read). */
export function callsMayLandUntil(
  stored: AppliedState | undefined,
  ownRecordId: string,
  nowMs: number,
): number | undefined {
  if (!stored?.by || stored.by === ownRecordId || stored.dl === undefined) return undefined;
  const until = stored.dl + IN_FLIGHT_MARGIN_MS;
  return until > nowMs ? until : undefined;
}

/** Statuses of one message, mutable while an invocation works on it. */
export class StatusLine {
  private readonly codes: string[];
  private changed = false;

  constructor(length: number, previous?: string) {
    this.codes = Array.from({ length }, (_, index) => previous?.[index] ?? STATUS.open);
  }

  get(index: number): string {
    return this.codes[index] ?? STATUS.open;
  }

  /** Sets a status unless one is already final (the first settlement stands). */
  set(index: number, status: Status): void {
    if (isSettled(this.codes[index]) || status === STATUS.open) return;
    this.codes[index] = status;
    this.changed = true;
  }

  get dirty(): boolean {
    return this.changed;
  }

  toString(): string {
    return this.codes.join('');
  }
}

import { type Membership, membershipKey, type Op } from './membership.ts';

/**
 * Order per (platform, segment, user): the membership at a partner is the one of the newest
 * event. Events are ranked by `ts`; at the same `ts` a remove ranks above an add (a user who left
 * and joined in the same millisecond is, conservatively, out). Whatever SQS redelivers or
 * reorders:
 * - an event ranked above what was last applied is applied;
 * - the same event again (same ts and op) is a duplicate: not sent, not counted again, unless the
 *   partner has not acknowledged it yet (its intent was stored, then the sender died or ran out of
 *   time): it is sent again;
 * - an event ranked below is stale: it must never undo the newer one.
 */

export interface AppliedState {
  readonly ts: number;
  readonly op: Op;
  /** The delivery message (SQS message id) whose delivery applied it (accounting, deliver-service.ts). */
  readonly by?: string | undefined;
  /** Its position in that message (its status in the message's progress, progress.ts). */
  readonly ix?: number | undefined;
  /** When the calls of the invocation that stored it end at the latest (epoch ms). */
  readonly dl?: number | undefined;
  /**
   * False while the event is only intended: stored (so that older events compare against it)
   * before the partner call, not yet acknowledged. Undefined counts as acknowledged. (States
   * written since the progress records carry no flag: progress.ts says whether they were.)
   */
  readonly acked?: boolean | undefined;
}

export type OrderVerdict = 'apply' | 'duplicate' | 'stale';

export function compareEvents(a: AppliedState, b: AppliedState): number {
  if (a.ts !== b.ts) return a.ts < b.ts ? -1 : 1;
  if (a.op === b.op) return 0;
  return a.op === 'remove' ? 1 : -1;
}

export function orderVerdict(stored: AppliedState | undefined, incoming: AppliedState): OrderVerdict {
  if (!stored) return 'apply';
  const order = compareEvents(incoming, stored);
  if (order === 0) return stored.acked === false ? 'apply' : 'duplicate';
  return order > 0 ? 'apply' : 'stale';
}

/**
 * Within one batch, the newest event per (platform, segment, user) survives; older ones are
 * superseded and exact repeats are duplicates. Survivors keep their first position.
 */
export function newestPerKey<T extends Membership>(
  memberships: readonly T[],
): { newest: T[]; superseded: T[]; duplicates: T[] } {
  const best = new Map<string, T>();
  const superseded: T[] = [];
  const duplicates: T[] = [];
  const firstIndex = new Map<string, number>();
  memberships.forEach((membership, index) => {
    const key = membershipKey(membership);
    const current = best.get(key);
    if (!firstIndex.has(key)) firstIndex.set(key, index);
    if (!current) {
      best.set(key, membership);
      return;
    }
    const verdict = orderVerdict(current, membership);
    if (verdict === 'apply') {
      superseded.push(current);
      best.set(key, membership);
    } else if (verdict === 'duplicate') {
      duplicates.push(membership);
    } else {
      superseded.push(membership);
    }
  });
  const newest = [...best.entries()]
    .sort((a, b) => (firstIndex.get(a[0]) ?? 0) - (firstIndex.get(b[0]) ?? 0))
    .map(([, membership]) => membership);
  return { newest, superseded, duplicates };
}

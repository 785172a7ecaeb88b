import { createHash } from 'node:crypto';
import type { Connector } from '../config/connector.ts';
import type { ExpiryIndex } from './dynamo-store.ts';
import { type Membership, packDeliveryMessages } from './membership.ts';
import { partnerTakesTtl } from './requests.ts';
import type { DeliveryQueues } from './route-service.ts';

/**
 * Removals at expiry, for partners that take removal calls but no lifetime with an add
 * (`removal.via: call`, no `{ttlSeconds}`/`{ttlMinutes}` in the add): when an add's lifetime (the
 * event's `ttlSeconds`, else the connector's `defaultTtlSeconds`) ends, the service sends the
 * removal itself.
 *
 * - The deliver step, writing an acknowledged add's state (the write it does anyway), also sets
 *   the attributes of the table's sparse `byExpiry` index: when the removal is due, in one of
 *   EXPIRY_SHARDS partitions per platform. No extra request; the index write is 1 WRU per add
 *   (docs/population.md, section 6). A newer add moves the due time; a removal leaves the index.
 * - A sweep every minute (lambdas/expire-memberships) reads the adds due since its last run (a
 *   watermark per platform, with an overlap for the index's eventual consistency and the clocks)
 *   and puts their removals on the platform's delivery queue. DynamoDB's TTL plays no part: it
 *   deletes within days, not at the second.
 * - A removal at expiry carries the add's own `ts` (a remove ranks above an add at the same ts),
 *   so the ordering rules decide: if the add is still the stored event, the removal is applied; if
 *   a newer add or a removal was applied meanwhile, it is stale or a duplicate and nothing is sent.
 *   A sweep that sends a removal twice (a crash before its watermark) is a duplicate the second time.
 */

/** Partitions of the expiry index per platform: 16 x DynamoDB's 1000 writes/s per partition key. */
export const EXPIRY_SHARDS = 16;
/** The sweep reads this far behind its last watermark (index lag, Lambdas' clocks). */
export const EXPIRY_OVERLAP_SECONDS = 300;

/** Whether the service must send this partner's removals at expiry. */
export function sendsRemovalsAtExpiry(connector: Connector): boolean {
  const { population } = connector;
  return population.mode !== 'file' && population.removal.via === 'call' && !partnerTakesTtl(connector);
}

/** When the removal of an add is due (epoch seconds), or undefined if none is to be sent. */
export function removalDueAt(connector: Connector, membership: Membership): number | undefined {
  if (membership.op !== 'add' || !sendsRemovalsAtExpiry(connector)) return undefined;
  const ttl = membership.ttlSeconds ?? connector.population.defaultTtlSeconds;
  return ttl === undefined ? undefined : Math.floor(membership.ts / 1000) + ttl;
}

export function expiryShard(dmpUserId: string): number {
  return createHash('sha256').update(dmpUserId).digest()[0]! % EXPIRY_SHARDS;
}

export function expiryPartition(platformId: number, shard: number): string {
  return `x#${platformId}#${shard}`;
}

/** The removal that ends an expired add: the add's own ts, so any newer event outranks it. */
export function removalAtExpiry(add: Membership): Membership {
  const { ttlSeconds: _ttl, ...rest } = add;
  return { ...rest, op: 'remove', expiry: true };
}

export interface ExpirySweepDeps {
  readonly index: ExpiryIndex;
  readonly queues: DeliveryQueues;
  /** The platforms whose removals are sent at expiry, with their delivery message size. */
  readonly platforms: readonly { readonly platformId: number; readonly batchSize: number }[];
  readonly nowMs: number;
  /** When to stop reading (epoch ms): what is left is taken by the next run. */
  readonly deadlineMs: number;
}

export interface ExpirySweepResult {
  readonly removals: number;
  /** Per platform, the due time up to which everything was sent (the new watermark). */
  readonly sweptUpTo: Record<number, number>;
}

/**
 * One sweep: for each platform, the adds due in (watermark - overlap, now] go to its delivery
 * queue as removals, page by page, and the watermark moves to what was fully sent. An error
 * leaves the watermark where it was (the schedule's next run sends again; duplicates are no-ops).
 */
export async function sweepExpired(deps: ExpirySweepDeps): Promise<ExpirySweepResult> {
  const nowSec = Math.floor(deps.nowMs / 1000);
  let removals = 0;
  const sweptUpTo: Record<number, number> = {};
  for (const { platformId, batchSize } of deps.platforms) {
    const previous = await deps.index.sweptUpTo(platformId);
    const fromSec = previous === undefined ? 0 : Math.max(0, previous - EXPIRY_OVERLAP_SECONDS);
    let upTo = nowSec;
    for (let shard = 0; shard < EXPIRY_SHARDS; shard++) {
      let startKey: Parameters<ExpiryIndex['dueAdds']>[4];
      do {
        if (Date.now() >= deps.deadlineMs) {
          // Out of time in this shard: what is due from here on waits for the next run.
          const last = await deps.index.dueAdds(platformId, shard, fromSec, nowSec, startKey);
          upTo = Math.min(upTo, (last.due[0]?.removeAt ?? nowSec + 1) - 1);
          break;
        }
        const page = await deps.index.dueAdds(platformId, shard, fromSec, nowSec, startKey);
        if (page.due.length > 0) {
          await deps.queues.send(
            platformId,
            packDeliveryMessages(
              platformId,
              page.due.map(({ removeAt: _due, ...add }) => removalAtExpiry(add)),
              batchSize,
            ),
          );
          removals += page.due.length;
        }
        startKey = page.nextKey;
      } while (startKey);
    }
    if (upTo > (previous ?? Number.NEGATIVE_INFINITY)) await deps.index.setSweptUpTo(platformId, upTo);
    sweptUpTo[platformId] = upTo;
  }
  return { removals, sweptUpTo };
}

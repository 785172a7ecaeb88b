import type { ConnectedPlatform } from '../connectors/partner-clients.ts';
import {
  type AccountingStore,
  CountBatch,
  type Counts,
  NO_SEGMENT,
  type RecordTally,
  type RejectedEntry,
  type Tally,
} from './accounting.ts';
import { type CallGate, deliverMemberships, type PartnerLike } from './delivery.ts';
import type { MembershipStateStore } from './dynamo-store.ts';
import { removalDueAt } from './expiry.ts';
import { type Membership, membershipKey } from './membership.ts';
import { type AppliedState, newestPerKey, orderVerdict } from './ordering.ts';

/**
 * The deliver step for one invocation of a platform's delivery queue: every record's memberships
 * are planned together (micro-batches gathered from many messages), ordered against what was
 * last applied, sent, recorded and counted. A record fails (comes back through the queue) when
 * one of its memberships could not be settled; memberships it carries that were settled are then
 * recognised as duplicates on the next receive and neither sent nor counted again.
 */

export interface DeliveryRecord {
  readonly id: string;
  /** Undefined when the body is not a delivery message (never retried). */
  readonly memberships: readonly Membership[] | undefined;
  /** The queue will move the message to its DLQ if this receive fails. */
  readonly lastReceive: boolean;
}

export interface DeliverServiceDeps {
  readonly environment: string;
  readonly platform: (platformId: number) => ConnectedPlatform | undefined;
  readonly partnerFor: (platform: ConnectedPlatform) => Promise<PartnerLike>;
  readonly gateFor?: (platform: ConnectedPlatform) => CallGate | undefined;
  readonly state: MembershipStateStore;
  readonly accounting: AccountingStore;
  /**
   * The users among these that a privacy request forgot: their adds (routed before the request)
   * are set aside as `forgotten`, their removals sent and no state of them kept.
   */
  readonly forgotten?: ((dmpUserIds: readonly string[]) => Promise<Set<string>>) | undefined;
  readonly now?: () => number;
}

/**
 * Calls stop early enough to write the acknowledgements, the tallies and the counts after them:
 * time proportional to the work (as long again as the intents took, at least a second more).
 */
export function callDeadline(deadline: number, intentWriteMs: number): number {
  return deadline - Math.max(1000, 2 * intentWriteMs);
}

export interface DeliverResult {
  readonly failedRecordIds: Set<string>;
  /** The longest Retry-After a partner asked of the failed records. */
  readonly retryAfterMs?: number | undefined;
  readonly delivered: number;
  readonly calls: number;
}

type Tracked = Membership & { readonly recordId: string };

export async function deliverRecords(
  records: readonly DeliveryRecord[],
  deps: DeliverServiceDeps,
  deadline: number,
): Promise<DeliverResult> {
  const now = deps.now ?? Date.now;
  const counts = new CountBatch();
  const rejections: { entry: RejectedEntry; platformId: number; segmentId: string }[] = [];
  const failedRecordIds = new Set<string>();
  let retryAfterMs: number | undefined;
  let delivered = 0;
  let calls = 0;
  const lastReceive = new Map(records.map((record) => [record.id, record.lastReceive]));

  const byPlatform = new Map<number, Tracked[]>();
  const settle: { platformId: number; memberships: Tracked[]; final: Map<string, AppliedState> }[] = [];
  const ended = new Map<string, 'rejected' | 'dlq'>();
  const undecodable: string[] = [];
  for (const record of records) {
    if (!record.memberships) {
      undecodable.push(record.id);
      rejections.push({
        entry: {
          id: `delivery#${record.id}`,
          reason: 'message_invalid',
          detail: 'not a delivery message',
          memberships: 1,
        },
        platformId: 0,
        segmentId: NO_SEGMENT,
      });
      continue;
    }
    for (const m of record.memberships) {
      const list = byPlatform.get(m.platformId) ?? [];
      list.push({ ...m, recordId: record.id });
      byPlatform.set(m.platformId, list);
    }
  }

  const reject = (item: Tracked, reason: string, detail: string) =>
    rejections.push({
      entry: {
        id: `${item.recordId}#${membershipKey(item)}#${item.ts}`,
        reason,
        detail,
        platformId: item.platformId,
        segmentId: item.segmentId,
        audienceId: item.audienceId,
        dmpUserId: item.dmpUserId,
        // Listed by `dmp rejected`, but a removal at expiry is not an accepted event to count.
        memberships: item.expiry ? 0 : 1,
      },
      platformId: item.platformId,
      segmentId: item.segmentId,
    });

  for (const [platformId, memberships] of byPlatform) {
    const platform = deps.platform(platformId);
    if (!platform) {
      for (const item of memberships)
        reject(item, 'platform_unknown', `platform ${platformId} is not configured`);
      continue;
    }
    const forgotten =
      (await deps.forgotten?.([...new Set(memberships.map((m) => m.dmpUserId))])) ?? new Set<string>();
    // A forgotten user's adds (routed before the request) are set aside, without the id.
    const { newest } = newestPerKey(
      memberships.filter((item) => {
        if (item.op === 'remove' || !forgotten.has(item.dmpUserId)) return true;
        rejections.push({
          entry: {
            id: `${item.recordId}#forgotten#${item.platformId}#${item.segmentId}#${item.ts}`,
            reason: 'forgotten',
            detail: 'the user was forgotten by a privacy request',
            platformId: item.platformId,
            segmentId: item.segmentId,
            audienceId: item.audienceId,
            memberships: item.expiry ? 0 : 1,
          },
          platformId: item.platformId,
          segmentId: item.segmentId,
        });
        ended.set(itemId(item), 'rejected');
        return false;
      }),
    );
    const applied = await deps.state.getApplied(newest);
    // What is stored once this invocation is done: each membership's outcome is read from it.
    const final = new Map(applied);
    settle.push({ platformId, memberships, final });
    const toSend: Tracked[] = [];
    for (const item of newest) {
      if (orderVerdict(applied.get(membershipKey(item)), item) === 'apply') toSend.push(item);
    }
    if (toSend.length === 0) continue;
    const appliedBy = (m: Membership) => (m as Tracked).recordId;
    // The intent is stored before the call: a stale event is skipped against it even if this
    // invocation dies (or times out) between the partner's answer and the acknowledgement.
    // A forgotten user's removal keeps no state (the privacy request deleted the rest): sent
    // without an intent, counted as delivered by this record, never stored.
    const forgottenRemovals = toSend.filter((item) => forgotten.has(item.dmpUserId));
    const intentStart = now();
    const { claimed, refused } = await deps.state.recordIntents(
      toSend.filter((item) => !forgotten.has(item.dmpUserId)),
      intentStart,
      { appliedBy },
    );
    const intentMs = now() - intentStart;
    if (refused.length > 0)
      for (const [key, stored] of await deps.state.getApplied(refused)) final.set(key, stored);
    for (const item of claimed as Tracked[])
      final.set(membershipKey(item), { ts: item.ts, op: item.op, by: item.recordId, acked: false });
    if (claimed.length === 0 && forgottenRemovals.length === 0) continue;
    const partner = await deps.partnerFor(platform);
    const gate = deps.gateFor?.(platform);
    const outcome = await deliverMemberships([...(claimed as Tracked[]), ...forgottenRemovals], {
      connector: platform.connector,
      environment: deps.environment,
      partner,
      ...(gate ? { gate } : {}),
      concurrency: platform.connector.population.mode === 'single' ? 16 : 4,
      deadline: callDeadline(deadline, intentMs),
      now,
    });
    calls += outcome.calls;
    counts.add(platformId, NO_SEGMENT, 'calls', outcome.calls);
    const acknowledged: Tracked[] = [];
    for (const item of outcome.delivered as Tracked[]) {
      if (!forgotten.has(item.dmpUserId)) acknowledged.push(item);
      else {
        final.set(membershipKey(item), { ts: item.ts, op: item.op, by: item.recordId, acked: true });
        delivered += 1;
      }
    }
    const { recorded, overtaken } = await deps.state.recordAcknowledged(acknowledged, now(), {
      removeAt: (m) => removalDueAt(platform.connector, m),
      appliedBy,
    });
    for (const item of recorded as Tracked[])
      final.set(membershipKey(item), { ts: item.ts, op: item.op, by: item.recordId, acked: true });
    delivered += recorded.length;
    if (overtaken.length > 0) {
      // A newer event was applied by another invocation while ours was in flight, and ours may
      // have reached the partner after it: send the newer one again so that it stands.
      const newer = await deps.state.getApplied(overtaken);
      const repairs: Tracked[] = [];
      for (const item of overtaken as Tracked[]) {
        const stored = newer.get(membershipKey(item));
        if (stored) final.set(membershipKey(item), stored);
        if (stored && stored.op !== item.op) {
          const { expiry: _expiry, ...event } = item;
          repairs.push({ ...event, op: stored.op, ts: stored.ts });
        }
      }
      if (repairs.length > 0) {
        const repaired = await deliverMemberships(repairs, {
          connector: platform.connector,
          environment: deps.environment,
          partner,
          ...(gate ? { gate } : {}),
          concurrency: 4,
          deadline,
          now,
        });
        for (const failure of repaired.failed) failedRecordIds.add((failure.item as Tracked).recordId);
      }
    }
    for (const { item, reason, detail } of outcome.rejected) {
      reject(item as Tracked, reason, detail);
      ended.set(itemId(item as Tracked), 'rejected');
    }
    for (const failure of outcome.failed) {
      const item = failure.item as Tracked;
      failedRecordIds.add(item.recordId);
      ended.set(itemId(item), 'dlq');
      if (failure.retryAfterMs !== undefined)
        retryAfterMs = Math.max(retryAfterMs ?? 0, failure.retryAfterMs);
    }
  }

  // Rejections are listed once each (`dmp rejected`); they are counted in the tallies below.
  if (rejections.length > 0) await deps.accounting.recordRejections(rejections.map((r) => r.entry));
  await deps.accounting.putTallies(
    tallies(
      settle,
      ended,
      undecodable,
      (recordId) => !failedRecordIds.has(recordId) || (lastReceive.get(recordId) ?? false),
    ),
  );
  await deps.accounting.addCounts(counts);
  return { failedRecordIds, retryAfterMs, delivered, calls };
}

const itemId = (item: Tracked) => `${item.recordId}#${membershipKey(item)}#${item.ts}#${item.op}`;

/**
 * The outcome of every membership of the settled records (those that succeed now, or are on their
 * last receive), from what is stored after this invocation: its own event stored by its own
 * message and acknowledged is delivered (by this receive or an earlier one that crashed before
 * counting); its own intent never acknowledged is rejected if refused, DLQ otherwise; refused,
 * rejected; still failing on the last receive, DLQ; the same event stored by another message (a
 * producer's repeat), nothing (it is counted there); anything else, superseded. A removal at
 * expiry counts `expired` when applied, and nothing otherwise (it is not an accepted event).
 */
function tallies(
  settle: readonly {
    platformId: number;
    memberships: readonly Tracked[];
    final: Map<string, AppliedState>;
  }[],
  ended: ReadonlyMap<string, 'rejected' | 'dlq'>,
  undecodable: readonly string[],
  settled: (recordId: string) => boolean,
): RecordTally[] {
  const out = new Map<string, { recordId: string; platformId: number; segmentId: string; counts: Counts }>();
  const count = (recordId: string, platformId: number, segmentId: string, outcome: Tally) => {
    const key = `${recordId}\u0000${platformId}\u0000${segmentId}`;
    const tally = out.get(key) ?? { recordId, platformId, segmentId, counts: {} };
    tally.counts[outcome] = (tally.counts[outcome] ?? 0) + 1;
    out.set(key, tally);
  };
  for (const recordId of undecodable) if (settled(recordId)) count(recordId, 0, NO_SEGMENT, 'rejected');
  for (const { platformId, memberships, final } of settle) {
    for (const item of memberships) {
      if (!settled(item.recordId)) continue;
      const stored = final.get(membershipKey(item));
      const own = stored !== undefined && stored.ts === item.ts && stored.op === item.op;
      let outcome: Tally | undefined;
      if (!own) outcome = item.expiry ? undefined : (ended.get(itemId(item)) ?? 'superseded');
      else if (stored.by !== item.recordId) outcome = undefined;
      else if (stored.acked !== false) outcome = item.expiry ? 'expired' : 'delivered';
      // Its own intent, never acknowledged: refused by the partner, or given up on (last receive).
      else outcome = item.expiry ? undefined : (ended.get(itemId(item)) ?? 'dlq');
      if (outcome) count(item.recordId, platformId, item.segmentId, outcome);
    }
  }
  return [...out.values()];
}

import type { ConnectedPlatform } from '../connectors/partner-clients.ts';
import { type AccountingStore, CountBatch, NO_SEGMENT, type RejectedEntry } from './accounting.ts';
import { type CallGate, deliverMemberships, type PartnerLike } from './delivery.ts';
import type { MembershipStateStore } from './dynamo-store.ts';
import { type Membership, membershipKey } from './membership.ts';
import { newestPerKey, orderVerdict } from './ordering.ts';

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
  for (const record of records) {
    if (!record.memberships) {
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
        memberships: 1,
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
      (await deps.forgotten?.([...new Set(memberships.map((m) => m.dmpUserId))])) ?? new Set();
    const { newest, superseded } = newestPerKey(
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
            memberships: 1,
          },
          platformId: item.platformId,
          segmentId: item.segmentId,
        });
        return false;
      }),
    );
    for (const item of superseded) counts.add(platformId, item.segmentId, 'superseded');
    const applied = await deps.state.getApplied(newest);
    const toSend: Tracked[] = [];
    for (const item of newest) {
      const verdict = orderVerdict(applied.get(membershipKey(item)), item);
      if (verdict === 'apply') toSend.push(item);
      else if (verdict === 'stale') counts.add(platformId, item.segmentId, 'superseded');
    }
    if (toSend.length === 0) continue;
    const partner = await deps.partnerFor(platform);
    const gate = deps.gateFor?.(platform);
    const outcome = await deliverMemberships(toSend, {
      connector: platform.connector,
      environment: deps.environment,
      partner,
      ...(gate ? { gate } : {}),
      concurrency: platform.connector.population.mode === 'single' ? 16 : 4,
      deadline,
      now,
    });
    calls += outcome.calls;
    counts.add(platformId, NO_SEGMENT, 'calls', outcome.calls);
    // A forgotten user's removal leaves no state behind (the request deleted the rest).
    const gone = outcome.delivered.filter((item) => forgotten.has(item.dmpUserId));
    for (const item of gone) counts.add(platformId, item.segmentId, 'delivered');
    delivered += gone.length;
    const { recorded, overtaken } = await deps.state.recordApplied(
      outcome.delivered.filter((item) => !forgotten.has(item.dmpUserId)),
      now(),
    );
    for (const item of recorded) counts.add(platformId, item.segmentId, 'delivered');
    delivered += recorded.length;
    if (overtaken.length > 0) {
      // A newer event was applied by another invocation while ours was in flight, and ours may
      // have reached the partner after it: send the newer one again so that it stands.
      const newer = await deps.state.getApplied(overtaken);
      const repairs: Tracked[] = [];
      for (const item of overtaken as Tracked[]) {
        counts.add(platformId, item.segmentId, 'superseded');
        const stored = newer.get(membershipKey(item));
        if (stored && stored.op !== item.op) repairs.push({ ...item, op: stored.op, ts: stored.ts });
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
    for (const { item, reason, detail } of outcome.rejected) reject(item as Tracked, reason, detail);
    const dlqCounted = new Set<string>();
    for (const failure of outcome.failed) {
      const item = failure.item as Tracked;
      failedRecordIds.add(item.recordId);
      if (failure.retryAfterMs !== undefined)
        retryAfterMs = Math.max(retryAfterMs ?? 0, failure.retryAfterMs);
      const key = `${item.recordId}#${membershipKey(item)}`;
      if (lastReceive.get(item.recordId) && !dlqCounted.has(key)) {
        dlqCounted.add(key);
        counts.add(platformId, item.segmentId, 'dlq');
      }
    }
  }

  if (rejections.length > 0) {
    const recordedNow = await deps.accounting.recordRejections(rejections.map((r) => r.entry));
    for (const { entry, platformId, segmentId } of rejections) {
      if (recordedNow.has(entry.id)) counts.add(platformId, segmentId, 'rejected', entry.memberships);
    }
  }
  await deps.accounting.addCounts(counts);
  return { failedRecordIds, retryAfterMs, delivered, calls };
}

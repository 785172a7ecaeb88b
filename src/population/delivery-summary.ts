import type { DeliveryRecord } from './deliver-service.ts';

/**
 * One log line per segment per deliver invocation: what the dashboard's "deliveries per segment"
 * table sums with CloudWatch Logs Insights (lib/constructs/delivery-dashboard.ts). Segment ids
 * are many and change with the DMP's audiences, so they are not a metric dimension (one custom
 * metric per segment); a log line costs nothing more than the invocation's other lines. It holds
 * no user id, only counts.
 */
export const SEGMENT_DELIVERY_MESSAGE = 'segment delivery';

export interface SegmentDelivery {
  readonly platformId: number;
  readonly segmentId: string;
  readonly audienceId: string;
  /** Memberships of the settled records (delivered, or set aside with a reason: `dmp stats` splits them). */
  readonly adds: number;
  readonly removes: number;
  /** Memberships of records not settled in this invocation (retried by the queue). */
  readonly retried: number;
}

export function segmentDeliveries(
  records: readonly DeliveryRecord[],
  failedRecordIds: ReadonlySet<string>,
): SegmentDelivery[] {
  const bySegment = new Map<string, { -readonly [K in keyof SegmentDelivery]: SegmentDelivery[K] }>();
  for (const record of records) {
    const failed = failedRecordIds.has(record.id);
    for (const membership of record.memberships ?? []) {
      const key = `${membership.platformId}#${membership.segmentId}`;
      let entry = bySegment.get(key);
      if (!entry) {
        entry = {
          platformId: membership.platformId,
          segmentId: membership.segmentId,
          audienceId: membership.audienceId,
          adds: 0,
          removes: 0,
          retried: 0,
        };
        bySegment.set(key, entry);
      }
      if (failed) entry.retried++;
      else if (membership.op === 'add') entry.adds++;
      else entry.removes++;
    }
  }
  return [...bySegment.values()];
}

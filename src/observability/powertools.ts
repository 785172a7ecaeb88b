/**
 * CloudWatch embedded-metric-format counts of the functions that use EMF (the user-sync function's
 * come from metric filters on its log line instead: src/observability/sync-metric-filters.ts).
 */
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { ExportMetrics } from '../files/exporter.ts';
import { COMMON_ENV, FILE_METRICS, METRICS_NAMESPACE, SYNC_METRICS } from '../infra/resources.ts';

export { createLogger } from './logger.ts';

/** Metrics of one function, with the environment as a default dimension. */
function environmentMetrics(serviceName: string): Metrics {
  return new Metrics({
    namespace: process.env['POWERTOOLS_METRICS_NAMESPACE'] ?? METRICS_NAMESPACE,
    serviceName,
    defaultDimensions: {
      [SYNC_METRICS.environmentDimension]: process.env[COMMON_ENV.environmentName] ?? 'unknown',
    },
  });
}

/** File delivery counts per platform; `FilePublicationFailing` feeds the alarm. */
export class PowertoolsFileMetrics implements ExportMetrics {
  private readonly metrics: Metrics;

  constructor(serviceName: string) {
    this.metrics = environmentMetrics(serviceName);
  }

  published(platformId: number, files: number, rows: number): void {
    this.count(platformId, FILE_METRICS.published, files);
    this.count(platformId, FILE_METRICS.rows, rows);
  }

  failed(platformId: number, alarming: boolean): void {
    this.count(platformId, FILE_METRICS.failed, 1);
    if (alarming) this.count(platformId, FILE_METRICS.failing, 1);
  }

  /** A single metric is emitted at once, with its own dimensions: one per record. */
  private count(platformId: number, name: string, value: number): void {
    const single = this.metrics.singleMetric();
    single.addDimension(SYNC_METRICS.platformDimension, String(platformId));
    single.addMetric(name, MetricUnit.Count, value);
  }
}

/** Names of the population metrics (namespace METRICS_NAMESPACE, `platform` dimension); alarms use them. */
export const POPULATION_METRICS = {
  delivered: 'MembershipsDelivered',
  rejected: 'MembershipsRejected',
  failed: 'MembershipsRetried',
  calls: 'PartnerCalls',
  throttled: 'PartnerThrottled',
  errors: 'PartnerErrors',
} as const;

/**
 * From an audience event's `ts` (the DMP's decision time) to the partner's acknowledgement of the
 * call that carried it, per platform, in milliseconds (one value per call and event time).
 */
export const EVENT_TO_PARTNER_LATENCY = 'EventToPartnerLatency';

export type PopulationMetricName = (typeof POPULATION_METRICS)[keyof typeof POPULATION_METRICS];

/** Counts per platform, batched in one EMF record per (platform, name) per invocation. */
export class PowertoolsPopulationMetrics {
  private readonly metrics: Metrics;
  private readonly pending = new Map<string, number>();
  private readonly latencies = new Map<number, number[]>();

  constructor(serviceName: string) {
    this.metrics = environmentMetrics(serviceName);
  }

  count(name: PopulationMetricName, platformId: number, by = 1): void {
    if (by === 0) return;
    const key = `${platformId}\u0000${name}`;
    this.pending.set(key, (this.pending.get(key) ?? 0) + by);
  }

  /** Event-to-partner latencies of this invocation (EVENT_TO_PARTNER_LATENCY). */
  latency(platformId: number, ms: number): void {
    const list = this.latencies.get(platformId) ?? [];
    list.push(ms);
    this.latencies.set(platformId, list);
  }

  flush(): void {
    // One EMF record per platform holding every value (CloudWatch takes percentiles over them).
    for (const [platformId, values] of this.latencies) {
      this.metrics.addDimension(SYNC_METRICS.platformDimension, String(platformId));
      for (const ms of values) this.metrics.addMetric(EVENT_TO_PARTNER_LATENCY, MetricUnit.Milliseconds, ms);
      this.metrics.publishStoredMetrics();
    }
    this.latencies.clear();
    for (const [key, value] of this.pending) {
      const [platformId, name] = key.split('\u0000') as [string, PopulationMetricName];
      const single = this.metrics.singleMetric();
      single.addDimension(SYNC_METRICS.platformDimension, platformId);
      single.addMetric(name, MetricUnit.Count, value);
    }
    this.pending.clear();
  }
}

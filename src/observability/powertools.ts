import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { ExportMetrics } from '../files/exporter.ts';
import { COMMON_ENV, FILE_METRICS, METRICS_NAMESPACE, SYNC_METRICS } from '../infra/resources.ts';
import type { SyncMetricName, SyncMetrics } from '../sync/service.ts';

/**
 * Structured JSON logs and CloudWatch embedded-metric-format counts, one instance per container.
 * Nothing logged here carries a user id or a secret: callers pass outcomes, reasons and platform
 * ids only.
 */
export function createLogger(serviceName: string): Logger {
  return new Logger({ serviceName });
}

export class PowertoolsSyncMetrics implements SyncMetrics {
  /**
   * One Metrics instance per dimension set (platform, reason), made on first use: `singleMetric()`
   * built a new instance (and a new Console) for every count, a large share of a callback's CPU.
   * The sets are bounded by the configured platforms and the reason codes.
   */
  private readonly byDimensions = new Map<string, Metrics>();

  constructor(private readonly serviceName: string) {}

  count(name: SyncMetricName, platformId: number | undefined, reason?: string): void {
    const platform = platformId === undefined ? 'none' : String(platformId);
    const key = `${platform}\n${reason ?? ''}`;
    let metrics = this.byDimensions.get(key);
    if (!metrics) {
      metrics = new Metrics({
        namespace: process.env['POWERTOOLS_METRICS_NAMESPACE'] ?? METRICS_NAMESPACE,
        serviceName: this.serviceName,
        // Environments may share an account and region: every record says which one it is from.
        defaultDimensions: {
          [SYNC_METRICS.environmentDimension]: process.env[COMMON_ENV.environmentName] ?? 'unknown',
          [SYNC_METRICS.platformDimension]: platform,
          ...(reason ? { reason } : {}),
        },
      });
      this.byDimensions.set(key, metrics);
    }
    // One EMF record per count keeps each record's dimensions its own (platform, reason).
    metrics.addMetric(name, MetricUnit.Count, 1);
    metrics.publishStoredMetrics();
  }
}

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

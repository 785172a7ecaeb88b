import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { COMMON_ENV, METRICS_NAMESPACE, SYNC_METRICS } from '../infra/resources.ts';
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

import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type { EnvironmentConfig } from '../../src/config/schema.ts';
import { METRICS_NAMESPACE, SYNC_METRICS } from '../../src/infra/resources.ts';
import { EVENT_TO_PARTNER_LATENCY } from '../../src/observability/powertools.ts';
import { SEGMENT_DELIVERY_MESSAGE } from '../../src/population/delivery-summary.ts';

/**
 * The deliver step's dashboard rows, apart from the sync and population rows (monitoring.ts,
 * population.ts): event-to-partner latency per platform, and deliveries per segment.
 */

// The deliver step's EMF metric (src/observability/powertools.ts): milliseconds from the DMP's
// event time to the partner's acknowledgement, dimensions `environment` and `platform`.
export { EVENT_TO_PARTNER_LATENCY };
export const LATENCY_PERCENTILES = ['p50', 'p95', 'p99'] as const;

const PERIOD = Duration.minutes(5);

/**
 * CloudWatch Logs Insights over the deliver function's `segment delivery` lines
 * (src/population/delivery-summary.ts): segment ids are many and come and go with the DMP's
 * audiences, so they are no metric dimension (each would be a custom metric of its own).
 */
export const SEGMENT_DELIVERIES_QUERY = [
  'fields @timestamp',
  `filter message = "${SEGMENT_DELIVERY_MESSAGE}"`,
  'stats sum(adds) as added, sum(removes) as removed, sum(retried) as retried by platformId, segmentId, audienceId',
  'sort added desc',
  'limit 100',
] as const;

export function deliveryWidgets(
  config: EnvironmentConfig,
  deliverLogGroup: logs.ILogGroup,
): cloudwatch.IWidget[] {
  return [
    new cloudwatch.GraphWidget({
      title: 'Event to partner latency by platform (ms: p50, p95, p99)',
      width: 12,
      left: LATENCY_PERCENTILES.map(
        (statistic) =>
          // One line per platform (its dimension), new platforms without a redeploy.
          new cloudwatch.SearchExpression({
            expression: `SEARCH('Namespace="${METRICS_NAMESPACE}" MetricName="${EVENT_TO_PARTNER_LATENCY}" ${SYNC_METRICS.environmentDimension}="${config.name}"', '${statistic}', 300)`,
            label: `${statistic} platform \${PROP('Dim.${SYNC_METRICS.platformDimension}')}`,
            period: PERIOD,
          }),
      ),
      leftYAxis: { label: 'ms', showUnits: false, min: 0 },
    }),
    new cloudwatch.LogQueryWidget({
      title: 'Deliveries per platform and segment (memberships settled, deliver logs)',
      width: 12,
      logGroupNames: [deliverLogGroup.logGroupName],
      queryLines: [...SEGMENT_DELIVERIES_QUERY],
      view: cloudwatch.LogQueryVisualizationType.TABLE,
    }),
  ];
}

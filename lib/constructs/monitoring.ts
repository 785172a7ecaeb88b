import { Duration } from 'aws-cdk-lib';
import type { HttpApi } from 'aws-cdk-lib/aws-apigatewayv2';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import type { EnvironmentConfig } from '../../src/config/schema.ts';
import { METRICS_NAMESPACE, SYNC_METRICS } from '../../src/infra/resources.ts';
import { SYNC_METRIC_FILTERS, type SyncMetricFilter } from '../../src/observability/sync-metric-filters.ts';
import { runbookLine } from '../runbook.ts';

export interface MonitoringProps {
  readonly config: EnvironmentConfig;
  readonly api: HttpApi;
  /** Functions to alarm on, by a short display name. */
  readonly functions: Readonly<Record<string, lambda.IFunction>>;
  /**
   * The user-sync function's log group, when its funnel metrics come from its log line
   * (`runtime.metrics: 'logMetricFilters'`): the metric filters that make them are created on it.
   */
  readonly syncLogGroup?: logs.ILogGroup | undefined;
}

/** The CloudWatch Logs pattern of a filter: every field equal to its value, or present (`*`). */
export function filterPatternOf(filter: SyncMetricFilter): logs.IFilterPattern {
  return logs.FilterPattern.all(
    ...Object.entries(filter.match).map(([field, value]) =>
      value === '*' ? logs.FilterPattern.exists(field) : logs.FilterPattern.stringValue(field, '=', value),
    ),
  );
}

const PERIOD = Duration.minutes(5);

/** The sync metrics that carry a platform: what each partner's graph shows. */
const PARTNER_METRICS = SYNC_METRICS.names.filter((name) => name !== 'OptOut');

/**
 * Alarms and one dashboard per environment. The handlers answer bad input with a 4xx or the neutral
 * pixel, never an exception, so any function error or API 5xx is a defect or an outage; a throttle
 * means pixels are being dropped. Thresholds are small absolute counts over 5 minutes.
 * Alarms notify the SNS topic the environment names (`monitoring.alarmTopicArn`): the on-call
 * routing of a team (email, chat, paging) lives there, outside this stack.
 */
export class Monitoring extends Construct {
  readonly alarms: cloudwatch.Alarm[] = [];
  readonly dashboard: cloudwatch.Dashboard;
  private readonly alarmAction: SnsAction | undefined;

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    const { config, api } = props;
    const topicArn = config.monitoring.alarmTopicArn;
    this.alarmAction = topicArn
      ? new SnsAction(sns.Topic.fromTopicArn(this, 'AlarmTopic', topicArn))
      : undefined;

    for (const [name, fn] of Object.entries(props.functions)) {
      this.addAlarms(
        fn.metricErrors({ period: PERIOD, statistic: 'Sum' }).createAlarm(this, `${name}Errors`, {
          alarmDescription: `${config.name}: ${name} function errors (handlers must not throw on bad input). ${runbookLine('function-errors')}`,
          threshold: 5,
          evaluationPeriods: 1,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        }),
        fn.metricThrottles({ period: PERIOD, statistic: 'Sum' }).createAlarm(this, `${name}Throttles`, {
          alarmDescription: `${config.name}: ${name} function throttled (requests are being dropped). ${runbookLine('function-throttles')}`,
          threshold: 1,
          evaluationPeriods: 1,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        }),
      );
    }
    this.addAlarms(
      api.metricServerError({ period: PERIOD, statistic: 'Sum' }).createAlarm(this, 'Api5xx', {
        alarmDescription: `${config.name}: HTTP API 5xx responses (bad input must never yield a 5xx). ${runbookLine('api-5xx')}`,
        threshold: 5,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }),
    );

    // The sync funnel's counts, from the one INFO line per request (src/observability/sync-metric-filters.ts).
    if (props.syncLogGroup) {
      for (const filter of SYNC_METRIC_FILTERS) {
        new logs.MetricFilter(this, `SyncMetric${filter.metricName}`, {
          logGroup: props.syncLogGroup,
          metricNamespace: METRICS_NAMESPACE,
          metricName: filter.metricName,
          filterPattern: filterPatternOf(filter),
          metricValue: '1',
          dimensions: { ...filter.dimensions },
          unit: cloudwatch.Unit.COUNT,
        });
      }
    }

    const functions = Object.entries(props.functions);
    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: `DmpActivation-${config.name}`,
      defaultInterval: Duration.hours(24),
    });
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Sync funnel by platform',
        width: 24,
        left: SYNC_METRICS.names.map(
          (metricName) =>
            // A search: one line per dimension set the metric filters emit (platform, and the
            // reason or outcome where there is one), so new platforms appear without a redeploy;
            // only this environment's records, should several share the account and region.
            new cloudwatch.SearchExpression({
              expression: `SEARCH('Namespace="${METRICS_NAMESPACE}" MetricName="${metricName}" ${SYNC_METRICS.environmentDimension}="${config.name}"', 'Sum', 300)`,
              label: metricName,
              period: PERIOD,
            }),
        ),
      }),
    );
    // One graph per partner, so that whether each one is healthy shows at a glance: its redirects,
    // stored and unchanged mappings, and its refusals by reason.
    const partners = config.platforms.filter((platform) => platform.sync);
    if (partners.length > 0) {
      this.dashboard.addWidgets(
        ...partners.map(
          (platform) =>
            new cloudwatch.GraphWidget({
              title: `Partner ${platform.id} (${platform.name}): sync`,
              width: partners.length === 1 ? 24 : 12,
              left: PARTNER_METRICS.map(
                (metricName) =>
                  new cloudwatch.SearchExpression({
                    expression: `SEARCH('Namespace="${METRICS_NAMESPACE}" MetricName="${metricName}" ${SYNC_METRICS.environmentDimension}="${config.name}" ${SYNC_METRICS.platformDimension}="${platform.id}"', 'Sum', 300)`,
                    label: metricName,
                    period: PERIOD,
                  }),
              ),
            }),
        ),
      );
    }
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'HTTP API requests and errors',
        width: 12,
        left: [
          api.metricCount({ period: PERIOD, statistic: 'Sum', label: 'requests' }),
          api.metricClientError({ period: PERIOD, statistic: 'Sum', label: '4xx' }),
          api.metricServerError({ period: PERIOD, statistic: 'Sum', label: '5xx' }),
        ],
      }),
      new cloudwatch.GraphWidget({
        title: 'HTTP API latency (p50, p99)',
        width: 12,
        left: [
          api.metricLatency({ period: PERIOD, statistic: 'p50', label: 'p50' }),
          api.metricLatency({ period: PERIOD, statistic: 'p99', label: 'p99' }),
        ],
      }),
    );
    this.dashboard.addWidgets(
      ...functions.map(
        ([name, fn]) =>
          new cloudwatch.GraphWidget({
            title: `${name}: invocations, errors, throttles`,
            width: 12,
            left: [
              fn.metricInvocations({ period: PERIOD, statistic: 'Sum' }),
              fn.metricErrors({ period: PERIOD, statistic: 'Sum' }),
              fn.metricThrottles({ period: PERIOD, statistic: 'Sum' }),
            ],
            right: [fn.metricDuration({ period: PERIOD, statistic: 'p99', label: 'duration p99' })],
          }),
      ),
      new cloudwatch.AlarmStatusWidget({ title: 'Alarms', width: 12, alarms: this.alarms }),
    );
  }

  /**
   * Adds alarms defined elsewhere (queues, event sources) to the environment's: they notify its
   * SNS topic like the others and appear in the dashboard's alarm status widget.
   */
  addAlarms(...alarms: cloudwatch.Alarm[]): void {
    for (const alarm of alarms) {
      this.alarms.push(alarm);
      if (this.alarmAction) {
        alarm.addAlarmAction(this.alarmAction);
        alarm.addOkAction(this.alarmAction);
      }
    }
  }
}

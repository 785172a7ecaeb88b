import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';
import type { EnvironmentConfig } from '../../src/config/schema.ts';
import { eventSourcesOf, streamSettingsOf } from '../../src/infra/event-sources.ts';
import {
  audienceQueueName,
  deliveryPlatforms,
  deliveryQueueName,
  expiringPlatforms,
  populationEnvironment,
  populationEventSources,
} from '../../src/infra/population.ts';
import {
  FILE_METRICS,
  type FunctionKey,
  METRICS_NAMESPACE,
  SYNC_METRICS,
  type TableDefinition,
} from '../../src/infra/resources.ts';
import { POPULATION_METRICS } from '../../src/observability/powertools.ts';
import { runbookLine } from '../runbook.ts';
import { FunctionSchedule } from './function-schedule.ts';
import type { Monitoring } from './monitoring.ts';
import { QueueConsumer } from './queue-consumer.ts';
import { TableStreamConsumer } from './table-stream-consumer.ts';

export interface PopulationProps {
  readonly config: EnvironmentConfig;
  /** The built functions (the expiry sweep only where a platform needs it). */
  readonly functions: Readonly<Partial<Record<FunctionKey, lambda.Function>>>;
  /** The tables by construct id (the mapping table's stream releases pending events). */
  readonly tables: ReadonlyMap<TableDefinition, dynamodb.TableV2>;
  readonly monitoring: Monitoring;
}

/**
 * Segment population in AWS, built from the same declarations as the local stack
 * (populationEventSources in src/infra/population.ts):
 *
 * - the audience-events queue (4 days' retention: a 72 h outage loses nothing) and its DLQ,
 *   consumed by the route function;
 * - one delivery queue (+DLQ) and event source per API platform, consumed by the deliver function
 *   with the platform's micro-batching settings and `maxConcurrency` from its `concurrency`;
 * - the mapping table's stream to the pending release function (with its failure queue);
 * - the expiry sweep every minute (removals at expiry, src/population/expiry.ts), where a platform
 *   takes removal calls but no lifetime;
 * - send rights on the delivery queues for the route, release and privacy functions (and the expiry sweep,
 *   on the queues of the platforms it serves) only;
 * - alarms per platform: partner errors above 10% of calls, and sustained throttling (429s).
 */
export class Population extends Construct {
  readonly queues: ReadonlyMap<string, QueueConsumer>;
  readonly audienceEvents: QueueConsumer;
  readonly release: TableStreamConsumer[] = [];
  readonly schedules: FunctionSchedule[] = [];

  constructor(scope: Construct, id: string, props: PopulationProps) {
    super(scope, id);
    const { config, monitoring, functions } = props;
    const fn = (key: FunctionKey): lambda.Function => {
      const built = functions[key];
      if (!built) throw new Error(`${this.node.path}: function ${key} is not built`);
      return built;
    };
    for (const key of ['route', 'deliver', 'releasePending', 'expireMemberships', 'privacy'] as const) {
      for (const [name, value] of Object.entries(populationEnvironment(config.name))) {
        functions[key]?.addEnvironment(name, value);
      }
    }

    const queues = new Map<string, QueueConsumer>();
    for (const source of eventSourcesOf(config, [populationEventSources])) {
      if (source.kind === 'queue') {
        queues.set(
          source.queue.localName,
          new QueueConsumer(this, source.queue.id, {
            function: fn(source.function),
            settings: source.settings,
            queueName: source.queue.localName,
            ...(source.queue.retentionSeconds
              ? { retentionPeriod: Duration.seconds(source.queue.retentionSeconds) }
              : {}),
            monitoring,
          }),
        );
      } else if (source.kind === 'schedule') {
        this.schedules.push(
          new FunctionSchedule(this, `Schedule-${source.name}`, {
            function: fn(source.function),
            everyMinutes: source.everyMinutes,
            ...(source.input !== undefined ? { input: source.input } : {}),
            description: `${config.name}: ${source.name} every ${source.everyMinutes} minute(s)`,
            monitoring,
          }),
        );
      } else if (source.kind === 'tableStream') {
        const table = props.tables.get(source.table);
        if (!table) throw new Error(`${this.node.path}: no table ${source.table.id}`);
        this.release.push(
          new TableStreamConsumer(this, `${source.table.id}Stream`, {
            function: fn(source.function),
            table,
            settings: streamSettingsOf(source),
            ...(source.filters ? { filters: source.filters } : {}),
            monitoring,
          }),
        );
      }
    }
    this.queues = queues;
    const audience = queues.get(audienceQueueName(config.name));
    if (!audience) throw new Error(`${this.node.path}: no audience-events queue declared`);
    this.audienceEvents = audience;

    const expiring = new Set(expiringPlatforms(config).map((platform) => platform.id));
    for (const platform of deliveryPlatforms(config.platforms)) {
      const delivery = queues.get(deliveryQueueName(config.name, platform.id));
      if (!delivery) throw new Error(`${this.node.path}: no delivery queue for platform ${platform.id}`);
      delivery.queue.grantSendMessages(fn('route'));
      delivery.queue.grantSendMessages(fn('releasePending'));
      // A privacy request's removals go through the delivery queues too.
      delivery.queue.grantSendMessages(fn('privacy'));
      if (expiring.has(platform.id)) delivery.queue.grantSendMessages(fn('expireMemberships'));
      monitoring.addAlarms(...partnerAlarms(this, config.name, platform.id));
    }
    monitoring.dashboard.addWidgets(...populationWidgets(config, [...queues.values()]));
  }
}

/**
 * The dashboard's population rows: per platform, memberships delivered and partner calls, errors
 * and throttles (the deliver step's EMF counts, POPULATION_METRICS), files published (FILE_METRICS),
 * and every population queue's DLQ depth and oldest message age (SQS' own metrics).
 */
function populationWidgets(
  config: EnvironmentConfig,
  consumers: readonly QueueConsumer[],
): cloudwatch.IWidget[] {
  const search = (metricName: string, label: string) =>
    new cloudwatch.SearchExpression({
      expression: `SEARCH('Namespace="${METRICS_NAMESPACE}" MetricName="${metricName}" ${SYNC_METRICS.environmentDimension}="${config.name}"', 'Sum', 300)`,
      label,
      period: Duration.minutes(5),
    });
  const period = Duration.minutes(5);
  return [
    new cloudwatch.GraphWidget({
      title: 'Population: memberships by platform',
      width: 12,
      left: [search(POPULATION_METRICS.delivered, 'delivered'), search(POPULATION_METRICS.failed, 'retried')],
    }),
    new cloudwatch.GraphWidget({
      title: 'Population: partner calls, errors and throttles by platform',
      width: 12,
      left: [
        search(POPULATION_METRICS.calls, 'calls'),
        search(POPULATION_METRICS.errors, 'errors (5xx, timeouts, resets)'),
        search(POPULATION_METRICS.throttled, 'throttled (429)'),
      ],
    }),
    new cloudwatch.GraphWidget({
      title: 'Dead-letter queues: messages',
      width: 8,
      left: consumers.map((consumer) =>
        consumer.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ period, statistic: 'Maximum' }),
      ),
    }),
    new cloudwatch.GraphWidget({
      title: 'Queues: age of the oldest message (s)',
      width: 8,
      left: consumers.flatMap((consumer) => [
        consumer.queue.metricApproximateAgeOfOldestMessage({ period, statistic: 'Maximum' }),
        consumer.deadLetterQueue.metricApproximateAgeOfOldestMessage({ period, statistic: 'Maximum' }),
      ]),
    }),
    new cloudwatch.GraphWidget({
      title: 'Files published by platform',
      width: 8,
      left: [search(FILE_METRICS.published, 'files'), search(FILE_METRICS.rows, 'rows')],
    }),
  ];
}

function partnerAlarms(scope: Construct, environment: string, platformId: number): cloudwatch.Alarm[] {
  const metric = (name: string) =>
    new cloudwatch.Metric({
      namespace: METRICS_NAMESPACE,
      metricName: name,
      dimensionsMap: {
        [SYNC_METRICS.platformDimension]: String(platformId),
        [SYNC_METRICS.environmentDimension]: environment,
      },
      statistic: 'Sum',
      period: Duration.minutes(5),
    });
  const errorRate = new cloudwatch.MathExpression({
    expression: 'IF(calls > 0, 100 * errors / calls, 0)',
    usingMetrics: { errors: metric(POPULATION_METRICS.errors), calls: metric(POPULATION_METRICS.calls) },
    period: Duration.minutes(5),
    label: `platform ${platformId} partner error rate (%)`,
  });
  return [
    errorRate.createAlarm(scope, `Partner${platformId}ErrorRate`, {
      alarmDescription: `${environment}: platform ${platformId} answers more than 10% of population calls with 5xx, timeouts or resets. ${runbookLine('partner-errors')}`,
      threshold: 10,
      evaluationPeriods: 2,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    }),
    metric(POPULATION_METRICS.throttled).createAlarm(scope, `Partner${platformId}Throttling`, {
      alarmDescription: `${environment}: platform ${platformId} throttles population calls (429) for 15 minutes. ${runbookLine('partner-throttling')}`,
      threshold: 0,
      evaluationPeriods: 3,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    }),
  ];
}

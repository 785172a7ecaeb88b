import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { DynamoEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import { Construct } from 'constructs';
import type { EnvironmentConfig } from '../../src/config/schema.ts';
import {
  AUDIENCE_EVENTS_RETENTION_SECONDS,
  audienceQueueName,
  DELIVERY_RETENTION_SECONDS,
  deliveryConsumer,
  deliveryPlatforms,
  deliveryQueueName,
  deliveryQueuePrefix,
  POPULATION_ENV,
  RELEASE_STREAM,
  ROUTE_CONSUMER,
} from '../../src/infra/population.ts';
import { METRICS_NAMESPACE, SYNC_METRICS } from '../../src/infra/resources.ts';
import { POPULATION_METRICS } from '../../src/observability/powertools.ts';
import type { Monitoring } from './monitoring.ts';
import { QueueConsumer } from './queue-consumer.ts';

export interface PopulationProps {
  readonly config: EnvironmentConfig;
  readonly route: lambda.Function;
  readonly deliver: lambda.Function;
  readonly releasePending: lambda.Function;
  /** The mapping table, whose stream releases pending events. */
  readonly mappingTable: dynamodb.ITable;
  readonly monitoring: Monitoring;
}

/**
 * Segment population in AWS, from the same definitions as the local stack
 * (src/infra/population.ts):
 *
 * - the audience-events queue (4 days' retention: a 72 h outage loses nothing) and its DLQ,
 *   consumed by the route function;
 * - one delivery queue (+DLQ) and event source per API platform, consumed by the deliver function
 *   with the platform's micro-batching settings and `maxConcurrency` from its `concurrency`;
 * - the mapping table's stream to the pending release function;
 * - send rights on the delivery queues for the route and release functions only;
 * - alarms per platform: partner errors above 10% of calls, and sustained throttling (429s).
 */
export class Population extends Construct {
  readonly audienceEvents: QueueConsumer;
  readonly deliveries: ReadonlyMap<number, QueueConsumer>;

  constructor(scope: Construct, id: string, props: PopulationProps) {
    super(scope, id);
    const { config, monitoring } = props;
    for (const fn of [props.route, props.deliver, props.releasePending]) {
      fn.addEnvironment(POPULATION_ENV.audienceQueueName, audienceQueueName(config.name));
      fn.addEnvironment(POPULATION_ENV.deliveryQueuePrefix, deliveryQueuePrefix(config.name));
    }

    this.audienceEvents = new QueueConsumer(this, 'AudienceEvents', {
      function: props.route,
      settings: ROUTE_CONSUMER,
      queueName: audienceQueueName(config.name),
      retentionPeriod: Duration.seconds(AUDIENCE_EVENTS_RETENTION_SECONDS),
      monitoring,
    });

    const deliveries = new Map<number, QueueConsumer>();
    for (const platform of deliveryPlatforms(config.platforms)) {
      const consumer = new QueueConsumer(this, `Delivery${platform.id}`, {
        function: props.deliver,
        settings: deliveryConsumer(platform.connector.population),
        queueName: deliveryQueueName(config.name, platform.id),
        retentionPeriod: Duration.seconds(DELIVERY_RETENTION_SECONDS),
        monitoring,
      });
      consumer.queue.grantSendMessages(props.route);
      consumer.queue.grantSendMessages(props.releasePending);
      deliveries.set(platform.id, consumer);
      monitoring.addAlarms(...partnerAlarms(this, config.name, platform.id));
    }
    this.deliveries = deliveries;

    props.releasePending.addEventSource(
      new DynamoEventSource(props.mappingTable, {
        startingPosition: lambda.StartingPosition.LATEST,
        batchSize: RELEASE_STREAM.batchSize,
        maxBatchingWindow: Duration.seconds(RELEASE_STREAM.maxBatchingWindowSeconds),
        retryAttempts: RELEASE_STREAM.retryAttempts,
        bisectBatchOnError: true,
        // Only a stored or changed partner id can release anything.
        filters: [lambda.FilterCriteria.filter({ eventName: lambda.FilterRule.or('INSERT', 'MODIFY') })],
      }),
    );
  }
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
      alarmDescription: `${environment}: platform ${platformId} answers more than 10% of population calls with 5xx, timeouts or resets`,
      threshold: 10,
      evaluationPeriods: 2,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    }),
    metric(POPULATION_METRICS.throttled).createAlarm(scope, `Partner${platformId}Throttling`, {
      alarmDescription: `${environment}: platform ${platformId} throttles population calls (429) for 15 minutes: check rateLimitPerSecond`,
      threshold: 0,
      evaluationPeriods: 3,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    }),
  ];
}

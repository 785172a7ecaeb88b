import { Duration, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { DynamoEventSource, SqsDlq } from 'aws-cdk-lib/aws-lambda-event-sources';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { type FilterPattern, validateFilterPattern } from '../../src/infra/event-filters.ts';
import { type StreamConsumerSettings, validateStreamConsumerSettings } from '../../src/infra/streams.ts';
import { runbookLine } from '../runbook.ts';
import { acknowledgeFailureDestination, createDeadLetterQueue, deadLetterAlarm } from './dead-letter.ts';
import type { Monitoring } from './monitoring.ts';

export interface TableStreamConsumerProps {
  /** The function that consumes the stream. */
  readonly function: lambda.Function;
  /** A table with a stream (its shared definition sets `stream`). */
  readonly table: dynamodb.TableV2;
  readonly settings: StreamConsumerSettings;
  /**
   * Lambda event filtering: only records matching one of these invoke the function (the local
   * stream event source applies the same patterns); none: every record.
   */
  readonly filters?: readonly FilterPattern[];
  /** The environment's monitoring: the alarms notify its topic and appear on its dashboard. */
  readonly monitoring?: Monitoring;
  /** The iterator age beyond which the lag alarm fires (default 5 minutes). */
  readonly maxIteratorAge?: Duration;
}

const PERIOD = Duration.minutes(1);

/**
 * A Lambda function consuming a DynamoDB table's stream, as the local stack emulates it
 * (local/event-sources/dynamodb-stream.ts): from the oldest record (TRIM_HORIZON), batches of
 * `batchSize` gathered for up to the batching window, only the records that pass the `filters`
 * (Lambda event filtering), ReportBatchItemFailures on (a batch resumes
 * from its first failed record), `maxRetryAttempts` retries. A batch that exhausts them goes to an
 * encrypted, TLS-only on-failure queue (the records' stream coordinates, kept 14 days) instead of
 * vanishing. Alarms: anything in that queue, and the iterator age (the consumer falling behind or
 * stuck on a failing batch).
 */
export class TableStreamConsumer extends Construct {
  readonly eventSource: DynamoEventSource;
  readonly failureQueue: sqs.Queue;
  readonly failureAlarm: cloudwatch.Alarm;
  readonly iteratorAgeAlarm: cloudwatch.Alarm;

  constructor(scope: Construct, id: string, props: TableStreamConsumerProps) {
    super(scope, id);
    const settings = validateStreamConsumerSettings(props.settings, this.node.path);
    // TableV2's stream ARN is a token either way: ask the table resource whether it has a stream.
    const tableResource = props.table.node.defaultChild as dynamodb.CfnGlobalTable | undefined;
    if (!Stack.of(this).resolve(tableResource?.streamSpecification)) {
      throw new Error(`${this.node.path}: the table has no stream; set \`stream\` in its shared definition`);
    }

    this.failureQueue = createDeadLetterQueue(this, 'FailureQueue');
    acknowledgeFailureDestination(this.failureQueue, 'a DynamoDB stream event source');

    for (const pattern of props.filters ?? []) validateFilterPattern(pattern);
    this.eventSource = new DynamoEventSource(props.table, {
      startingPosition: lambda.StartingPosition.TRIM_HORIZON,
      batchSize: settings.batchSize,
      ...(settings.maxBatchingWindowSeconds > 0
        ? { maxBatchingWindow: Duration.seconds(settings.maxBatchingWindowSeconds) }
        : {}),
      retryAttempts: settings.maxRetryAttempts,
      reportBatchItemFailures: true,
      onFailure: new SqsDlq(this.failureQueue),
      ...(props.filters && props.filters.length > 0
        ? { filters: props.filters.map((pattern) => lambda.FilterCriteria.filter({ ...pattern })) }
        : {}),
    });
    props.function.addEventSource(this.eventSource);

    this.failureAlarm = deadLetterAlarm(
      this,
      'FailedBatches',
      this.failureQueue,
      `${id}: stream batches that exhausted their retries (records named in the failure queue). ${runbookLine('dead-letter-queue')}`,
    );
    const maxAge = props.maxIteratorAge ?? Duration.minutes(5);
    this.iteratorAgeAlarm = props.function
      .metric('IteratorAge', { period: PERIOD, statistic: 'Maximum' })
      .createAlarm(this, 'IteratorAge', {
        alarmDescription: `${id}: stream records older than ${maxAge.toHumanString()} when read (consumer behind or stuck). ${runbookLine('stream-iterator-age')}`,
        threshold: maxAge.toMilliseconds(),
        evaluationPeriods: 3,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    props.monitoring?.addAlarms(this.failureAlarm, this.iteratorAgeAlarm);
  }
}

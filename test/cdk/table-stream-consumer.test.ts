import { Template } from 'aws-cdk-lib/assertions';
import { afterAll, describe, expect, it } from 'vitest';
import { createDataTable } from '../../lib/constructs/data-table.ts';
import { TableStreamConsumer } from '../../lib/constructs/table-stream-consumer.ts';
import { MAPPING_TABLE, SEGMENT_TABLE, type TableDefinition } from '../../src/infra/resources.ts';
import type { StreamConsumerSettings } from '../../src/infra/streams.ts';
import { cdkTestStack, cleanUpCdkTestStacks, nagErrors } from '../support/cdk.ts';

const SETTINGS: StreamConsumerSettings = {
  batchSize: 100,
  maxBatchingWindowSeconds: 1,
  maxRetryAttempts: 10,
};
const TOPIC = 'arn:aws:sns:eu-west-1:123456789012:dmp-oncall';
const STREAMED: TableDefinition = { ...MAPPING_TABLE, stream: 'NEW_AND_OLD_IMAGES' };

afterAll(cleanUpCdkTestStacks);

function build(settings: StreamConsumerSettings = SETTINGS, table: TableDefinition = STREAMED, nag = false) {
  const base = cdkTestStack({ monitoring: { alarmTopicArn: TOPIC }, nag });
  const consumer = new TableStreamConsumer(base.stack, 'Release', {
    function: base.function,
    table: createDataTable(base.stack, table, base.config),
    settings,
    monitoring: base.monitoring,
  });
  return { ...base, consumer, template: Template.fromStack(base.stack) };
}

describe('TableStreamConsumer', () => {
  const t = build();
  const idOf = (construct: { node: { defaultChild?: unknown } }) =>
    t.stack.getLogicalId(construct.node.defaultChild as never);
  const tableId = Object.keys(t.template.findResources('AWS::DynamoDB::GlobalTable'))[0]!;
  const failureQueueId = idOf(t.consumer.failureQueue);

  it('reads the stream from the oldest record, in batches, with partial responses and bounded retries', () => {
    const mapping = Object.values(t.template.findResources('AWS::Lambda::EventSourceMapping'))[0]!;
    expect(mapping['Properties']).toMatchObject({
      EventSourceArn: { 'Fn::GetAtt': [tableId, 'StreamArn'] },
      StartingPosition: 'TRIM_HORIZON',
      BatchSize: 100,
      MaximumBatchingWindowInSeconds: 1,
      MaximumRetryAttempts: 10,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [failureQueueId, 'Arn'] } } },
    });
  });

  it('keeps exhausted batches in an encrypted, TLS-only queue for 14 days', () => {
    const queue = t.template.toJSON().Resources[failureQueueId].Properties;
    expect(queue).toMatchObject({ SqsManagedSseEnabled: true, MessageRetentionPeriod: 14 * 86_400 });
    t.template.hasResourceProperties('AWS::SQS::QueuePolicy', {
      Queues: [{ Ref: failureQueueId }],
      PolicyDocument: {
        Statement: [
          {
            Effect: 'Deny',
            Action: 'sqs:*',
            Principal: { AWS: '*' },
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
            Resource: { 'Fn::GetAtt': [failureQueueId, 'Arn'] },
          },
        ],
      },
    });
  });

  it('alarms on a failed batch and on iterator age, notifying the alarm topic', () => {
    const alarms = Object.values(t.template.findResources('AWS::CloudWatch::Alarm')).map(
      (a) => a['Properties'],
    );
    expect(alarms.find((a) => a.MetricName === 'ApproximateNumberOfMessagesVisible')).toMatchObject({
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [failureQueueId, 'QueueName'] } }],
      Threshold: 1,
      AlarmActions: [TOPIC],
    });
    expect(alarms.find((a) => a.MetricName === 'IteratorAge')).toMatchObject({
      Namespace: 'AWS/Lambda',
      Threshold: 5 * 60 * 1000,
      ComparisonOperator: 'GreaterThanThreshold',
      AlarmActions: [TOPIC],
    });
  });

  it('retries forever with -1, as Lambda does by default', () => {
    const { template } = build({ ...SETTINGS, maxRetryAttempts: -1, maxBatchingWindowSeconds: 0 });
    const mapping = Object.values(template.findResources('AWS::Lambda::EventSourceMapping'))[0]!;
    expect(mapping['Properties'].MaximumRetryAttempts).toBe(-1);
    expect(mapping['Properties'].MaximumBatchingWindowInSeconds).toBeUndefined();
  });

  it('hands its filter patterns to Lambda, and has none unless given', () => {
    const pattern = { eventName: ['INSERT'], dynamodb: { NewImage: { id: { S: [{ exists: true }] } } } };
    const plain = build();
    const base = cdkTestStack({ monitoring: { alarmTopicArn: TOPIC } });
    new TableStreamConsumer(base.stack, 'Filtered', {
      function: base.function,
      table: createDataTable(base.stack, STREAMED, base.config),
      settings: SETTINGS,
      filters: [pattern],
    });
    const mapping = Object.values(
      Template.fromStack(base.stack).findResources('AWS::Lambda::EventSourceMapping'),
    )[0]!;
    expect(mapping['Properties'].FilterCriteria).toEqual({ Filters: [{ Pattern: JSON.stringify(pattern) }] });
    const unfiltered = Object.values(plain.template.findResources('AWS::Lambda::EventSourceMapping'))[0]!;
    expect(unfiltered['Properties'].FilterCriteria).toBeUndefined();
    expect(
      () =>
        new TableStreamConsumer(base.stack, 'Loose', {
          function: base.function,
          table: createDataTable(base.stack, { ...STREAMED, id: 'Other', localName: 'other' }, base.config),
          settings: SETTINGS,
          filters: [{ eventName: [{ 'anything-but': 'REMOVE' } as never] }],
        }),
    ).toThrow(/not a condition this project uses/);
  });

  it('refuses a table without a stream, and settings AWS would refuse', () => {
    expect(() => build(SETTINGS, SEGMENT_TABLE)).toThrow(/the table has no stream/);
    expect(() => build({ ...SETTINGS, batchSize: 0 })).toThrow(/batchSize must be at least 1/);
    expect(() => build({ ...SETTINGS, maxRetryAttempts: -2 })).toThrow(
      /maxRetryAttempts must be at least -1/,
    );
  });

  it('passes cdk-nag, its one acknowledgement naming the failure queue', () => {
    expect(nagErrors(build(SETTINGS, STREAMED, true).app)).toEqual([]);
  });
});

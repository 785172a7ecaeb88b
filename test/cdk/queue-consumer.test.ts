import type { Stack } from 'aws-cdk-lib';
import { Duration } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { afterAll, describe, expect, it } from 'vitest';
import { QueueConsumer, type QueueConsumerProps } from '../../lib/constructs/queue-consumer.ts';
import type { EnvironmentConfig } from '../../src/config/schema.ts';
import type { QueueConsumerSettings } from '../../src/infra/queues.ts';
import { type CdkTestStack, cdkTestStack, cleanUpCdkTestStacks, nagErrors } from '../support/cdk.ts';

const SETTINGS: QueueConsumerSettings = {
  batchSize: 1000,
  maxBatchingWindowSeconds: 2,
  maxConcurrency: 5,
  maxReceiveCount: 8,
  functionTimeoutSeconds: 30,
};
const TOPIC = 'arn:aws:sns:eu-west-1:123456789012:dmp-oncall';

afterAll(cleanUpCdkTestStacks);

interface TestStack {
  readonly stack: Stack;
  readonly app: CdkTestStack['app'];
  readonly consumer: QueueConsumer;
  readonly template: Template;
}

/** A stack holding one consumer of a plain function, with the environment's monitoring. */
function build(
  overrides: Partial<Omit<QueueConsumerProps, 'function'>> = {},
  options: { timeoutSeconds?: number; monitoring?: EnvironmentConfig['monitoring']; nag?: boolean } = {},
): TestStack {
  const base = cdkTestStack({
    timeoutSeconds: options.timeoutSeconds ?? SETTINGS.functionTimeoutSeconds,
    monitoring: options.monitoring ?? { alarmTopicArn: TOPIC },
    ...(options.nag ? { nag: true } : {}),
  });
  const consumer = new QueueConsumer(base.stack, 'Delivery', {
    function: base.function,
    settings: SETTINGS,
    monitoring: base.monitoring,
    ...overrides,
  });
  return { app: base.app, stack: base.stack, consumer, template: Template.fromStack(base.stack) };
}

function logicalId(t: TestStack, construct: { node: { defaultChild?: unknown } }): string {
  return t.stack.getLogicalId(construct.node.defaultChild as never);
}

describe('QueueConsumer', () => {
  const t = build({ queueName: 'dmp-dev-delivery-99999', retentionPeriod: Duration.days(4) });
  const queueId = logicalId(t, t.consumer.queue);
  const dlqId = logicalId(t, t.consumer.deadLetterQueue);

  it('encrypts both queues (SSE-SQS) and names them', () => {
    t.template.resourceCountIs('AWS::SQS::Queue', 2);
    t.template.hasResourceProperties('AWS::SQS::Queue', {
      QueueName: 'dmp-dev-delivery-99999',
      SqsManagedSseEnabled: true,
    });
    t.template.hasResourceProperties('AWS::SQS::Queue', {
      QueueName: 'dmp-dev-delivery-99999-dlq',
      SqsManagedSseEnabled: true,
    });
  });

  it('refuses every request that is not over TLS, on both queues', () => {
    for (const id of [queueId, dlqId]) {
      t.template.hasResourceProperties('AWS::SQS::QueuePolicy', {
        Queues: [{ Ref: id }],
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({
              Effect: 'Deny',
              Action: 'sqs:*',
              Principal: { AWS: '*' },
              Condition: { Bool: { 'aws:SecureTransport': 'false' } },
            }),
          ]),
        },
      });
    }
  });

  it('sets the visibility timeout to 6x the function timeout plus the batching window', () => {
    const queue = t.template.toJSON().Resources[queueId].Properties;
    expect(queue.VisibilityTimeout).toBe(6 * 30 + 2);
    expect(queue.MessageRetentionPeriod).toBe(4 * 24 * 3600);
  });

  it('redrives to the DLQ after maxReceiveCount receives; the DLQ keeps messages 14 days', () => {
    const resources = t.template.toJSON().Resources;
    expect(resources[queueId].Properties.RedrivePolicy).toEqual({
      deadLetterTargetArn: { 'Fn::GetAtt': [dlqId, 'Arn'] },
      maxReceiveCount: 8,
    });
    expect(resources[dlqId].Properties.MessageRetentionPeriod).toBe(14 * 24 * 3600);
    expect(resources[dlqId].Properties.RedrivePolicy).toBeUndefined();
  });

  it('feeds the function in micro-batches, bounded, with partial batch responses', () => {
    t.template.resourceCountIs('AWS::Lambda::EventSourceMapping', 1);
    t.template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      EventSourceArn: { 'Fn::GetAtt': [queueId, 'Arn'] },
      BatchSize: 1000,
      MaximumBatchingWindowInSeconds: 2,
      ScalingConfig: { MaximumConcurrency: 5 },
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
  });

  it('lets the function consume the queue and nothing else (not the DLQ)', () => {
    const statements = Object.values(t.template.findResources('AWS::IAM::Policy')).flatMap(
      (policy) =>
        (policy['Properties'] as { PolicyDocument: { Statement: { Action: string[]; Resource: unknown }[] } })
          .PolicyDocument.Statement,
    );
    const sqsStatements = statements.filter((s) => [s.Action].flat().some((a) => a.startsWith('sqs:')));
    expect(sqsStatements).toHaveLength(1);
    expect(sqsStatements[0]!.Resource).toEqual({ 'Fn::GetAtt': [queueId, 'Arn'] });
    expect([sqsStatements[0]!.Action].flat().sort()).toEqual([
      'sqs:ChangeMessageVisibility',
      'sqs:DeleteMessage',
      'sqs:GetQueueAttributes',
      'sqs:GetQueueUrl',
      'sqs:ReceiveMessage',
    ]);
  });

  it('alarms on any message in the DLQ and on an old backlog, notifying the alarm topic', () => {
    const alarms = t.template.findResources('AWS::CloudWatch::Alarm');
    const dlqAlarm = Object.values(alarms).find(
      (alarm) => alarm['Properties'].MetricName === 'ApproximateNumberOfMessagesVisible',
    )!;
    expect(dlqAlarm['Properties']).toMatchObject({
      Namespace: 'AWS/SQS',
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [dlqId, 'QueueName'] } }],
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      AlarmActions: [TOPIC],
      OKActions: [TOPIC],
    });
    const ageAlarm = Object.values(alarms).find(
      (alarm) => alarm['Properties'].MetricName === 'ApproximateAgeOfOldestMessage',
    )!;
    expect(ageAlarm['Properties']).toMatchObject({
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [queueId, 'QueueName'] } }],
      Threshold: 15 * 60,
      ComparisonOperator: 'GreaterThanThreshold',
      AlarmActions: [TOPIC],
    });
  });

  it('shows its alarms on the environment dashboard', () => {
    const body = JSON.stringify(t.template.findResources('AWS::CloudWatch::Dashboard'));
    for (const alarm of [t.consumer.dlqDepthAlarm, t.consumer.oldestMessageAlarm]) {
      expect(body).toContain(t.stack.getLogicalId(alarm.node.defaultChild as never));
    }
  });

  it('has no alarm action without a topic', () => {
    const { template } = build({}, { monitoring: {} });
    for (const alarm of Object.values(template.findResources('AWS::CloudWatch::Alarm'))) {
      expect(alarm['Properties'].AlarmActions).toBeUndefined();
    }
  });

  it('leaves the batching window out when it is 0 (batch size up to 10)', () => {
    const { template } = build({ settings: { ...SETTINGS, batchSize: 10, maxBatchingWindowSeconds: 0 } });
    const mapping = Object.values(template.findResources('AWS::Lambda::EventSourceMapping'))[0]!;
    expect(mapping['Properties'].MaximumBatchingWindowInSeconds).toBeUndefined();
    const queue = Object.values(template.findResources('AWS::SQS::Queue')).find(
      (q) => q['Properties'].RedrivePolicy,
    )!;
    expect(queue['Properties'].VisibilityTimeout).toBe(180);
  });

  it('refuses settings whose function timeout is not the function’s', () => {
    expect(() => build({}, { timeoutSeconds: 60 })).toThrow(
      /functionTimeoutSeconds is 30 but the function's timeout is 60/,
    );
  });

  it('refuses settings AWS would refuse', () => {
    expect(() => build({ settings: { ...SETTINGS, maxConcurrency: 1 } })).toThrow(
      /maxConcurrency must be at least 2/,
    );
  });

  it('passes cdk-nag (AwsSolutions) without acknowledgements', () => {
    // Synthesis throws on an unacknowledged finding (e.g. AwsSolutions-SQS4 without enforceSSL).
    expect(nagErrors(build({}, { nag: true }).app)).toEqual([]);
  });
});

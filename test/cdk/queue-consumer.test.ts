import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, Duration, Stack, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { AwsSolutionsChecks } from 'cdk-nag';
import { afterAll, describe, expect, it } from 'vitest';
import { Monitoring } from '../../lib/constructs/monitoring.ts';
import { QueueConsumer, type QueueConsumerProps } from '../../lib/constructs/queue-consumer.ts';
import { UserSyncApi } from '../../lib/constructs/user-sync-api.ts';
import { ENVIRONMENTS_DIR } from '../../lib/repo.ts';
import { loadEnvironmentFile } from '../../src/config/load.ts';
import type { EnvironmentConfig } from '../../src/config/schema.ts';
import type { QueueConsumerSettings } from '../../src/infra/queues.ts';
import { ROUTES } from '../../src/infra/resources.ts';

const SETTINGS: QueueConsumerSettings = {
  batchSize: 1000,
  maxBatchingWindowSeconds: 2,
  maxConcurrency: 5,
  maxReceiveCount: 8,
  functionTimeoutSeconds: 30,
};
const TOPIC = 'arn:aws:sns:eu-west-1:123456789012:dmp-oncall';

const tempDirs: string[] = [];
afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

interface TestStack {
  readonly app: App;
  readonly stack: Stack;
  readonly consumer: QueueConsumer;
  readonly template: Template;
}

/** A stack holding one consumer of a plain function, with the environment's monitoring. */
function build(
  overrides: Partial<Omit<QueueConsumerProps, 'function'>> = {},
  options: { timeoutSeconds?: number; monitoring?: EnvironmentConfig['monitoring']; nag?: boolean } = {},
): TestStack {
  const outdir = mkdtempSync(join(tmpdir(), 'dmp-cdk-queue-'));
  tempDirs.push(outdir);
  const app = new App({ outdir });
  const stack = new Stack(app, 'QueueConsumerTest');
  const config: EnvironmentConfig = {
    ...loadEnvironmentFile(join(ENVIRONMENTS_DIR, 'dev.json')),
    monitoring: options.monitoring ?? { alarmTopicArn: TOPIC },
  };
  const role = new iam.Role(stack, 'Role', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') });
  const fn = new lambda.Function(stack, 'Consumer', {
    runtime: lambda.Runtime.NODEJS_24_X,
    handler: 'index.handler',
    code: lambda.Code.fromInline('exports.handler = async () => ({ batchItemFailures: [] })'),
    timeout: Duration.seconds(options.timeoutSeconds ?? SETTINGS.functionTimeoutSeconds),
    role,
  });
  const api = new UserSyncApi(stack, 'Api', { config, routes: ROUTES, functions: { userSync: fn } });
  const monitoring = new Monitoring(stack, 'Monitoring', { config, api: api.api, functions: {} });
  const consumer = new QueueConsumer(stack, 'Delivery', {
    function: fn,
    settings: SETTINGS,
    monitoring,
    ...overrides,
  });
  if (options.nag) Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return { app, stack, consumer, template: Template.fromStack(stack) };
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
    const nagged = build({}, { nag: true });
    // Synthesis throws on an unacknowledged finding (e.g. AwsSolutions-SQS4 without enforceSSL).
    nagged.app.synth();
    const report = JSON.parse(readFileSync(join(nagged.app.outdir, 'validation-report.json'), 'utf8')) as {
      pluginReports: { violations: { ruleName: string; severity: string }[] }[];
    };
    const errors = report.pluginReports.flatMap((plugin) =>
      plugin.violations.filter((v) => v.severity === 'error').map((v) => v.ruleName),
    );
    expect(errors).toEqual([]);
  });
});

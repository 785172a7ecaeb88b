import { Template } from 'aws-cdk-lib/assertions';
import { afterAll, describe, expect, it } from 'vitest';
import { FunctionSchedule } from '../../lib/constructs/function-schedule.ts';
import { cdkTestStack, cleanUpCdkTestStacks, nagErrors } from '../support/cdk.ts';

const TOPIC = 'arn:aws:sns:eu-west-1:123456789012:dmp-oncall';

afterAll(cleanUpCdkTestStacks);

function build(props: { everyMinutes?: number; input?: unknown } = {}, nag = false) {
  const base = cdkTestStack({ monitoring: { alarmTopicArn: TOPIC }, nag });
  const schedule = new FunctionSchedule(base.stack, 'Export', {
    function: base.function,
    everyMinutes: props.everyMinutes ?? 15,
    ...(props.input !== undefined ? { input: props.input } : {}),
    monitoring: base.monitoring,
  });
  return { ...base, schedule, template: Template.fromStack(base.stack) };
}

const scheduleOf = (template: Template) =>
  Object.values(template.findResources('AWS::Scheduler::Schedule'))[0]!['Properties'];

describe('FunctionSchedule', () => {
  const t = build({ input: { platformId: 99998 } });

  it('invokes the function at the declared rate with the declared input', () => {
    const schedule = scheduleOf(t.template);
    expect(schedule.ScheduleExpression).toBe('rate(15 minutes)');
    expect(schedule.State).toBe('ENABLED');
    expect(JSON.parse(schedule.Target.Input)).toEqual({ platformId: 99998 });
    expect(schedule.Target.Arn).toEqual({
      'Fn::GetAtt': [t.stack.getLogicalId(t.function.node.defaultChild as never), 'Arn'],
    });
    expect(schedule.Target.RetryPolicy).toEqual({ MaximumEventAgeInSeconds: 3600, MaximumRetryAttempts: 2 });
    expect(schedule.Target.DeadLetterConfig.Arn).toEqual({
      'Fn::GetAtt': [t.stack.getLogicalId(t.schedule.deadLetterQueue.node.defaultChild as never), 'Arn'],
    });
  });

  it('sends the Scheduled Event the local stack sends when no input is given', () => {
    const template = build().template;
    const input = JSON.stringify(scheduleOf(template).Target.Input);
    for (const part of [
      'Scheduled Event',
      'aws.scheduler',
      '<aws.scheduler.execution-id>',
      '<aws.scheduler.scheduled-time>',
      '<aws.scheduler.schedule-arn>',
    ]) {
      expect(input).toContain(part);
    }
  });

  it('gives Scheduler a role of its own that may invoke this function and fill its DLQ, nothing else', () => {
    const roleId = t.stack.getLogicalId(t.schedule.node.findChild('Role').node.defaultChild as never);
    const role = t.template.toJSON().Resources[roleId].Properties;
    expect(role.AssumeRolePolicyDocument.Statement).toEqual([
      {
        Action: 'sts:AssumeRole',
        Effect: 'Allow',
        Principal: { Service: 'scheduler.amazonaws.com' },
        Condition: { StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } },
      },
    ]);
    const policies = Object.values(t.template.findResources('AWS::IAM::Policy')).filter((policy) =>
      JSON.stringify(policy['Properties'].Roles).includes(roleId),
    );
    const statements = policies.flatMap((policy) => policy['Properties'].PolicyDocument.Statement);
    const fnId = t.stack.getLogicalId(t.function.node.defaultChild as never);
    const dlqId = t.stack.getLogicalId(t.schedule.deadLetterQueue.node.defaultChild as never);
    expect(statements).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          Action: 'lambda:InvokeFunction',
          Resource: [
            { 'Fn::GetAtt': [fnId, 'Arn'] },
            { 'Fn::Join': ['', [{ 'Fn::GetAtt': [fnId, 'Arn'] }, ':*']] },
          ],
        }),
        expect.objectContaining({ Action: 'sqs:SendMessage', Resource: { 'Fn::GetAtt': [dlqId, 'Arn'] } }),
      ]),
    );
    expect(statements).toHaveLength(2);
  });

  it('alarms when an invocation could not be delivered', () => {
    const alarm = Object.values(t.template.findResources('AWS::CloudWatch::Alarm')).find(
      (a) => a['Properties'].MetricName === 'ApproximateNumberOfMessagesVisible',
    )!;
    expect(alarm['Properties']).toMatchObject({ Threshold: 1, AlarmActions: [TOPIC] });
  });

  it('refuses a period that is not whole minutes', () => {
    expect(() => build({ everyMinutes: 0.5 })).toThrow(/everyMinutes must be a whole number/);
  });

  it('passes cdk-nag', () => {
    expect(nagErrors(build({}, true).app)).toEqual([]);
  });
});

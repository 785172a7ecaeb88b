import { Aws, Duration, Stack } from 'aws-cdk-lib';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import { LambdaInvoke } from 'aws-cdk-lib/aws-scheduler-targets';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { acknowledgeNag } from '../nag.ts';
import { runbookLine } from '../runbook.ts';
import { acknowledgeFailureDestination, createDeadLetterQueue, deadLetterAlarm } from './dead-letter.ts';
import type { Monitoring } from './monitoring.ts';

export interface FunctionScheduleProps {
  readonly function: lambda.IFunction;
  /** `rate(everyMinutes minutes)`. */
  readonly everyMinutes: number;
  /** What the function receives; default: a Scheduled Event, as the local stack sends it. */
  readonly input?: unknown;
  readonly description?: string;
  /** The environment's monitoring: the failed-invocation alarm notifies its topic. */
  readonly monitoring?: Monitoring;
}

/**
 * The Scheduled Event the local schedule (local/event-sources/schedule.ts) sends, filled in by
 * EventBridge Scheduler's context attributes, so a handler sees the same shape in both places.
 */
function scheduledEventInput(): scheduler.ScheduleTargetInput {
  return scheduler.ScheduleTargetInput.fromObject({
    version: '0',
    id: scheduler.ContextAttribute.executionId,
    'detail-type': 'Scheduled Event',
    source: 'aws.scheduler',
    account: Aws.ACCOUNT_ID,
    time: scheduler.ContextAttribute.scheduledTime,
    region: Aws.REGION,
    resources: [scheduler.ContextAttribute.scheduleArn],
    detail: {},
  });
}

/**
 * A function invoked every N minutes by EventBridge Scheduler (the local stack's `schedule`
 * declarations run the same). An invocation Scheduler could not deliver after its retries lands
 * in an encrypted, TLS-only dead-letter queue, which alarms. Scheduler does not wait for one run
 * to finish before the next: give the function a reserved concurrency of 1 where runs must not
 * overlap, or make it safe to overlap.
 */
export class FunctionSchedule extends Construct {
  readonly schedule: scheduler.Schedule;
  readonly deadLetterQueue: sqs.Queue;
  readonly failureAlarm: cloudwatch.Alarm;

  constructor(scope: Construct, id: string, props: FunctionScheduleProps) {
    super(scope, id);
    if (!Number.isInteger(props.everyMinutes) || props.everyMinutes < 1) {
      throw new Error(
        `${this.node.path}: everyMinutes must be a whole number of minutes, not ${props.everyMinutes}`,
      );
    }
    this.deadLetterQueue = createDeadLetterQueue(this, 'DeadLetterQueue');
    acknowledgeFailureDestination(this.deadLetterQueue, 'an EventBridge Scheduler schedule');
    // A role of its own rather than the stack-wide one LambdaInvoke would share between targets.
    const role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', {
        conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
      }),
      description: `EventBridge Scheduler: invokes ${id}`,
    });
    this.schedule = new scheduler.Schedule(this, 'Schedule', {
      schedule: scheduler.ScheduleExpression.rate(Duration.minutes(props.everyMinutes)),
      ...(props.description ? { description: props.description } : {}),
      target: new LambdaInvoke(props.function, {
        input:
          props.input === undefined
            ? scheduledEventInput()
            : scheduler.ScheduleTargetInput.fromObject(props.input),
        role,
        deadLetterQueue: this.deadLetterQueue,
        retryAttempts: 2,
        maxEventAge: Duration.hours(1),
      }),
    });
    const fnResource = props.function.node.defaultChild;
    const policy = role.node.tryFindChild('DefaultPolicy');
    if (policy && fnResource) {
      const fnId = Stack.of(this).getLogicalId(fnResource as never);
      acknowledgeNag(
        policy,
        `AwsSolutions-IAM5[Resource::<${fnId}.Arn>:*]`,
        'grantInvoke allows the function and its versions and aliases (`<function ARN>:*`): this one ' +
          'function only, which Scheduler invokes by its unqualified ARN.',
      );
    }
    this.failureAlarm = deadLetterAlarm(
      this,
      'FailedInvocations',
      this.deadLetterQueue,
      `${id}: scheduled invocations that could not be delivered to the function. ${runbookLine('dead-letter-queue')}`,
    );
    props.monitoring?.addAlarms(this.failureAlarm);
  }
}

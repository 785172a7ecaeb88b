import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import { SQS_EVENT_SOURCE_LIMITS } from '../../src/infra/queues.ts';
import { acknowledgeNag } from '../nag.ts';

/**
 * Where work that exhausted its retries waits for an operator: encrypted (SSE-SQS), TLS-only,
 * kept as long as SQS allows (14 days). Used by queue consumers (redrive) and stream consumers
 * (on-failure destination).
 */
export function createDeadLetterQueue(scope: Construct, id: string, queueName?: string): sqs.Queue {
  return new sqs.Queue(scope, id, {
    ...(queueName ? { queueName } : {}),
    encryption: sqs.QueueEncryption.SQS_MANAGED,
    enforceSSL: true,
    retentionPeriod: Duration.seconds(SQS_EVENT_SOURCE_LIMITS.maxRetentionSeconds),
  });
}

/**
 * cdk-nag's SQS3 wants every queue to be a redrive target or have one; a queue that is the
 * failure destination of something other than a queue (a stream event source, a schedule) is a
 * dead-letter queue all the same, and has no consumer of its own to fail.
 */
export function acknowledgeFailureDestination(queue: sqs.Queue, of: string): void {
  acknowledgeNag(
    queue,
    'AwsSolutions-SQS3',
    `This queue is the failure destination of ${of}, a dead-letter queue that SQS redrive cannot ` +
      'express; nothing consumes it, an operator inspects it.',
  );
}

/** Fires as soon as the dead-letter queue holds a message (checked every minute). */
export function deadLetterAlarm(
  scope: Construct,
  id: string,
  queue: sqs.IQueue,
  description: string,
): cloudwatch.Alarm {
  return queue
    .metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(1), statistic: 'Maximum' })
    .createAlarm(scope, id, {
      alarmDescription: description,
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
}

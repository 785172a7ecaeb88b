import * as z from 'zod';

/**
 * How a Lambda function consumes an SQS queue: the settings of the event source and of the queue
 * that must agree with it. Pure, shared by the CDK construct (lib/constructs/queue-consumer.ts) and
 * the local event-source emulation (local/event-sources/sqs.ts), so both apply the same rules.
 */
export interface QueueConsumerSettings {
  /** Records per invocation (standard queue: 1-10,000; above 10 needs a batching window). */
  batchSize: number;
  /** How long the event source gathers records before invoking (0-300 s). */
  maxBatchingWindowSeconds: number;
  /** Invocations in flight for this event source (2-1000). */
  maxConcurrency: number;
  /** Receives before SQS moves a message to the dead-letter queue (1-1000). */
  maxReceiveCount: number;
  /** The consuming function's timeout (1-900 s). */
  functionTimeoutSeconds: number;
}

/** AWS limits for a standard queue and its Lambda event source (docs/queues in population-facts). */
export const SQS_EVENT_SOURCE_LIMITS = {
  maxBatchSize: 10_000,
  /** Above this batch size the event source needs a batching window. */
  maxBatchSizeWithoutWindow: 10,
  maxBatchingWindowSeconds: 300,
  minConcurrency: 2,
  maxConcurrency: 1000,
  maxReceiveCount: 1000,
  maxFunctionTimeoutSeconds: 900,
  /** SQS' ceiling for a queue's visibility timeout (12 hours); 6 x 900 + 300 stays well below. */
  maxVisibilityTimeoutSeconds: 43_200,
  /** A batch also stops at the synchronous invocation payload limit (6 MB). */
  maxBatchPayloadBytes: 6 * 1024 * 1024,
  /** Dead-letter queues keep messages as long as SQS allows. */
  maxRetentionSeconds: 14 * 24 * 3600,
} as const;

const L = SQS_EVENT_SOURCE_LIMITS;

/** The visibility timeout to give a queue whose consumer has these settings. */
export function visibilityTimeoutSeconds(s: QueueConsumerSettings): number {
  // AWS: at least six times the function timeout, plus the batching window, so a message being
  // gathered or retried by a throttled invocation does not reappear while still in hand.
  return 6 * s.functionTimeoutSeconds + s.maxBatchingWindowSeconds;
}

/** A whole number within AWS's bounds, with errors that name the setting. */
export const boundedInteger = (name: string, min: number, max: number) =>
  z
    .number({ error: `${name} must be a number` })
    .int({ error: `${name} must be a whole number` })
    .min(min, { error: `${name} must be at least ${min}` })
    .max(max, { error: `${name} must be at most ${max}` });

export const QueueConsumerSettingsSchema = z
  .object({
    batchSize: boundedInteger('batchSize', 1, L.maxBatchSize),
    maxBatchingWindowSeconds: boundedInteger('maxBatchingWindowSeconds', 0, L.maxBatchingWindowSeconds),
    maxConcurrency: boundedInteger('maxConcurrency', L.minConcurrency, L.maxConcurrency),
    maxReceiveCount: boundedInteger('maxReceiveCount', 1, L.maxReceiveCount),
    functionTimeoutSeconds: boundedInteger('functionTimeoutSeconds', 1, L.maxFunctionTimeoutSeconds),
  })
  .strict()
  .superRefine((s, context) => {
    if (s.batchSize > L.maxBatchSizeWithoutWindow && s.maxBatchingWindowSeconds === 0) {
      context.addIssue({
        code: 'custom',
        path: ['maxBatchingWindowSeconds'],
        message: `a batchSize of ${s.batchSize} (above ${L.maxBatchSizeWithoutWindow}) needs maxBatchingWindowSeconds of at least 1`,
      });
    }
  });

export class QueueConsumerSettingsError extends Error {
  override readonly name = 'QueueConsumerSettingsError';
  constructor(
    readonly consumer: string,
    readonly problems: readonly string[],
  ) {
    super(`invalid queue consumer settings for ${consumer}: ${problems.join('; ')}`);
  }
}

/**
 * Returns the settings if AWS would accept them, else throws a QueueConsumerSettingsError listing
 * every problem. `consumer` names the queue or function in the message.
 */
export function validateQueueConsumerSettings(
  settings: unknown,
  consumer = 'queue consumer',
): QueueConsumerSettings {
  const parsed = QueueConsumerSettingsSchema.safeParse(settings);
  if (parsed.success) return parsed.data;
  throw new QueueConsumerSettingsError(
    consumer,
    parsed.error.issues.map((issue) =>
      issue.path.length > 0 && !issue.message.startsWith(String(issue.path[0]))
        ? `${issue.path.join('.')}: ${issue.message}`
        : issue.message,
    ),
  );
}

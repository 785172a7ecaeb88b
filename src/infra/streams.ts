import * as z from 'zod';
import { boundedInteger } from './queues.ts';

/**
 * How a Lambda function consumes a DynamoDB table's stream: the settings of Lambda's stream event
 * source that the local emulation (local/event-sources/dynamodb-stream.ts) reproduces too. Pure,
 * shared by the CDK construct (lib/constructs/table-stream-consumer.ts) and the local stack.
 */
export interface StreamConsumerSettings {
  /** Records per invocation (1-10,000). */
  batchSize: number;
  /** How long records are gathered before invoking (0-300 s). */
  maxBatchingWindowSeconds: number;
  /**
   * Retries of a failing batch before it goes to the on-failure destination (0-10,000); -1 (Lambda's
   * default) retries until the record leaves the stream (24 h), holding back the records behind it.
   */
  maxRetryAttempts: number;
}

export const StreamConsumerSettingsSchema = z
  .object({
    batchSize: boundedInteger('batchSize', 1, 10_000),
    maxBatchingWindowSeconds: boundedInteger('maxBatchingWindowSeconds', 0, 300),
    maxRetryAttempts: boundedInteger('maxRetryAttempts', -1, 10_000),
  })
  .strict();

/** Returns the settings if AWS would accept them, else throws one error listing every problem. */
export function validateStreamConsumerSettings(
  settings: unknown,
  consumer = 'stream consumer',
): StreamConsumerSettings {
  const parsed = StreamConsumerSettingsSchema.safeParse(settings);
  if (parsed.success) return parsed.data;
  throw new Error(
    `invalid stream consumer settings for ${consumer}: ${parsed.error.issues.map((issue) => issue.message).join('; ')}`,
  );
}

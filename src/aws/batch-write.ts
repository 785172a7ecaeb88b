import { BatchWriteItemCommand, type DynamoDBClient, type WriteRequest } from '@aws-sdk/client-dynamodb';
import { backoffDelayMs } from '../connectors/retry.ts';
import { forEachLimited } from './limit.ts';

/**
 * BatchWriteItem over any number of unconditional puts and deletes: 25 a call (DynamoDB's limit),
 * at most `concurrency` calls at once, the `UnprocessedItems` DynamoDB hands back under load retried
 * with full-jitter backoff until `maxAttempts` rounds, then an error. A key may appear once per
 * call: callers pass each key once.
 */
export const BATCH_WRITE_MAX_ITEMS = 25;

export class UnprocessedItemsError extends Error {
  override readonly name = 'UnprocessedItemsError';
}

export interface BatchWriteOptions {
  readonly concurrency?: number;
  readonly maxAttempts?: number;
  readonly sleep?: (ms: number) => Promise<void>;
  readonly random?: () => number;
}

export async function batchWriteAll(
  client: Pick<DynamoDBClient, 'send'>,
  tableName: string,
  requests: readonly WriteRequest[],
  options: BatchWriteOptions = {},
): Promise<void> {
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const random = options.random ?? Math.random;
  const maxAttempts = options.maxAttempts ?? 8;
  const chunks: WriteRequest[][] = [];
  for (let index = 0; index < requests.length; index += BATCH_WRITE_MAX_ITEMS)
    chunks.push(requests.slice(index, index + BATCH_WRITE_MAX_ITEMS));
  await forEachLimited(chunks, options.concurrency ?? 4, async (chunk) => {
    let pending = chunk;
    for (let attempt = 1; pending.length > 0; attempt++) {
      if (attempt > maxAttempts)
        throw new UnprocessedItemsError(
          `${pending.length} writes still unprocessed after ${maxAttempts} rounds`,
        );
      if (attempt > 1)
        await sleep(backoffDelayMs(attempt - 1, { baseDelayMs: 50, maxDelayMs: 2000 }, random));
      const result = await client.send(new BatchWriteItemCommand({ RequestItems: { [tableName]: pending } }));
      pending = result.UnprocessedItems?.[tableName] ?? [];
    }
  });
}

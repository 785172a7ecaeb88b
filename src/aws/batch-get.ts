import { type AttributeValue, BatchGetItemCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { backoffDelayMs } from '../connectors/retry.ts';
import { forEachLimited } from './limit.ts';

/**
 * BatchGetItem over any number of keys: 100 keys a call (DynamoDB's limit), and the
 * `UnprocessedKeys` DynamoDB hands back under load retried with full-jitter backoff until
 * `maxAttempts` rounds, then an error (the caller's record is retried through its queue).
 */
export const BATCH_GET_MAX_KEYS = 100;

/** BatchGetItem calls in flight at once per call of batchGetAll (never one per 100 keys of 20,000). */
export const BATCH_GET_CONCURRENCY = 8;

export type Key = Record<string, AttributeValue>;
export type Item = Record<string, AttributeValue>;

export class UnprocessedKeysError extends Error {
  override readonly name = 'UnprocessedKeysError';
}

export interface BatchGetOptions {
  readonly consistentRead?: boolean;
  readonly projection?: string;
  readonly expressionNames?: Record<string, string>;
  readonly maxAttempts?: number;
  /** Calls at once (default BATCH_GET_CONCURRENCY). */
  readonly concurrency?: number;
  readonly sleep?: (ms: number) => Promise<void>;
  readonly random?: () => number;
}

export async function batchGetAll(
  client: Pick<DynamoDBClient, 'send'>,
  tableName: string,
  keys: readonly Key[],
  options: BatchGetOptions = {},
): Promise<Item[]> {
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const random = options.random ?? Math.random;
  const maxAttempts = options.maxAttempts ?? 8;
  const items: Item[] = [];
  const chunks: Key[][] = [];
  for (let index = 0; index < keys.length; index += BATCH_GET_MAX_KEYS) {
    chunks.push(keys.slice(index, index + BATCH_GET_MAX_KEYS));
  }
  await forEachLimited(chunks, options.concurrency ?? BATCH_GET_CONCURRENCY, async (chunk) => {
    let pending: Key[] = chunk;
    for (let attempt = 1; pending.length > 0; attempt++) {
      if (attempt > maxAttempts) {
        throw new UnprocessedKeysError(
          `${pending.length} keys still unprocessed after ${maxAttempts} rounds`,
        );
      }
      if (attempt > 1)
        await sleep(backoffDelayMs(attempt - 1, { baseDelayMs: 50, maxDelayMs: 2000 }, random));
      const result = await client.send(
        new BatchGetItemCommand({
          RequestItems: {
            [tableName]: {
              Keys: pending,
              ...(options.consistentRead ? { ConsistentRead: true } : {}),
              ...(options.projection ? { ProjectionExpression: options.projection } : {}),
              ...(options.expressionNames ? { ExpressionAttributeNames: options.expressionNames } : {}),
            },
          },
        }),
      );
      items.push(...(result.Responses?.[tableName] ?? []));
      pending = (result.UnprocessedKeys?.[tableName]?.Keys ?? []) as Key[];
    }
  });
  return items;
}

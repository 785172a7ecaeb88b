import type { BatchGetItemCommand } from '@aws-sdk/client-dynamodb';
import { describe, expect, it } from 'vitest';
import { BATCH_GET_CONCURRENCY, BATCH_GET_MAX_KEYS, batchGetAll } from '../../src/aws/batch-get.ts';

describe('batchGetAll', () => {
  it('reads 100 keys a call, a bounded number of calls at once, and retries what DynamoDB left unprocessed', async () => {
    let inFlight = 0;
    let most = 0;
    const sizes: number[] = [];
    const leftOnce = new Set<string>();
    const client = {
      send: async (command: BatchGetItemCommand) => {
        inFlight += 1;
        most = Math.max(most, inFlight);
        await new Promise((resolve) => setImmediate(resolve));
        inFlight -= 1;
        const keys = command.input.RequestItems?.['t']?.Keys ?? [];
        sizes.push(keys.length);
        // The first time it sees a key ending in 7, DynamoDB hands it back unprocessed.
        const unprocessed = keys.filter((key) => {
          const id = key['pk']?.S ?? '';
          if (!id.endsWith('7') || leftOnce.has(id)) return false;
          leftOnce.add(id);
          return true;
        });
        return {
          Responses: { t: keys.filter((key) => !unprocessed.includes(key)) },
          ...(unprocessed.length > 0 ? { UnprocessedKeys: { t: { Keys: unprocessed } } } : {}),
        };
      },
    };
    const keys = Array.from({ length: 2_050 }, (_, index) => ({ pk: { S: `k${index}` } }));
    const items = await batchGetAll(client as never, 't', keys, { sleep: async () => {} });
    expect(new Set(items.map((item) => item['pk']?.S))).toEqual(new Set(keys.map((key) => key.pk.S)));
    expect(Math.max(...sizes)).toBe(BATCH_GET_MAX_KEYS);
    expect(most).toBe(BATCH_GET_CONCURRENCY);
  });
});

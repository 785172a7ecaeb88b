import {
  ConditionalCheckFailedException,
  type DynamoDBClient,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { batchGetAll } from '../aws/batch-get.ts';
import { mappingKey } from '../sync/mapping-store.ts';
import { type CallGate, DeadlineError } from './delivery.ts';
import type { MappingLookup } from './route-service.ts';
import { AdaptiveThrottle, rateWindow, windowOf } from './throttle.ts';

/**
 * Partner ids in bulk from the mapping table: BatchGetItem, 100 keys a call, eventually consistent
 * (half the read cost; a mapping stored a moment ago shows up through the pending release) unless
 * asked (the route's re-check after a pending write), and only mappings whose TTL has not passed
 * (TTL deletion lags by days).
 */
export class DynamoMappingLookup implements MappingLookup {
  constructor(
    private readonly client: DynamoDBClient,
    private readonly tableName: string,
    private readonly nowSeconds: () => number = () => Math.floor(Date.now() / 1000),
  ) {}

  async lookup(
    pairs: readonly { platformId: number; dmpUserId: string }[],
    options: { readonly consistent?: boolean } = {},
  ): Promise<Map<string, string>> {
    const keys = new Map<string, ReturnType<typeof mappingKey>>();
    for (const { platformId, dmpUserId } of pairs) {
      keys.set(`${platformId}#${dmpUserId}`, mappingKey(dmpUserId, platformId));
    }
    const items = await batchGetAll(this.client, this.tableName, [...keys.values()], {
      projection: 'pk, sk, partnerUserId, expiresAt',
      ...(options.consistent ? { consistentRead: true } : {}),
    });
    const now = this.nowSeconds();
    const found = new Map<string, string>();
    for (const item of items) {
      const partnerUserId = item['partnerUserId']?.S;
      if (!partnerUserId || Number(item['expiresAt']?.N ?? 0) <= now) continue;
      const dmpUserId = (item['pk']?.S ?? '').slice('user#'.length);
      const platformId = (item['sk']?.S ?? '').slice('platform#'.length);
      found.set(`${platformId}#${dmpUserId}`, partnerUserId);
    }
    return found;
  }
}

/**
 * The gate in front of a platform's partner calls: the adaptive throttle of this container (its
 * Retry-After hold, its backed-off rate) and `rateLimitPerSecond` counted in DynamoDB across every
 * concurrent Lambda of the platform: one conditional ADD per call in fixed windows
 * (`rate#<platformId>`), waiting for the next window when this one is full.
 */
export class DynamoCallGate implements CallGate {
  readonly throttle: AdaptiveThrottle;

  constructor(
    private readonly client: DynamoDBClient,
    private readonly tableName: string,
    private readonly platformId: number,
    configuredRate: number | undefined,
    private readonly now: () => number = Date.now,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  ) {
    this.throttle = new AdaptiveThrottle(configuredRate, now);
  }

  observe(status: number | undefined, retryAfterMs?: number): void {
    this.throttle.observe(status, retryAfterMs);
  }

  async acquire(deadline: number): Promise<void> {
    for (;;) {
      const held = this.throttle.heldUntil();
      if (held > 0) {
        if (held >= deadline) throw new DeadlineError(held - this.now());
        await this.sleep(held - this.now());
        continue;
      }
      const rate = this.throttle.rate();
      if (rate === undefined) return;
      const window = rateWindow(rate);
      const { index, endsAt } = windowOf(this.now(), window);
      if (await this.take(window.windowMs, index, window.callsPerWindow, endsAt)) return;
      if (endsAt >= deadline) throw new DeadlineError(endsAt - this.now());
      await this.sleep(endsAt - this.now() + Math.floor(Math.random() * 20));
    }
  }

  private async take(windowMs: number, index: number, limit: number, endsAt: number): Promise<boolean> {
    try {
      await this.client.send(
        new UpdateItemCommand({
          TableName: this.tableName,
          Key: { pk: { S: `rate#${this.platformId}` }, sk: { S: `${windowMs}#${index}` } },
          UpdateExpression: 'ADD calls :one SET expiresAt = :exp',
          ConditionExpression: 'attribute_not_exists(calls) OR calls < :limit',
          ExpressionAttributeValues: {
            ':one': { N: '1' },
            ':limit': { N: String(limit) },
            ':exp': { N: String(Math.ceil(endsAt / 1000) + 3600) },
          },
        }),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }
}

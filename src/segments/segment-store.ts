import {
  type AttributeValue,
  ConditionalCheckFailedException,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  ScanCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { marshall, unmarshall } from '@aws-sdk/util-dynamodb';
import type { Audience, SegmentError, SegmentRecord } from './segment.ts';

/**
 * The segment table (src/infra/resources.ts SEGMENT_TABLE). Every state change is a conditional
 * write: the lease is taken only from a free state, and only the lease holder may settle it, so
 * concurrent first uses of one audience create exactly one partner segment.
 */
const key = (platformId: number, audienceId: string) => ({
  pk: { S: `platform#${platformId}` },
  sk: { S: `audience#${audienceId}` },
});

export type LeaseResult =
  | { readonly acquired: true; readonly previous?: SegmentRecord }
  | { readonly acquired: false; readonly current?: SegmentRecord };

export interface Settlement {
  readonly partnerSegmentId: string;
  readonly nameAtPartner: string;
  readonly source: string;
  readonly possibleDuplicate: boolean;
}

export class DynamoSegmentStore {
  constructor(
    private readonly client: DynamoDBClient,
    private readonly tableName: string,
  ) {}

  async get(platformId: number, audienceId: string): Promise<SegmentRecord | undefined> {
    const answer = await this.client.send(
      new GetItemCommand({
        TableName: this.tableName,
        Key: key(platformId, audienceId),
        ConsistentRead: true,
      }),
    );
    return answer.Item ? toRecord(answer.Item) : undefined;
  }

  async list(platformId?: number): Promise<SegmentRecord[]> {
    const records: SegmentRecord[] = [];
    let startKey: Record<string, AttributeValue> | undefined;
    do {
      const page =
        platformId === undefined
          ? await this.client.send(
              new ScanCommand({ TableName: this.tableName, ExclusiveStartKey: startKey }),
            )
          : await this.client.send(
              new QueryCommand({
                TableName: this.tableName,
                KeyConditionExpression: 'pk = :pk',
                ExpressionAttributeValues: { ':pk': { S: `platform#${platformId}` } },
                ExclusiveStartKey: startKey,
              }),
            );
      for (const item of page.Items ?? []) records.push(toRecord(item));
      startKey = page.LastEvaluatedKey;
    } while (startKey);
    return records.sort((a, b) => a.platformId - b.platformId || a.audienceId.localeCompare(b.audienceId));
  }

  /**
   * Takes the creation lease when the segment is unknown, waiting for a retry, held by a lease that
   * expired (its holder crashed), or failed and `retryFailed` is asked for.
   */
  async acquireLease(
    platformId: number,
    audience: Audience,
    owner: string,
    nowMs: number,
    leaseMs: number,
    retryFailed: boolean,
  ): Promise<LeaseResult> {
    const now = new Date(nowMs).toISOString();
    try {
      const answer = await this.client.send(
        new UpdateItemCommand({
          TableName: this.tableName,
          Key: key(platformId, audience.id),
          UpdateExpression:
            'SET #state = :creating, leaseOwner = :owner, leaseExpiresAt = :expires, audienceName = :name, kind = :kind, ' +
            'platformId = :platformId, audienceId = :audienceId, attempts = if_not_exists(attempts, :zero) + :one, ' +
            'createdAt = if_not_exists(createdAt, :now), updatedAt = :now',
          ConditionExpression:
            'attribute_not_exists(pk) OR #state = :retry OR (#state = :creating AND leaseExpiresAt < :nowMs)' +
            (retryFailed ? ' OR #state = :failed' : ''),
          ExpressionAttributeNames: { '#state': 'state' },
          ExpressionAttributeValues: marshall({
            ':creating': 'creating',
            ':retry': 'retry',
            ...(retryFailed ? { ':failed': 'failed' } : {}),
            ':owner': owner,
            ':expires': nowMs + leaseMs,
            ':nowMs': nowMs,
            ':name': audience.name,
            ':kind': audience.kind,
            ':platformId': platformId,
            ':audienceId': audience.id,
            ':zero': 0,
            ':one': 1,
            ':now': now,
          }),
          ReturnValues: 'ALL_OLD',
        }),
      );
      return answer.Attributes
        ? { acquired: true, previous: toRecord(answer.Attributes) }
        : { acquired: true };
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
      return { acquired: false, current: await this.get(platformId, audience.id) };
    }
  }

  /** Records the partner's segment id; only the lease holder may (false when it lost the lease). */
  async settleReady(
    platformId: number,
    audienceId: string,
    owner: string,
    nowMs: number,
    settlement: Settlement,
  ) {
    return this.settle(platformId, audienceId, owner, {
      set: {
        state: 'ready',
        partnerSegmentId: settlement.partnerSegmentId,
        nameAtPartner: settlement.nameAtPartner,
        source: settlement.source,
        possibleDuplicate: settlement.possibleDuplicate,
        outcomeUnknown: false,
        updatedAt: new Date(nowMs).toISOString(),
      },
      remove: ['leaseOwner', 'leaseExpiresAt', 'lastError'],
    });
  }

  /** The partner refused: kept as `failed` with its answer, not retried blindly. */
  async settleFailed(
    platformId: number,
    audienceId: string,
    owner: string,
    nowMs: number,
    error: SegmentError,
  ) {
    return this.settle(platformId, audienceId, owner, {
      set: {
        state: 'failed',
        lastError: error,
        outcomeUnknown: false,
        updatedAt: new Date(nowMs).toISOString(),
      },
      remove: ['leaseOwner', 'leaseExpiresAt'],
    });
  }

  /** A retryable failure: frees the lease for the next caller, remembering whether the partner may have acted. */
  async releaseForRetry(
    platformId: number,
    audienceId: string,
    owner: string,
    nowMs: number,
    error: SegmentError,
    outcomeUnknown: boolean,
  ) {
    return this.settle(platformId, audienceId, owner, {
      set: { state: 'retry', lastError: error, outcomeUnknown, updatedAt: new Date(nowMs).toISOString() },
      remove: ['leaseOwner', 'leaseExpiresAt'],
    });
  }

  /** A ready segment seen under a new DMP name: records the rename, or the difference. */
  async recordName(
    platformId: number,
    audienceId: string,
    nowMs: number,
    names: { audienceName: string; nameAtPartner?: string; renameError?: SegmentError },
  ): Promise<void> {
    const set: Record<string, unknown> = {
      audienceName: names.audienceName,
      updatedAt: new Date(nowMs).toISOString(),
    };
    if (names.nameAtPartner !== undefined) set['nameAtPartner'] = names.nameAtPartner;
    if (names.renameError !== undefined) set['renameError'] = names.renameError;
    const remove = names.renameError === undefined ? ['renameError'] : [];
    const expression = updateExpression(set, remove);
    try {
      await this.client.send(
        new UpdateItemCommand({
          TableName: this.tableName,
          Key: key(platformId, audienceId),
          UpdateExpression: expression.UpdateExpression,
          ConditionExpression: '#state = :ready',
          ExpressionAttributeNames: { ...expression.ExpressionAttributeNames, '#state': 'state' },
          ExpressionAttributeValues: marshall(
            { ...prefixed(set), ':ready': 'ready' },
            { removeUndefinedValues: true },
          ),
        }),
      );
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
    }
  }

  /** A segment whose id needs no call (implicit creation): written once, first writer wins. */
  async putImplicit(
    platformId: number,
    audience: Audience,
    nowMs: number,
    partnerSegmentId: string,
  ): Promise<void> {
    const now = new Date(nowMs).toISOString();
    try {
      await this.client.send(
        new PutItemCommand({
          TableName: this.tableName,
          Item: {
            ...key(platformId, audience.id),
            ...marshall({
              platformId,
              audienceId: audience.id,
              audienceName: audience.name,
              kind: audience.kind,
              state: 'ready',
              partnerSegmentId,
              nameAtPartner: partnerSegmentId,
              source: 'implicit',
              attempts: 0,
              outcomeUnknown: false,
              possibleDuplicate: false,
              createdAt: now,
              updatedAt: now,
            }),
          },
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      );
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
    }
  }

  private async settle(
    platformId: number,
    audienceId: string,
    owner: string,
    change: { set: Record<string, unknown>; remove: string[] },
  ): Promise<boolean> {
    const expression = updateExpression(change.set, change.remove);
    try {
      await this.client.send(
        new UpdateItemCommand({
          TableName: this.tableName,
          Key: key(platformId, audienceId),
          UpdateExpression: expression.UpdateExpression,
          ConditionExpression: 'leaseOwner = :owner',
          ExpressionAttributeNames: expression.ExpressionAttributeNames,
          ExpressionAttributeValues: marshall(
            { ...prefixed(change.set), ':owner': owner },
            { removeUndefinedValues: true },
          ),
        }),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }
}

function prefixed(values: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(values).map(([name, value]) => [`:${name}`, value]));
}

function updateExpression(set: Record<string, unknown>, remove: readonly string[]) {
  const names: Record<string, string> = {};
  const assignments = Object.keys(set).map((name) => {
    names[`#${name}`] = name;
    return `#${name} = :${name}`;
  });
  const removals = remove.map((name) => {
    names[`#${name}`] = name;
    return `#${name}`;
  });
  return {
    UpdateExpression: `SET ${assignments.join(', ')}${removals.length ? ` REMOVE ${removals.join(', ')}` : ''}`,
    ExpressionAttributeNames: names,
  };
}

function toRecord(item: Record<string, AttributeValue>): SegmentRecord {
  const raw = unmarshall(item) as Record<string, unknown>;
  return {
    platformId: Number(raw['platformId']),
    audienceId: String(raw['audienceId'] ?? ''),
    audienceName: String(raw['audienceName'] ?? ''),
    kind: raw['kind'] === 'lookalike' ? 'lookalike' : 'custom',
    state: (raw['state'] as SegmentRecord['state']) ?? 'retry',
    partnerSegmentId: raw['partnerSegmentId'] === undefined ? undefined : String(raw['partnerSegmentId']),
    nameAtPartner: raw['nameAtPartner'] === undefined ? undefined : String(raw['nameAtPartner']),
    leaseOwner: raw['leaseOwner'] as string | undefined,
    leaseExpiresAt: raw['leaseExpiresAt'] === undefined ? undefined : Number(raw['leaseExpiresAt']),
    attempts: Number(raw['attempts'] ?? 0),
    outcomeUnknown: raw['outcomeUnknown'] === true,
    possibleDuplicate: raw['possibleDuplicate'] === true,
    source: raw['source'] as string | undefined,
    lastError: raw['lastError'] as SegmentError | undefined,
    renameError: raw['renameError'] as SegmentError | undefined,
    createdAt: String(raw['createdAt'] ?? ''),
    updatedAt: String(raw['updatedAt'] ?? ''),
  };
}

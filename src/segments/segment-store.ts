import {
  type AttributeValue,
  ConditionalCheckFailedException,
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  ScanCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { marshall, unmarshall } from '@aws-sdk/util-dynamodb';
import type { Audience, OrphanSegment, SegmentError, SegmentRecord } from './segment.ts';

/**
 * The segment table (src/infra/resources.ts SEGMENT_TABLE). Every state change is a conditional
 * write: the lease is taken only from a free state, and only the lease holder may settle it, so
 * concurrent first uses of one audience create exactly one partner segment.
 */
const key = (platformId: number, audienceId: string) => ({
  pk: { S: `platform#${platformId}` },
  sk: { S: `audience#${audienceId}` },
});

/**
 * Beside each platform's audiences, one claim item per partner segment id (`sk =
 * partnerSegment#<id>`, holding the audience id): written by conditional put before an id is
 * recorded, so that two audiences never share a partner segment (populating both would merge
 * their users), whatever the partner answers.
 */
const claimKey = (platformId: number, partnerSegmentId: string) => ({
  pk: { S: `platform#${platformId}` },
  sk: { S: `partnerSegment#${partnerSegmentId}` },
});

export interface LeaseOptions {
  /** Also take a `failed` segment (the operator asked for a retry). */
  readonly retryFailed?: boolean;
  /** Also take an `unresolved` segment (the operator confirmed a new create). */
  readonly confirmCreate?: boolean;
}

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
      // Audience items only (not the partner segment claims beside them).
      const page =
        platformId === undefined
          ? await this.client.send(
              new ScanCommand({
                TableName: this.tableName,
                FilterExpression: 'begins_with(sk, :audience)',
                ExpressionAttributeValues: { ':audience': { S: 'audience#' } },
                ExclusiveStartKey: startKey,
              }),
            )
          : await this.client.send(
              new QueryCommand({
                TableName: this.tableName,
                KeyConditionExpression: 'pk = :pk AND begins_with(sk, :audience)',
                ExpressionAttributeValues: {
                  ':pk': { S: `platform#${platformId}` },
                  ':audience': { S: 'audience#' },
                },
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
    options: boolean | LeaseOptions,
  ): Promise<LeaseResult> {
    const { retryFailed = false, confirmCreate = false } =
      typeof options === 'boolean' ? { retryFailed: options } : options;
    const now = new Date(nowMs).toISOString();
    try {
      const answer = await this.client.send(
        new UpdateItemCommand({
          TableName: this.tableName,
          Key: key(platformId, audience.id),
          UpdateExpression:
            'SET #state = :creating, leaseOwner = :owner, leaseExpiresAt = :expires, audienceName = :name, kind = :kind, ' +
            'platformId = :platformId, audienceId = :audienceId, attempts = if_not_exists(attempts, :zero), ' +
            'createdAt = if_not_exists(createdAt, :now), updatedAt = :now REMOVE retryAt',
          // A retry waits for the time the partner asked for (Retry-After).
          ConditionExpression:
            'attribute_not_exists(pk) OR (#state = :retry AND (attribute_not_exists(retryAt) OR retryAt <= :nowMs)) ' +
            'OR (#state = :creating AND leaseExpiresAt < :nowMs)' +
            (retryFailed ? ' OR #state = :failed' : '') +
            (confirmCreate ? ' OR #state = :unresolved' : ''),
          ExpressionAttributeNames: { '#state': 'state' },
          ExpressionAttributeValues: marshall({
            ':creating': 'creating',
            ':retry': 'retry',
            ...(retryFailed ? { ':failed': 'failed' } : {}),
            ...(confirmCreate ? { ':unresolved': 'unresolved' } : {}),
            ':owner': owner,
            ':expires': nowMs + leaseMs,
            ':nowMs': nowMs,
            ':name': audience.name,
            ':kind': audience.kind,
            ':platformId': platformId,
            ':audienceId': audience.id,
            ':zero': 0,
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

  /**
   * Extends the holder's lease to `nowMs + leaseMs`, before each partner call; false when the
   * lease is no longer this owner's (it expired and another caller took it, or the segment was
   * settled meanwhile): then no call may be made.
   */
  async renewLease(
    platformId: number,
    audienceId: string,
    owner: string,
    nowMs: number,
    leaseMs: number,
    /** The renewal precedes a create call: count it in `attempts`. */
    beforeCreate = false,
  ): Promise<boolean> {
    try {
      await this.client.send(
        new UpdateItemCommand({
          TableName: this.tableName,
          Key: key(platformId, audienceId),
          UpdateExpression: `SET leaseExpiresAt = :expires${beforeCreate ? ', attempts = attempts + :one' : ''}`,
          ConditionExpression: 'leaseOwner = :owner AND #state = :creating',
          ExpressionAttributeNames: { '#state': 'state' },
          ExpressionAttributeValues: marshall({
            ':expires': nowMs + leaseMs,
            ':owner': owner,
            ':creating': 'creating',
            ...(beforeCreate ? { ':one': 1 } : {}),
          }),
        }),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }

  /**
   * Claims a partner segment id for an audience: undefined when it is this audience's (now or
   * already), else the id of the audience that holds it.
   */
  async claimPartnerSegment(
    platformId: number,
    partnerSegmentId: string,
    audienceId: string,
    nowMs: number,
  ): Promise<string | undefined> {
    try {
      await this.client.send(
        new PutItemCommand({
          TableName: this.tableName,
          Item: {
            ...claimKey(platformId, partnerSegmentId),
            ...marshall({ audienceId, claimedAt: new Date(nowMs).toISOString() }),
          },
          ConditionExpression: 'attribute_not_exists(pk) OR audienceId = :audienceId',
          ExpressionAttributeValues: marshall({ ':audienceId': audienceId }),
        }),
      );
      return undefined;
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
      const holder = await this.client.send(
        new GetItemCommand({
          TableName: this.tableName,
          Key: claimKey(platformId, partnerSegmentId),
          ConsistentRead: true,
        }),
      );
      const audience = holder.Item ? unmarshall(holder.Item)['audienceId'] : undefined;
      // Released in between: try once more.
      if (audience === undefined)
        return this.claimPartnerSegment(platformId, partnerSegmentId, audienceId, nowMs);
      return String(audience);
    }
  }

  /** Gives a claim up (only the audience that holds it can). */
  async releasePartnerSegment(platformId: number, partnerSegmentId: string, audienceId: string) {
    try {
      await this.client.send(
        new DeleteItemCommand({
          TableName: this.tableName,
          Key: claimKey(platformId, partnerSegmentId),
          ConditionExpression: 'audienceId = :audienceId',
          ExpressionAttributeValues: marshall({ ':audienceId': audienceId }),
        }),
      );
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
    }
  }

  /**
   * Stores an id obtained by a caller that lost its lease, unless the segment is ready by then:
   * the id is kept rather than dropped, and a caller still holding the lease learns at its own
   * settling that it lost. False when the segment was ready already (then see addOrphan).
   */
  async settleReadyWithoutLease(
    platformId: number,
    audienceId: string,
    nowMs: number,
    settlement: Settlement,
  ): Promise<boolean> {
    return this.update(
      platformId,
      audienceId,
      'attribute_exists(pk) AND #state <> :ready',
      { ':ready': 'ready' },
      {
        set: {
          state: 'ready',
          partnerSegmentId: settlement.partnerSegmentId,
          nameAtPartner: settlement.nameAtPartner,
          source: settlement.source,
          possibleDuplicate: settlement.possibleDuplicate,
          outcomeUnknown: false,
          updatedAt: new Date(nowMs).toISOString(),
        },
        remove: ['leaseOwner', 'leaseExpiresAt', 'lastError', 'retryAt'],
      },
    );
  }

  /** Records a partner segment that serves no audience, and flags the audience for an operator. */
  async addOrphan(
    platformId: number,
    audienceId: string,
    nowMs: number,
    orphan: OrphanSegment,
  ): Promise<void> {
    await this.client.send(
      new UpdateItemCommand({
        TableName: this.tableName,
        Key: key(platformId, audienceId),
        UpdateExpression:
          'SET orphans = list_append(if_not_exists(orphans, :empty), :orphan), possibleDuplicate = :true, updatedAt = :now',
        ExpressionAttributeValues: marshall({
          ':empty': [],
          ':orphan': [orphan],
          ':true': true,
          ':now': new Date(nowMs).toISOString(),
        }),
      }),
    );
  }

  /**
   * A create whose outcome is unknown and that nothing can check: no further create until an
   * operator decides (`dmp segments resolve`).
   */
  async settleUnresolved(
    platformId: number,
    audienceId: string,
    owner: string,
    nowMs: number,
    error: SegmentError,
  ) {
    return this.settle(platformId, audienceId, owner, {
      set: {
        state: 'unresolved',
        lastError: error,
        outcomeUnknown: true,
        possibleDuplicate: true,
        updatedAt: new Date(nowMs).toISOString(),
      },
      remove: ['leaseOwner', 'leaseExpiresAt'],
    });
  }

  /**
   * The operator's decision: this audience's partner segment is `partnerSegmentId` (found at the
   * partner). Refused while a live lease is held. The id it replaces, if any, becomes an orphan.
   */
  async adopt(
    platformId: number,
    audienceId: string,
    partnerSegmentId: string,
    nameAtPartner: string | undefined,
    nowMs: number,
  ): Promise<boolean> {
    const current = await this.get(platformId, audienceId);
    if (!current) return false;
    const replaced =
      current.partnerSegmentId !== undefined && current.partnerSegmentId !== partnerSegmentId
        ? [
            {
              partnerSegmentId: current.partnerSegmentId,
              reason: `replaced by ${partnerSegmentId} (dmp segments resolve --adopt)`,
              at: new Date(nowMs).toISOString(),
            },
          ]
        : [];
    const orphans = [...(current.orphans ?? []), ...replaced].filter(
      (orphan) => orphan.partnerSegmentId !== partnerSegmentId,
    );
    return this.update(
      platformId,
      audienceId,
      'attribute_exists(pk) AND (#state <> :creating OR leaseExpiresAt < :nowMs)',
      { ':creating': 'creating', ':nowMs': nowMs },
      {
        set: {
          state: 'ready',
          partnerSegmentId,
          nameAtPartner: nameAtPartner ?? current.nameAtPartner ?? current.audienceName,
          source: 'adopted',
          possibleDuplicate: false,
          outcomeUnknown: false,
          orphans,
          updatedAt: new Date(nowMs).toISOString(),
        },
        remove: ['leaseOwner', 'leaseExpiresAt', 'lastError', 'retryAt'],
      },
    );
  }

  /**
   * The partner no longer knows the stored id (a 404 on use): the segment goes back to `retry`,
   * so the next caller obtains a new one, with the reason kept in `lastError`. Only if the
   * stored id is still `partnerSegmentId`.
   */
  async markUnknownAtPartner(
    platformId: number,
    audienceId: string,
    partnerSegmentId: string,
    nowMs: number,
    error: SegmentError,
  ): Promise<boolean> {
    return this.update(
      platformId,
      audienceId,
      '#state = :ready AND partnerSegmentId = :id',
      { ':ready': 'ready', ':id': partnerSegmentId },
      {
        set: {
          state: 'retry',
          lastError: error,
          outcomeUnknown: false,
          updatedAt: new Date(nowMs).toISOString(),
        },
        remove: ['partnerSegmentId', 'nameAtPartner', 'source', 'renameError'],
      },
    );
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
      remove: ['leaseOwner', 'leaseExpiresAt', 'lastError', 'retryAt'],
    });
  }

  /** The partner refused: kept as `failed` with its answer, not retried blindly. */
  async settleFailed(
    platformId: number,
    audienceId: string,
    owner: string,
    nowMs: number,
    error: SegmentError,
    /** A refusal after an earlier unknown outcome: the partner may still hold a segment. */
    outcomeUnknown = false,
  ) {
    return this.settle(platformId, audienceId, owner, {
      set: {
        state: 'failed',
        lastError: error,
        outcomeUnknown,
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
    retryAt?: number,
  ) {
    return this.settle(platformId, audienceId, owner, {
      set: {
        state: 'retry',
        lastError: error,
        outcomeUnknown,
        updatedAt: new Date(nowMs).toISOString(),
        ...(retryAt === undefined ? {} : { retryAt }),
      },
      remove: ['leaseOwner', 'leaseExpiresAt', ...(retryAt === undefined ? ['retryAt'] : [])],
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

  private settle(
    platformId: number,
    audienceId: string,
    owner: string,
    change: { set: Record<string, unknown>; remove: string[] },
  ): Promise<boolean> {
    return this.update(platformId, audienceId, 'leaseOwner = :owner', { ':owner': owner }, change);
  }

  /** A conditional update of the audience's item: false when the condition does not hold. */
  private async update(
    platformId: number,
    audienceId: string,
    condition: string,
    conditionValues: Record<string, unknown>,
    change: { set: Record<string, unknown>; remove: string[] },
  ): Promise<boolean> {
    const expression = updateExpression(change.set, change.remove);
    const names = { ...expression.ExpressionAttributeNames };
    if (condition.includes('#state')) names['#state'] = 'state';
    try {
      await this.client.send(
        new UpdateItemCommand({
          TableName: this.tableName,
          Key: key(platformId, audienceId),
          UpdateExpression: expression.UpdateExpression,
          ConditionExpression: condition,
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: marshall(
            { ...prefixed(change.set), ...conditionValues },
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
    retryAt: raw['retryAt'] === undefined ? undefined : Number(raw['retryAt']),
    orphans: Array.isArray(raw['orphans']) ? (raw['orphans'] as OrphanSegment[]) : undefined,
    lastError: raw['lastError'] as SegmentError | undefined,
    renameError: raw['renameError'] as SegmentError | undefined,
    createdAt: String(raw['createdAt'] ?? ''),
    updatedAt: String(raw['updatedAt'] ?? ''),
  };
}

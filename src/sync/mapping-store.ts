import {
  BatchWriteItemCommand,
  ConditionalCheckFailedException,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { decideMappingWrite, type MappingRecord, OUTCOME_OF_WRITE, type SightingOutcome } from './mapping.ts';

/** Key layout of the mapping table (see src/infra/resources.ts). */
export const mappingKey = (dmpUserId: string, platformId: number) => ({
  pk: { S: `user#${dmpUserId}` },
  sk: { S: `platform#${platformId}` },
});

export interface SightingInput {
  readonly dmpUserId: string;
  readonly platformId: number;
  readonly partnerUserId: string;
  readonly nowSeconds: number;
  readonly ttlSeconds: number;
  /** An unchanged id seen again sooner than this is not written. */
  readonly refreshAfterSeconds: number;
}

export interface MappingStore {
  listForUser(dmpUserId: string, nowSeconds: number): Promise<MappingRecord[]>;
  recordSighting(input: SightingInput): Promise<SightingOutcome>;
  deleteUser(dmpUserId: string): Promise<number>;
  /** True the first time a key is claimed; false for a replay while the guard lives. */
  claimReplayGuard(platformId: number, digest: string, expiresAtSeconds: number): Promise<boolean>;
}

export class ConcurrentWriteError extends Error {
  override readonly name = 'ConcurrentWriteError';
}

/** Conflicting parallel writes are re-read and re-decided this many times before giving up. */
const MAX_WRITE_ATTEMPTS = 5;

const iso = (seconds: number) => new Date(seconds * 1000).toISOString();

export class DynamoMappingStore implements MappingStore {
  constructor(
    private readonly client: DynamoDBClient,
    private readonly tableName: string,
  ) {}

  async listForUser(dmpUserId: string, nowSeconds: number): Promise<MappingRecord[]> {
    const records: MappingRecord[] = [];
    let startKey: Record<string, import('@aws-sdk/client-dynamodb').AttributeValue> | undefined;
    do {
      const page = await this.client.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :platform)',
          ExpressionAttributeValues: { ':pk': { S: `user#${dmpUserId}` }, ':platform': { S: 'platform#' } },
          ExclusiveStartKey: startKey,
        }),
      );
      for (const item of page.Items ?? []) {
        const record = toRecord(item);
        // TTL deletion lags by up to two days: an expired item is already gone for us.
        if (record && record.expiresAt > nowSeconds) records.push(record);
      }
      startKey = page.LastEvaluatedKey;
    } while (startKey);
    return records;
  }

  async recordSighting(input: SightingInput): Promise<SightingOutcome> {
    const key = mappingKey(input.dmpUserId, input.platformId);
    for (let attempt = 0; attempt < MAX_WRITE_ATTEMPTS; attempt++) {
      const current = await this.client.send(
        new GetItemCommand({ TableName: this.tableName, Key: key, ConsistentRead: true }),
      );
      const record = current.Item ? toRecord(current.Item) : undefined;
      const write = decideMappingWrite(
        record,
        input.partnerUserId,
        input.nowSeconds,
        input.refreshAfterSeconds,
      );
      const now = { S: iso(input.nowSeconds) };
      const expiresAt = { N: String(input.nowSeconds + input.ttlSeconds) };
      try {
        switch (write.kind) {
          case 'none':
            break;
          case 'create':
            await this.client.send(
              new PutItemCommand({
                TableName: this.tableName,
                Item: {
                  ...key,
                  platformId: { N: String(input.platformId) },
                  partnerUserId: { S: input.partnerUserId },
                  firstSeen: now,
                  lastSeen: now,
                  lastChanged: now,
                  expiresAt,
                  version: { N: String((write.replacesVersion ?? 0) + 1) },
                },
                ConditionExpression:
                  write.replacesVersion === undefined ? 'attribute_not_exists(pk)' : 'version = :expected',
                ExpressionAttributeValues:
                  write.replacesVersion === undefined
                    ? undefined
                    : { ':expected': { N: String(write.replacesVersion) } },
              }),
            );
            break;
          case 'refresh':
            await this.client.send(
              new UpdateItemCommand({
                TableName: this.tableName,
                Key: key,
                UpdateExpression: 'SET lastSeen = :now, expiresAt = :expiresAt, version = version + :one',
                ConditionExpression: 'version = :expected',
                ExpressionAttributeValues: {
                  ':now': now,
                  ':expiresAt': expiresAt,
                  ':one': { N: '1' },
                  ':expected': { N: String(write.expectedVersion) },
                },
              }),
            );
            break;
          case 'change':
            // Conditional on what makes it a change (a live item holding another id), not on the
            // version read: the id it replaces is taken by DynamoDB at write time, so parallel
            // callbacks with different ids each land in turn instead of racing on one version
            // (with a version condition, N parallel changes need N rounds and lose after 5).
            await this.client.send(
              new UpdateItemCommand({
                TableName: this.tableName,
                Key: key,
                UpdateExpression:
                  'SET previousPartnerUserId = partnerUserId, partnerUserId = :id, lastChanged = :now, lastSeen = :now, expiresAt = :expiresAt, version = version + :one',
                ConditionExpression:
                  'attribute_exists(pk) AND partnerUserId <> :id AND expiresAt > :nowSeconds',
                ExpressionAttributeValues: {
                  ':id': { S: input.partnerUserId },
                  ':now': now,
                  ':nowSeconds': { N: String(input.nowSeconds) },
                  ':expiresAt': expiresAt,
                  ':one': { N: '1' },
                },
              }),
            );
            break;
        }
        return OUTCOME_OF_WRITE[write.kind];
      } catch (error) {
        if (error instanceof ConditionalCheckFailedException) continue;
        throw error;
      }
    }
    throw new ConcurrentWriteError(`mapping write lost ${MAX_WRITE_ATTEMPTS} races in a row`);
  }

  async deleteUser(dmpUserId: string): Promise<number> {
    const records = await this.listForUser(dmpUserId, 0);
    for (let index = 0; index < records.length; index += 25) {
      let requests = records.slice(index, index + 25).map((record) => ({
        DeleteRequest: { Key: mappingKey(dmpUserId, record.platformId) },
      }));
      for (let attempt = 0; requests.length > 0; attempt++) {
        if (attempt >= MAX_WRITE_ATTEMPTS) throw new Error('could not delete every mapping of the user');
        const result = await this.client.send(
          new BatchWriteItemCommand({ RequestItems: { [this.tableName]: requests } }),
        );
        requests = (result.UnprocessedItems?.[this.tableName] ?? []) as typeof requests;
      }
    }
    return records.length;
  }

  async claimReplayGuard(platformId: number, digest: string, expiresAtSeconds: number): Promise<boolean> {
    try {
      await this.client.send(
        new PutItemCommand({
          TableName: this.tableName,
          Item: {
            pk: { S: `replay#${platformId}#${digest}` },
            sk: { S: 'replay' },
            expiresAt: { N: String(expiresAtSeconds) },
          },
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }
}

function toRecord(
  item: Record<string, import('@aws-sdk/client-dynamodb').AttributeValue>,
): MappingRecord | undefined {
  const platformId = Number(item['platformId']?.N);
  const partnerUserId = item['partnerUserId']?.S;
  if (!Number.isInteger(platformId) || partnerUserId === undefined) return undefined;
  return {
    platformId,
    partnerUserId,
    firstSeen: item['firstSeen']?.S ?? '',
    lastSeen: item['lastSeen']?.S ?? '',
    lastChanged: item['lastChanged']?.S ?? '',
    previousPartnerUserId: item['previousPartnerUserId']?.S,
    expiresAt: Number(item['expiresAt']?.N ?? 0),
    version: Number(item['version']?.N ?? 0),
  };
}

import {
  type AttributeValue,
  BatchWriteItemCommand,
  ConditionalCheckFailedException,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  UpdateItemCommand,
  type WriteRequest,
} from '@aws-sdk/client-dynamodb';
import { backoffDelayMs } from '../connectors/retry.ts';
import {
  type ChangeLimits,
  decideMappingWrite,
  type ForgottenRefusal,
  type MappingRecord,
  REFRESHED_ATTRIBUTE,
  type SightingGuess,
  type SightingOutcome,
  type StaticTokenRefusal,
  USER_FORGOTTEN,
  VERIFIED_CALLBACK,
} from './mapping.ts';

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
  /** What a static-token callback may change; verified callbacks by default. */
  readonly limits?: ChangeLimits;
  /**
   * What the browser's cookie (`dmp_ss`) says this sighting will be (guessSighting): a new mapping
   * (the default: try the creation), an id change (try the change), a refresh (try the refresh
   * first), or a repeat inside the resync interval (read first: an unchanged id then costs one
   * read, no write). A guess only: a wrong one costs a failed condition or a read more.
   */
  readonly expected?: SightingGuess;
}

export type SightingResult = SightingOutcome | StaticTokenRefusal | ForgottenRefusal;

export interface MappingStore {
  /** `consistent`: a strongly consistent read (the opt-out must see every mapping). */
  listForUser(
    dmpUserId: string,
    nowSeconds: number,
    options?: { consistent?: boolean },
  ): Promise<MappingRecord[]>;
  /**
   * listForUser, and whether a privacy request forgot the user (its forget markers, found by the
   * same query): `/sync` then redirects the browser to no partner. Optional: a store without
   * markers need not have it.
   */
  readUser?(
    dmpUserId: string,
    nowSeconds: number,
  ): Promise<{ mappings: MappingRecord[]; forgotten: boolean }>;
  recordSighting(input: SightingInput): Promise<SightingResult>;
  deleteUser(dmpUserId: string): Promise<number>;
  /** True the first time a key is claimed; false for a replay while the guard lives. */
  claimReplayGuard(platformId: number, digest: string, expiresAtSeconds: number): Promise<boolean>;
}

export class ConcurrentWriteError extends Error {
  override readonly name = 'ConcurrentWriteError';
}

/** Conflicting parallel writes are re-read and re-decided this many times before giving up. */
const MAX_WRITE_ATTEMPTS = 5;
/** Between those attempts, and between batch-delete retries: full-jitter exponential backoff. */
const STORE_BACKOFF = { baseDelayMs: 10, maxDelayMs: 200 } as const;

/**
 * A refresh: last seen, expiry and version, and the mark that keeps the write from the release
 * stream (REFRESHED_ATTRIBUTE; a change removes it, a new item has none).
 */
const REFRESH_UPDATE = `SET lastSeen = :now, expiresAt = :expiresAt, version = version + :one, ${REFRESHED_ATTRIBUTE} = :refreshed`;

const iso = (seconds: number) => new Date(seconds * 1000).toISOString();
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class DynamoMappingStore implements MappingStore {
  constructor(
    private readonly client: DynamoDBClient,
    private readonly tableName: string,
    /** Injected for tests; Math.random otherwise. */
    private readonly random: () => number = Math.random,
  ) {}

  async listForUser(
    dmpUserId: string,
    nowSeconds: number,
    options: { consistent?: boolean } = {},
  ): Promise<MappingRecord[]> {
    return (await this.queryUser(dmpUserId, nowSeconds, options)).mappings;
  }

  readUser(
    dmpUserId: string,
    nowSeconds: number,
  ): Promise<{ mappings: MappingRecord[]; forgotten: boolean }> {
    return this.queryUser(dmpUserId, nowSeconds, {});
  }

  private async queryUser(
    dmpUserId: string,
    nowSeconds: number,
    options: { consistent?: boolean },
  ): Promise<{ mappings: MappingRecord[]; forgotten: boolean }> {
    const records: MappingRecord[] = [];
    let forgotten = false;
    let startKey: Record<string, AttributeValue> | undefined;
    do {
      const page = await this.client.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :platform)',
          ExpressionAttributeValues: { ':pk': { S: `user#${dmpUserId}` }, ':platform': { S: 'platform#' } },
          ExclusiveStartKey: startKey,
          ConsistentRead: options.consistent === true,
        }),
      );
      for (const item of page.Items ?? []) {
        if (isLiveForgetMarker(item, nowSeconds)) forgotten = true;
        const record = toRecord(item);
        // TTL deletion lags by up to two days: an expired item is already gone for us.
        if (record && record.expiresAt > nowSeconds) records.push(record);
      }
      startKey = page.LastEvaluatedKey;
    } while (startKey);
    return { mappings: records, forgotten };
  }

  /**
   * One call in the common cases, chosen by what the browser's cookie says (`expected`): a new
   * mapping is a conditional PutItem if the item is absent or expired; a known one seen again after
   * the resync interval is an UpdateItem of last-seen and expiry if the item holds the same id,
   * last seen before the cutoff; an id other than the one the cookie's digest names is the change
   * UpdateItem below, whose condition says what allows a change; a repeat inside the interval is a
   * consistent GetItem (no write).
   * When the condition fails (a wrong guess, an id change, the same id seen recently) the item
   * comes back with the failure on AWS (ReturnValuesOnConditionCheckFailure); where it does not
   * (dynalite), a consistent GetItem reads it. Then the pure decision of mapping.ts says what, if
   * anything, to write; that write is conditional too, and a lost race re-reads and decides again
   * after a jittered backoff. Correctness never depends on the guess or on the returned item.
   */
  async recordSighting(input: SightingInput): Promise<SightingResult> {
    const key = mappingKey(input.dmpUserId, input.platformId);
    const limits = input.limits ?? VERIFIED_CALLBACK;
    const verified = limits.assurance === 'verified';
    const now = { S: iso(input.nowSeconds) };
    const expiresAt = { N: String(input.nowSeconds + input.ttlSeconds) };
    const nowSeconds = { N: String(input.nowSeconds) };

    let current: MappingRecord | undefined;
    try {
      if (input.expected === 'unchanged') {
        // Straight to the read-then-decide below.
      } else if (input.expected === 'changed') {
        await this.client.send(changeCommand(this.tableName, key, input, limits, true));
        return 'changed';
      } else if (input.expected === 'refresh') {
        await this.client.send(
          new UpdateItemCommand({
            TableName: this.tableName,
            Key: key,
            UpdateExpression: `${REFRESH_UPDATE}${verified ? ', verifiedAt = :now' : ''}`,
            ConditionExpression:
              'partnerUserId = :id AND lastSeen <= :refreshCutoff AND expiresAt > :nowSeconds',
            ExpressionAttributeValues: {
              ':id': { S: input.partnerUserId },
              ':now': now,
              ':expiresAt': expiresAt,
              ':nowSeconds': nowSeconds,
              ':refreshCutoff': { S: iso(input.nowSeconds - input.refreshAfterSeconds) },
              ':one': { N: '1' },
              ':refreshed': { BOOL: true },
            },
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        );
        return 'refreshed';
      } else {
        // A fresh item: an expired one TTL has not removed yet is replaced whole (its history is not ours).
        await this.client.send(
          new PutItemCommand({
            TableName: this.tableName,
            Item: newItem(key, input, now, expiresAt, 1, verified),
            ConditionExpression: 'attribute_not_exists(pk) OR expiresAt <= :nowSeconds',
            ExpressionAttributeValues: { ':nowSeconds': nowSeconds },
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        );
        return 'stored';
      }
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
      if (isLiveForgetMarker(error.Item, input.nowSeconds)) return USER_FORGOTTEN;
      current = error.Item ? toRecord(error.Item) : undefined;
    }

    for (let attempt = 1; ; attempt++) {
      if (current === undefined) {
        const item = await this.read(key);
        if (isLiveForgetMarker(item, input.nowSeconds)) return USER_FORGOTTEN;
        current = item ? toRecord(item) : undefined;
      }
      const write = decideMappingWrite(
        current,
        input.partnerUserId,
        input.nowSeconds,
        input.refreshAfterSeconds,
        limits,
      );
      try {
        switch (write.kind) {
          case 'refuse':
            return write.reason;
          case 'none':
            return 'unchanged';
          case 'create':
            await this.client.send(
              new PutItemCommand({
                TableName: this.tableName,
                Item: newItem(key, input, now, expiresAt, (write.replacesVersion ?? 0) + 1, verified),
                // Absent, or an expired item that is no mapping (a forget marker past its life).
                ConditionExpression:
                  write.replacesVersion === undefined
                    ? 'attribute_not_exists(pk) OR expiresAt <= :nowSeconds'
                    : 'version = :expected',
                ExpressionAttributeValues:
                  write.replacesVersion === undefined
                    ? { ':nowSeconds': nowSeconds }
                    : { ':expected': { N: String(write.replacesVersion) } },
              }),
            );
            return 'stored';
          case 'refresh':
            await this.client.send(
              new UpdateItemCommand({
                TableName: this.tableName,
                Key: key,
                UpdateExpression: `${REFRESH_UPDATE}${verified ? ', verifiedAt = :now' : ''}`,
                ConditionExpression: 'version = :expected',
                ExpressionAttributeValues: {
                  ':now': now,
                  ':expiresAt': expiresAt,
                  ':one': { N: '1' },
                  ':expected': { N: String(write.expectedVersion) },
                  ':refreshed': { BOOL: true },
                },
              }),
            );
            return 'refreshed';
          case 'change':
            await this.client.send(changeCommand(this.tableName, key, input, limits, false));
            return 'changed';
        }
      } catch (error) {
        if (!(error instanceof ConditionalCheckFailedException)) throw error;
        if (attempt >= MAX_WRITE_ATTEMPTS)
          throw new ConcurrentWriteError(`mapping write lost ${MAX_WRITE_ATTEMPTS} races in a row`);
        current = undefined;
        await sleep(backoffDelayMs(attempt, STORE_BACKOFF, this.random));
      }
    }
  }

  private async read(
    key: ReturnType<typeof mappingKey>,
  ): Promise<Record<string, AttributeValue> | undefined> {
    const result = await this.client.send(
      new GetItemCommand({ TableName: this.tableName, Key: key, ConsistentRead: true }),
    );
    return result.Item;
  }

  /**
   * A privacy request's sync markers: one item per platform in the user's partition, in place of
   * (or instead of) the mapping, holding no partner id, living until `untilSeconds` (TTL). Every
   * sighting path of recordSighting meets the item it would write, so a browser that still
   * carries the forgotten id is refused (`user_forgotten`) with the calls it makes anyway: the
   * creating put's condition fails on the live marker, the refresh's condition fails on its
   * missing partner id, and the read sees it. listForUser and deleteUser skip markers (no
   * partner id); the release stream ignores them for the same reason.
   */
  async putForgetMarkers(
    dmpUserId: string,
    platformIds: readonly number[],
    untilSeconds: number,
  ): Promise<void> {
    const requests = platformIds.map((platformId) => ({
      PutRequest: {
        Item: {
          ...mappingKey(dmpUserId, platformId),
          forgotten: { BOOL: true },
          expiresAt: { N: String(untilSeconds) },
        },
      },
    }));
    await this.batchWrite(requests, 'could not write every forget marker of the user');
  }

  async deleteUser(dmpUserId: string): Promise<number> {
    // Strongly consistent: a mapping stored a moment ago must be deleted too.
    const records = await this.listForUser(dmpUserId, 0, { consistent: true });
    await this.batchWrite(
      records.map((record) => ({ DeleteRequest: { Key: mappingKey(dmpUserId, record.platformId) } })),
      'could not delete every mapping of the user',
    );
    return records.length;
  }

  /** BatchWriteItem in chunks of 25, unprocessed items retried with backoff. */
  private async batchWrite(all: readonly WriteRequest[], failure: string): Promise<void> {
    for (let index = 0; index < all.length; index += 25) {
      let requests = all.slice(index, index + 25);
      for (let attempt = 1; requests.length > 0; attempt++) {
        if (attempt > MAX_WRITE_ATTEMPTS) throw new Error(failure);
        if (attempt > 1) await sleep(backoffDelayMs(attempt - 1, STORE_BACKOFF, this.random));
        const result = await this.client.send(
          new BatchWriteItemCommand({ RequestItems: { [this.tableName]: [...requests] } }),
        );
        requests = result.UnprocessedItems?.[this.tableName] ?? [];
      }
    }
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

/**
 * The id change. Conditional on what makes it a change (a live item holding another id), not on a
 * version read: the id it replaces is taken by DynamoDB at write time, so parallel callbacks with
 * different ids each land in turn instead of racing on one version. A static-token change is also
 * conditional on what allows it (no verified id, no change inside the interval), so a verified id
 * stored meanwhile is never replaced. The condition holds the whole decision of mapping.ts for a
 * different id, so the change can be the first call when the cookie says the id differs
 * (`returnOld`: the item comes back with a failed condition, for the decision). A mapping has a
 * partner id; an absent item or a forget marker has none, and fails the condition whatever a
 * comparison with a missing attribute would give.
 */
function changeCommand(
  tableName: string,
  key: ReturnType<typeof mappingKey>,
  input: SightingInput,
  limits: ChangeLimits,
  returnOld: boolean,
): UpdateItemCommand {
  const verified = limits.assurance === 'verified';
  const now = { S: iso(input.nowSeconds) };
  return new UpdateItemCommand({
    TableName: tableName,
    Key: key,
    // A new id: the refresh mark goes, so the release stream sees the change (REFRESHED_ATTRIBUTE).
    UpdateExpression: `SET previousPartnerUserId = partnerUserId, partnerUserId = :id, lastChanged = :now, lastSeen = :now, expiresAt = :expiresAt, version = version + :one${
      verified ? ', verifiedAt = :now' : ''
    } REMOVE ${REFRESHED_ATTRIBUTE}`,
    ConditionExpression: `attribute_exists(partnerUserId) AND partnerUserId <> :id AND expiresAt > :nowSeconds${
      verified ? '' : ' AND attribute_not_exists(verifiedAt) AND lastChanged <= :changeCutoff'
    }`,
    ExpressionAttributeValues: {
      ':id': { S: input.partnerUserId },
      ':now': now,
      ':nowSeconds': { N: String(input.nowSeconds) },
      ':expiresAt': { N: String(input.nowSeconds + input.ttlSeconds) },
      ':one': { N: '1' },
      ...(verified
        ? {}
        : { ':changeCutoff': { S: iso(input.nowSeconds - limits.staticChangeIntervalSeconds) } }),
    },
    ...(returnOld ? { ReturnValuesOnConditionCheckFailure: 'ALL_OLD' as const } : {}),
  });
}

/** A forget marker (putForgetMarkers) that still refuses mappings. */
function isLiveForgetMarker(item: Record<string, AttributeValue> | undefined, nowSeconds: number): boolean {
  return item?.['forgotten']?.BOOL === true && Number(item['expiresAt']?.N ?? 0) > nowSeconds;
}

function toRecord(item: Record<string, AttributeValue>): MappingRecord | undefined {
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
    verifiedAt: item['verifiedAt']?.S,
  };
}

function newItem(
  key: ReturnType<typeof mappingKey>,
  input: SightingInput,
  now: AttributeValue,
  expiresAt: AttributeValue,
  version: number,
  verified: boolean,
): Record<string, AttributeValue> {
  return {
    ...key,
    platformId: { N: String(input.platformId) },
    partnerUserId: { S: input.partnerUserId },
    firstSeen: now,
    lastSeen: now,
    lastChanged: now,
    expiresAt,
    version: { N: String(version) },
    ...(verified ? { verifiedAt: now } : {}),
  };
}

import {
  type AttributeValue,
  ConditionalCheckFailedException,
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
} from '@aws-sdk/client-dynamodb';
import { marshall, unmarshall } from '@aws-sdk/util-dynamodb';
import type { ExportStore, PendingWindow } from './exporter.ts';
import { type FileWindow, parseWindowKey, windowEndMs, windowKey, windowOf } from './naming.ts';
import { type FileAccounting, type PublicationRecord, settledCounts } from './publication.ts';
import type { FileStaging, StagedMembership } from './staging.ts';
import type { StagedRow } from './tsv.ts';

/**
 * File staging and publication records in one DynamoDB table (FILE_STAGING_TABLE).
 *
 * Why DynamoDB, not append-only chunk objects in S3: staging must be idempotent per
 * (platform, segment, dmpUserId, op, ts), and an SQS message redelivered after its visibility
 * timeout usually arrives in a later window. Only a per-membership conditional write can say
 * "already staged" across windows; S3 chunks would dedupe identical batches at best (a redelivered
 * message rarely comes back in the same batch) and leave duplicates to an exporter that cannot hold
 * ten million keys in memory. Cost, on demand: one conditional put (1 WCU, items are ~200 bytes)
 * plus its index entry (1 WCU) per membership, about $1.25 per million staged memberships; reading
 * a window back is about 0.03 RCU per row ($0.004 per million). S3 chunks would be ~100x cheaper
 * to write, and are the path to take if file volume ever dominates the bill, with a dedupe horizon
 * bounded differently.
 *
 * Layout (pk, sk):
 * - `m#<platform>#<segment>#<dmpUserId>`, `<op>#<ts>`: one staged membership; first write wins.
 *   Index `byWindow`: wpk `w#<platform>#<segment>#<window>#<shard>`, wsk `<dmpUserId> <ts> <op>`,
 *   so a window reads back as `shards` ordered queries, each user's rows together in event order.
 *   Shards (`files.stagingShards`) spread one window's writes over index partitions (~1000 writes
 *   per second each). Expires `retentionDays` after staging: the redelivery horizon (the SQS
 *   retention of 14 days plus a redrive).
 * - `pending#<platform>`, `<window>#<segment>`: a window with staged rows, not yet settled.
 * - `pub#<platform>`, `<window>#<segment>`: the publication record (publication.ts).
 * - `lease#<platform>`, `lease`: the export run that holds the platform.
 * - `cursor#<platform>`, `emptyFiles`: the last window considered for empty files.
 *
 * No late rows: a membership is staged into the window of the moment `stage` is called, and
 * `stage` refuses to start a write after the window's end plus half the grace period; the exporter
 * reads a window only a full grace period after its end (exporter.ts DEFAULT_GRACE_MS).
 */

export interface StagingSettings {
  readonly everyMinutes: number;
  readonly stagingShards: number;
}

/** Bad input (unknown platform, a segment id unfit for a file name...): nothing was staged. */
export class StagingInputError extends Error {
  override readonly name = 'StagingInputError';
}

/** `stage` ran past its window's write deadline; nothing is lost: the caller retries. */
export class StagingDeadlineError extends Error {
  override readonly name = 'StagingDeadlineError';
}

export interface DynamoFileStoreOptions {
  /** The file settings of a file-mode platform; undefined for any other platform. */
  readonly settings: (platformId: number) => StagingSettings | undefined;
  readonly now?: () => number;
  readonly graceMs?: number;
  /** Concurrent conditional puts per `stage` call. */
  readonly concurrency?: number;
  readonly retentionDays?: number;
}

/** Later than any window: `pendingWindows(platform, LATEST_WINDOW_MS)` lists them all. */
export const LATEST_WINDOW_MS = Date.UTC(9999, 11, 31);

const SEGMENT_ID = /^[A-Za-z0-9._-]{1,128}$/;
const DMP_USER_ID = /^[A-Za-z0-9._-]{1,128}$/;

/** FNV-1a: a stable, cheap spread of users over shards. */
export function shardOf(dmpUserId: string, shards: number): number {
  let hash = 0x811c9dc5;
  for (let index = 0; index < dmpUserId.length; index += 1) {
    hash ^= dmpUserId.charCodeAt(index);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % shards;
}

/** Event times are normalised so that they sort as text. */
function normalizedTs(ts: string): string | undefined {
  const ms = Date.parse(ts);
  return Number.isNaN(ms) ? undefined : new Date(ms).toISOString();
}

export interface MembershipDelivery {
  readonly op: 'add' | 'remove';
  readonly ts: string;
  readonly window: string;
  /** `published`: in a published file; `empty`: its window published nothing (cancelled out). */
  readonly state: 'staged' | 'published' | 'empty';
  readonly files: readonly string[];
  /** When the window was settled (published or found empty). */
  readonly publishedAt?: string;
  /** Where its files went (`s3://bucket/prefix`, `sftp://host:port/dir`), once known. */
  readonly destination?: string;
}

export class DynamoFileStore implements FileStaging, ExportStore {
  private readonly now: () => number;
  private readonly graceMs: number;
  private readonly concurrency: number;
  private readonly retentionSeconds: number;

  constructor(
    private readonly client: DynamoDBClient,
    private readonly tableName: string,
    private readonly options: DynamoFileStoreOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.graceMs = options.graceMs ?? 120_000;
    this.concurrency = options.concurrency ?? 16;
    this.retentionSeconds = (options.retentionDays ?? 30) * 86_400;
  }

  async stage(memberships: readonly StagedMembership[]): Promise<void> {
    const at = this.now();
    const groups = new Map<string, { pending: PendingWindow; items: Record<string, AttributeValue>[] }>();
    for (const membership of memberships) {
      const settings = this.options.settings(membership.platformId);
      if (!settings) throw new StagingInputError(`platform ${membership.platformId} does not deliver files`);
      if (!SEGMENT_ID.test(membership.segmentId) || /^\.+$/.test(membership.segmentId))
        throw new StagingInputError(
          `segment id ${JSON.stringify(membership.segmentId.slice(0, 64))} of platform ${membership.platformId} cannot name a file`,
        );
      if (!DMP_USER_ID.test(membership.dmpUserId)) throw new StagingInputError('a dmpUserId is malformed');
      if (!membership.partnerUserId || /[\t\r\n]/.test(membership.partnerUserId))
        throw new StagingInputError('a partnerUserId is empty or holds a tab or line break');
      if (membership.op !== 'add' && membership.op !== 'remove')
        throw new StagingInputError('op must be add or remove');
      const ts = normalizedTs(membership.ts);
      if (!ts) throw new StagingInputError(`ts ${JSON.stringify(membership.ts.slice(0, 40))} is not a date`);

      const window = windowOf(at, settings.everyMinutes);
      const groupKey = `${membership.platformId}#${membership.segmentId}`;
      let group = groups.get(groupKey);
      if (!group) {
        group = {
          pending: {
            platformId: membership.platformId,
            segmentId: membership.segmentId,
            window,
            shards: settings.stagingShards,
          },
          items: [],
        };
        groups.set(groupKey, group);
      }
      const shard = shardOf(membership.dmpUserId, settings.stagingShards);
      const key = windowKey(window);
      group.items.push(
        marshall({
          pk: `m#${membership.platformId}#${membership.segmentId}#${membership.dmpUserId}`,
          sk: `${membership.op}#${ts}`,
          wpk: `w#${membership.platformId}#${membership.segmentId}#${key}#${shard}`,
          wsk: `${membership.dmpUserId} ${ts} ${membership.op}`,
          window: key,
          dmpUserId: membership.dmpUserId,
          partnerUserId: membership.partnerUserId,
          audienceId: membership.audienceId,
          op: membership.op,
          ts,
          stagedAt: new Date(at).toISOString(),
          expiresAt: Math.floor(at / 1000) + this.retentionSeconds,
        }),
      );
    }
    for (const { pending, items } of groups.values()) {
      const deadline = windowEndMs(pending.window) + this.graceMs / 2;
      // The pending marker first: a staged row is never in a window the exporter does not know of.
      await this.addPending(pending);
      await inParallel(items, this.concurrency, async (item) => {
        if (this.now() >= deadline)
          throw new StagingDeadlineError('staging ran past its window; retry the call (nothing is lost)');
        try {
          await this.client.send(
            new PutItemCommand({
              TableName: this.tableName,
              Item: item,
              ConditionExpression: 'attribute_not_exists(pk)',
            }),
          );
        } catch (error) {
          // Staged before (a redelivered message): it stays in the window it was first staged in.
          if (!(error instanceof ConditionalCheckFailedException)) throw error;
        }
      });
    }
  }

  async addPending(pending: PendingWindow): Promise<void> {
    await this.client.send(
      new PutItemCommand({
        TableName: this.tableName,
        Item: marshall({
          pk: `pending#${pending.platformId}`,
          sk: `${windowKey(pending.window)}#${pending.segmentId}`,
          platformId: pending.platformId,
          segmentId: pending.segmentId,
          windowStartMs: pending.window.startMs,
          windowMinutes: pending.window.minutes,
          shards: pending.shards,
        }),
      }),
    );
  }

  async getEmptyCursor(platformId: number): Promise<number | undefined> {
    const answer = await this.client.send(
      new GetItemCommand({
        TableName: this.tableName,
        Key: marshall({ pk: `cursor#${platformId}`, sk: 'emptyFiles' }),
        ConsistentRead: true,
      }),
    );
    const value = answer.Item?.['windowStartMs']?.N;
    return value === undefined ? undefined : Number(value);
  }

  async setEmptyCursor(platformId: number, windowStartMs: number): Promise<void> {
    await this.client.send(
      new PutItemCommand({
        TableName: this.tableName,
        Item: marshall({ pk: `cursor#${platformId}`, sk: 'emptyFiles', windowStartMs }),
      }),
    );
  }

  async pendingWindows(platformId: number, startedBeforeMs: number): Promise<PendingWindow[]> {
    const before = new Date(startedBeforeMs).toISOString().slice(0, 16);
    const windows: PendingWindow[] = [];
    for await (const item of this.query({
      KeyConditionExpression: 'pk = :pk AND sk < :before',
      ExpressionAttributeValues: marshall({ ':pk': `pending#${platformId}`, ':before': before }),
    })) {
      const raw = unmarshall(item);
      const window = { startMs: Number(raw['windowStartMs']), minutes: Number(raw['windowMinutes']) };
      if (window.startMs >= startedBeforeMs) continue;
      windows.push({
        platformId,
        segmentId: String(raw['segmentId']),
        window,
        shards: Number(raw['shards']),
      });
    }
    return windows.sort(
      (a, b) => a.window.startMs - b.window.startMs || a.segmentId.localeCompare(b.segmentId),
    );
  }

  async *rows(pending: PendingWindow): AsyncGenerator<StagedRow> {
    const key = windowKey(pending.window);
    for (let shard = 0; shard < pending.shards; shard += 1) {
      for await (const item of this.query({
        IndexName: 'byWindow',
        KeyConditionExpression: 'wpk = :wpk',
        ExpressionAttributeValues: {
          ':wpk': { S: `w#${pending.platformId}#${pending.segmentId}#${key}#${shard}` },
        },
        ProjectionExpression: 'dmpUserId, partnerUserId, op, ts',
      })) {
        yield {
          dmpUserId: item['dmpUserId']?.S ?? '',
          partnerUserId: item['partnerUserId']?.S ?? '',
          op: item['op']?.S === 'remove' ? 'remove' : 'add',
          ts: item['ts']?.S ?? '',
        };
      }
    }
  }

  async settlePending(pending: PendingWindow): Promise<void> {
    await this.client.send(
      new DeleteItemCommand({
        TableName: this.tableName,
        Key: marshall({
          pk: `pending#${pending.platformId}`,
          sk: `${windowKey(pending.window)}#${pending.segmentId}`,
        }),
      }),
    );
  }

  async getRecord(
    platformId: number,
    segmentId: string,
    window: FileWindow,
  ): Promise<PublicationRecord | undefined> {
    const answer = await this.client.send(
      new GetItemCommand({
        TableName: this.tableName,
        Key: marshall({ pk: `pub#${platformId}`, sk: `${windowKey(window)}#${segmentId}` }),
        ConsistentRead: true,
      }),
    );
    return answer.Item ? toRecord(answer.Item) : undefined;
  }

  async putRecord(record: PublicationRecord): Promise<void> {
    await this.client.send(
      new PutItemCommand({
        TableName: this.tableName,
        Item: marshall(
          {
            ...record,
            pk: `pub#${record.platformId}`,
            sk: `${windowKey(record.window)}#${record.segmentId}`,
            windowKey: windowKey(record.window),
          },
          { removeUndefinedValues: true },
        ),
      }),
    );
  }

  /** Publication records of a platform, newest window first. */
  async listRecords(platformId: number, limit = 100): Promise<PublicationRecord[]> {
    const records: PublicationRecord[] = [];
    for await (const item of this.query({
      KeyConditionExpression: 'pk = :pk',
      ExpressionAttributeValues: marshall({ ':pk': `pub#${platformId}` }),
      ScanIndexForward: false,
    })) {
      records.push(toRecord(item));
      if (records.length >= limit) break;
    }
    return records;
  }

  /** Where a user's staged changes for a segment stand: for `dmp why` and the accounting. */
  async membershipDelivery(
    platformId: number,
    segmentId: string,
    dmpUserId: string,
  ): Promise<MembershipDelivery[]> {
    const deliveries: MembershipDelivery[] = [];
    for await (const item of this.query({
      KeyConditionExpression: 'pk = :pk',
      ExpressionAttributeValues: marshall({ ':pk': `m#${platformId}#${segmentId}#${dmpUserId}` }),
    })) {
      const raw = unmarshall(item);
      const window = String(raw['window']);
      const record = await this.getRecord(platformId, segmentId, parseWindowKey(window));
      const state =
        record?.state === 'published' ? 'published' : record?.state === 'empty' ? 'empty' : 'staged';
      deliveries.push({
        op: raw['op'] === 'remove' ? 'remove' : 'add',
        ts: String(raw['ts']),
        window,
        state,
        files: state === 'published' ? (record?.files ?? []).map((file) => file.name) : [],
        ...(state !== 'staged' && record?.publishedAt ? { publishedAt: record.publishedAt } : {}),
        ...(record ? { destination: record.destination } : {}),
      });
    }
    return deliveries;
  }

  /**
   * The accounting of a file-mode platform per segment (`dmp stats`): changes in settled windows
   * count as delivered or superseded from their publication records (written by key, so a rerun
   * after a crash counts nothing twice); changes in windows not settled yet are `pendingFile`,
   * counted from the staged rows themselves (a COUNT query per shard: such windows are few, the
   * open one and any in their grace period or failing).
   */
  async accounting(platformId: number): Promise<Map<string, FileAccounting>> {
    const bySegment = new Map<string, FileAccounting>();
    const of = (segmentId: string) => {
      let counts = bySegment.get(segmentId);
      if (!counts) {
        counts = { pendingFile: 0, delivered: 0, superseded: 0 };
        bySegment.set(segmentId, counts);
      }
      return counts;
    };
    const settled = new Set<string>();
    for await (const item of this.query({
      KeyConditionExpression: 'pk = :pk',
      ExpressionAttributeValues: marshall({ ':pk': `pub#${platformId}` }),
      ConsistentRead: true,
    })) {
      const record = toRecord(item);
      if (record.state === 'publishing') continue;
      settled.add(`${windowKey(record.window)}#${record.segmentId}`);
      const { delivered, superseded } = settledCounts(record);
      const counts = of(record.segmentId);
      counts.delivered += delivered;
      counts.superseded += superseded;
    }
    for (const pending of await this.pendingWindows(platformId, LATEST_WINDOW_MS)) {
      const key = windowKey(pending.window);
      if (settled.has(`${key}#${pending.segmentId}`)) continue;
      let staged = 0;
      for (let shard = 0; shard < pending.shards; shard += 1) {
        let startKey: Record<string, AttributeValue> | undefined;
        do {
          const page = await this.client.send(
            new QueryCommand({
              TableName: this.tableName,
              IndexName: 'byWindow',
              KeyConditionExpression: 'wpk = :wpk',
              ExpressionAttributeValues: {
                ':wpk': { S: `w#${platformId}#${pending.segmentId}#${key}#${shard}` },
              },
              Select: 'COUNT',
              ExclusiveStartKey: startKey,
            }),
          );
          staged += page.Count ?? 0;
          startKey = page.LastEvaluatedKey;
        } while (startKey);
      }
      of(pending.segmentId).pendingFile += staged;
    }
    return bySegment;
  }

  /**
   * A privacy request: deletes every staged row of the user in these segments, and returns the
   * published adds (the partner holds those, a removal must follow).
   */
  async forgetStaged(
    platformId: number,
    segments: readonly { segmentId: string; audienceId: string }[],
    dmpUserId: string,
  ): Promise<{
    deleted: number;
    published: { segmentId: string; audienceId: string; partnerUserId: string }[];
  }> {
    let deleted = 0;
    const published: { segmentId: string; audienceId: string; partnerUserId: string }[] = [];
    for (const { segmentId, audienceId } of segments) {
      const pk = `m#${platformId}#${segmentId}#${dmpUserId}`;
      let newest: { op: string; ts: string; partnerUserId: string; published: boolean } | undefined;
      for await (const item of this.query({
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: marshall({ ':pk': pk }),
        ConsistentRead: true,
      })) {
        const raw = unmarshall(item);
        const record = await this.getRecord(platformId, segmentId, parseWindowKey(String(raw['window'])));
        if (record?.state === 'published' && (!newest || String(raw['ts']) > newest.ts))
          newest = {
            op: String(raw['op']),
            ts: String(raw['ts']),
            partnerUserId: String(raw['partnerUserId']),
            published: true,
          };
        await this.client.send(
          new DeleteItemCommand({ TableName: this.tableName, Key: marshall({ pk, sk: raw['sk'] }) }),
        );
        deleted += 1;
      }
      if (newest?.op === 'add')
        published.push({ segmentId, audienceId, partnerUserId: newest.partnerUserId });
    }
    return { deleted, published };
  }

  async acquireLease(platformId: number, owner: string, nowMs: number, leaseMs: number): Promise<boolean> {
    try {
      await this.client.send(
        new PutItemCommand({
          TableName: this.tableName,
          Item: marshall({ pk: `lease#${platformId}`, sk: 'lease', owner, until: nowMs + leaseMs }),
          ConditionExpression: 'attribute_not_exists(pk) OR #until < :now OR #owner = :owner',
          ExpressionAttributeNames: { '#until': 'until', '#owner': 'owner' },
          ExpressionAttributeValues: marshall({ ':now': nowMs, ':owner': owner }),
        }),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }

  async releaseLease(platformId: number, owner: string): Promise<void> {
    try {
      await this.client.send(
        new DeleteItemCommand({
          TableName: this.tableName,
          Key: marshall({ pk: `lease#${platformId}`, sk: 'lease' }),
          ConditionExpression: '#owner = :owner',
          ExpressionAttributeNames: { '#owner': 'owner' },
          ExpressionAttributeValues: marshall({ ':owner': owner }),
        }),
      );
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
    }
  }

  private async *query(
    input: Omit<ConstructorParameters<typeof QueryCommand>[0], 'TableName' | 'ExclusiveStartKey'>,
  ): AsyncGenerator<Record<string, AttributeValue>> {
    let startKey: Record<string, AttributeValue> | undefined;
    do {
      const page = await this.client.send(
        new QueryCommand({ ...input, TableName: this.tableName, ExclusiveStartKey: startKey }),
      );
      for (const item of page.Items ?? []) yield item;
      startKey = page.LastEvaluatedKey;
    } while (startKey);
  }
}

function toRecord(item: Record<string, AttributeValue>): PublicationRecord {
  const raw = unmarshall(item) as Record<string, unknown>;
  const { pk: _pk, sk: _sk, windowKey: _windowKey, ...record } = raw;
  return record as unknown as PublicationRecord;
}

async function inParallel<T>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await work(item);
    }
  });
  await Promise.all(workers);
}

import { createHash } from 'node:crypto';
import {
  type AttributeValue,
  ConditionalCheckFailedException,
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  UpdateItemCommand,
  type WriteRequest,
} from '@aws-sdk/client-dynamodb';
import { batchGetAll } from '../aws/batch-get.ts';
import { batchWriteAll } from '../aws/batch-write.ts';
import { EXPIRY_INDEX } from '../infra/resources.ts';
import type { ForgetAudit, ForgetPopulationStore } from '../privacy/forget.ts';
import {
  type AccountingStore,
  type CountBatch,
  type EventTally,
  OUTCOMES,
  type RecordTally,
  type RejectedEntry,
  TALLIES,
} from './accounting.ts';
import { forEachLimited } from './delivery.ts';
import { expiryPartition, expiryShard } from './expiry.ts';
import type { Membership } from './membership.ts';
import type { AppliedState } from './ordering.ts';

/**
 * Population state in one DynamoDB table (layout: POPULATION_TABLE in src/infra/resources.ts).
 *
 * Cost per membership delivered (on demand, docs/population.md): one strongly consistent read of
 * its state (BatchGetItem, 1 RRU), one conditional write of the intent (1 WRU) before the call and
 * one of the acknowledgement (1 WRU) after it. The intent is written only if newer than what is
 * stored, so concurrent Lambdas cannot put an older event over a newer one, and an event stored
 * before the call stands whatever happens to the process after it.
 */

/** Stored events are kept this long after they stop mattering (SQS keeps a message 14 days). */
const KEEP_SECONDS = 15 * 86_400;
const WRITE_CONCURRENCY = 16;

export interface StoredMembership extends AppliedState {
  /** Whether the partner acknowledged it (false: stored as the intent before the call). */
  readonly acked: boolean;
  readonly segmentId: string;
  readonly audienceId: string;
  readonly partnerUserId: string;
  readonly at?: string | undefined;
  readonly ttlSeconds?: number | undefined;
}

export interface MembershipStateStore {
  /** The last applied event per membership (keyed by membershipKey). */
  getApplied(memberships: readonly Membership[]): Promise<Map<string, AppliedState>>;
  /**
   * Stores each event as the membership's intent (not acknowledged) BEFORE the partner call, if it
   * ranks above what is stored or repeats an unacknowledged intent: a stale event compared against
   * it later is skipped even if this process dies after the call. `refused` are outranked.
   */
  recordIntents(
    memberships: readonly Membership[],
    nowMs: number,
    options?: IntentOptions,
  ): Promise<{ claimed: Membership[]; refused: Membership[] }>;
  /**
   * Marks intents acknowledged by the partner; `overtaken` are those whose intent was replaced
   * meanwhile (a newer event, or a repeat of it by another message). An add for which `removeAt`
   * gives a time (epoch seconds) enters the expiry index (src/population/expiry.ts).
   */
  recordAcknowledged(
    memberships: readonly Membership[],
    nowMs: number,
    options?: RecordOptions,
  ): Promise<{ recorded: Membership[]; overtaken: Membership[] }>;
}

export interface IntentOptions {
  /** The delivery message applying it (kept as the state's `by`). */
  readonly appliedBy?: (membership: Membership) => string;
}

export interface RecordOptions extends IntentOptions {
  /** When the removal of an add is due (epoch seconds): it enters the expiry index. */
  readonly removeAt?: (membership: Membership) => number | undefined;
}

/** The expiry index (the table's sparse `byExpiry` index) and the sweep's watermark. */
export interface ExpiryIndex {
  /** Adds in one shard of a platform due in [fromSec, toSec], oldest first, one page at a time. */
  dueAdds(
    platformId: number,
    shard: number,
    fromSec: number,
    toSec: number,
    startKey?: Record<string, AttributeValue>,
  ): Promise<{ due: (Membership & { removeAt: number })[]; nextKey?: Record<string, AttributeValue> }>;
  /** Every due time up to this (epoch seconds) has been swept; undefined before the first sweep. */
  sweptUpTo(platformId: number): Promise<number | undefined>;
  setSweptUpTo(platformId: number, upToSec: number): Promise<void>;
}

/** A pending event of an unsynced user, as stored. */
export type PendingEvent = Omit<Membership, 'partnerUserId'> & {
  /**
   * Older pending events this one replaced whose `superseded` tally may not be written yet (a
   * crash after the replacement): whoever takes the event next writes them, then forgets them.
   */
  readonly replaced: readonly Pick<Membership, 'ts' | 'op'>[];
};

export interface PendingStore {
  /**
   * Keeps events of unsynced users, each unless a newer one is pending. `held`: the pending event
   * is now this one (stored now, or already: a redelivery, a producer's repeat); `outranked`: a
   * newer one is pending.
   */
  putPending(
    memberships: readonly Omit<Membership, 'partnerUserId'>[],
    nowMs: number,
    keepSeconds: number,
  ): Promise<{ held: PendingEvent[]; outranked: Omit<Membership, 'partnerUserId'>[] }>;
  listPending(platformId: number, dmpUserId: string): Promise<PendingEvent[]>;
  /** Forgets the `replaced` events of these (their tallies are written), if each is still pending. */
  forgetReplaced(events: readonly PendingEvent[]): Promise<void>;
  /** Deletes a pending event if it is still the one read; true if deleted. */
  deletePending(membership: Omit<Membership, 'partnerUserId'>): Promise<boolean>;
}

/**
 * Event tallies are spread over this many partitions per platform: a burst of 100,000 pending
 * users writes as many tallies, more than one partition takes (1,000 writes a second).
 */
const EVENT_TALLY_SHARDS = 16;

function eventTallyPk(platformId: number, tallyKey: string): string {
  const shard = createHash('sha256').update(tallyKey).digest().readUInt16BE(0) % EVENT_TALLY_SHARDS;
  return `etally#${platformId}#${shard}`;
}

/** A pending event's reference in `ev` and `sup`: `<ts>#<op>`. */
const eventRef = (m: Pick<Membership, 'ts' | 'op'>) => `${m.ts}#${m.op}`;

function replacedOf(item: Record<string, AttributeValue> | undefined): Pick<Membership, 'ts' | 'op'>[] {
  return (item?.['sup']?.L ?? []).flatMap((value) => {
    const [ts, op] = (value.S ?? '').split('#');
    return ts && (op === 'add' || op === 'remove') ? [{ ts: Number(ts), op }] : [];
  });
}

const memberPk = (platformId: number, dmpUserId: string) => `m#${platformId}#${dmpUserId}`;
const pendingPk = (platformId: number, dmpUserId: string) => `pending#${platformId}#${dmpUserId}`;

function key(pk: string, sk: string): Record<string, AttributeValue> {
  return { pk: { S: pk }, sk: { S: sk } };
}

/** DynamoDB condition: the stored event ranks below the incoming one (see ordering.ts). */
const NEWER_CONDITION = 'attribute_not_exists(pk) OR ts < :ts OR (ts = :ts AND #op = :add AND :op = :remove)';
/** ...or is the same event, not acknowledged yet (it is sent again: ordering.ts). */
const INTENT_CONDITION = `${NEWER_CONDITION} OR (ts = :ts AND #op = :op AND ack = :no)`;

function expiresAt(m: Pick<Membership, 'ts' | 'ttlSeconds'>): number {
  return Math.floor(m.ts / 1000) + (m.ttlSeconds ?? 0) + KEEP_SECONDS;
}

const sweepKey = (platformId: number) => key(`expiry-swept#${platformId}`, '-');

export class DynamoPopulationStore
  implements MembershipStateStore, PendingStore, AccountingStore, ExpiryIndex, ForgetPopulationStore
{
  constructor(
    private readonly client: DynamoDBClient,
    private readonly tableName: string,
  ) {}

  async getApplied(memberships: readonly Membership[]): Promise<Map<string, AppliedState>> {
    const keys = new Map<string, Record<string, AttributeValue>>();
    for (const m of memberships)
      keys.set(
        `${memberPk(m.platformId, m.dmpUserId)}\u0000${m.segmentId}`,
        key(memberPk(m.platformId, m.dmpUserId), m.segmentId),
      );
    const items = await batchGetAll(this.client, this.tableName, [...keys.values()], {
      consistentRead: true,
      projection: 'pk, sk, ts, #op, rid, ack',
      expressionNames: { '#op': 'op' },
    });
    const applied = new Map<string, AppliedState>();
    for (const item of items) {
      const [, platformId, ...user] = (item['pk']?.S ?? '').split('#');
      applied.set(`${platformId}#${item['sk']?.S}#${user.join('#')}`, {
        ts: Number(item['ts']?.N),
        op: item['op']?.S === 'remove' ? 'remove' : 'add',
        by: item['rid']?.S,
        acked: item['ack']?.BOOL !== false,
      });
    }
    return applied;
  }

  async recordIntents(memberships: readonly Membership[], nowMs: number, options: IntentOptions = {}) {
    const { appliedBy } = options;
    const claimed: Membership[] = [];
    const refused: Membership[] = [];
    await forEachLimited(memberships, WRITE_CONCURRENCY, async (m) => {
      const set = [
        'ts = :ts',
        '#op = :op',
        'p = :p',
        'aud = :aud',
        '#at = :at',
        'expiresAt = :exp',
        'ack = :no',
      ];
      // Not in the expiry index until acknowledged: a new intent drops the older add's entry.
      const remove: string[] = [EXPIRY_INDEX.partition, EXPIRY_INDEX.sort];
      const by = appliedBy?.(m);
      if (by === undefined) remove.push('rid');
      else set.push('rid = :rid');
      if (m.ttlSeconds === undefined) remove.push('life');
      else set.push('life = :ttl');
      try {
        await this.client.send(
          new UpdateItemCommand({
            TableName: this.tableName,
            Key: key(memberPk(m.platformId, m.dmpUserId), m.segmentId),
            UpdateExpression: `SET ${set.join(', ')} REMOVE ${remove.join(', ')}`,
            ConditionExpression: INTENT_CONDITION,
            ExpressionAttributeNames: { '#at': 'at', '#op': 'op' },
            ExpressionAttributeValues: {
              ':ts': { N: String(m.ts) },
              ':op': { S: m.op },
              ':add': { S: 'add' },
              ':remove': { S: 'remove' },
              ':no': { BOOL: false },
              ':p': { S: m.partnerUserId },
              ':aud': { S: m.audienceId },
              ':at': { S: new Date(nowMs).toISOString() },
              ':exp': { N: String(expiresAt(m)) },
              ...(m.ttlSeconds === undefined ? {} : { ':ttl': { N: String(m.ttlSeconds) } }),
              ...(by === undefined ? {} : { ':rid': { S: by } }),
            },
          }),
        );
        claimed.push(m);
      } catch (error) {
        if (!(error instanceof ConditionalCheckFailedException)) throw error;
        refused.push(m);
      }
    });
    return { claimed, refused };
  }

  async recordAcknowledged(memberships: readonly Membership[], nowMs: number, options: RecordOptions = {}) {
    const { removeAt, appliedBy } = options;
    const recorded: Membership[] = [];
    const overtaken: Membership[] = [];
    await forEachLimited(memberships, WRITE_CONCURRENCY, async (m) => {
      // Due already (a late event): due now, so the next sweep takes it (its window overlaps).
      const due = m.op === 'add' ? removeAt?.(m) : undefined;
      const dueAt = due === undefined ? undefined : Math.max(due, Math.floor(nowMs / 1000));
      const set = ['ack = :yes', '#at = :at'];
      if (dueAt !== undefined) set.push(`${EXPIRY_INDEX.partition} = :xq`, `${EXPIRY_INDEX.sort} = :xt`);
      const by = appliedBy?.(m);
      try {
        await this.client.send(
          new UpdateItemCommand({
            TableName: this.tableName,
            Key: key(memberPk(m.platformId, m.dmpUserId), m.segmentId),
            UpdateExpression: `SET ${set.join(', ')}`,
            // Still this message's intent: not replaced by a newer event, nor by a repeat of it.
            ConditionExpression: `ts = :ts AND #op = :op AND ${by === undefined ? 'attribute_not_exists(rid)' : 'rid = :rid'}`,
            ExpressionAttributeNames: { '#at': 'at', '#op': 'op' },
            ExpressionAttributeValues: {
              ':ts': { N: String(m.ts) },
              ':op': { S: m.op },
              ':yes': { BOOL: true },
              ':at': { S: new Date(nowMs).toISOString() },
              ...(by === undefined ? {} : { ':rid': { S: by } }),
              ...(dueAt === undefined
                ? {}
                : {
                    ':xq': { S: expiryPartition(m.platformId, expiryShard(m.dmpUserId)) },
                    ':xt': { N: String(dueAt) },
                  }),
            },
          }),
        );
        recorded.push(m);
      } catch (error) {
        if (!(error instanceof ConditionalCheckFailedException)) throw error;
        overtaken.push(m);
      }
    });
    return { recorded, overtaken };
  }

  async dueAdds(
    platformId: number,
    shard: number,
    fromSec: number,
    toSec: number,
    startKey?: Record<string, AttributeValue>,
  ) {
    const page = await this.client.send(
      new QueryCommand({
        TableName: this.tableName,
        IndexName: EXPIRY_INDEX.name,
        KeyConditionExpression: '#xq = :xq AND #xt BETWEEN :from AND :to',
        ExpressionAttributeNames: { '#xq': EXPIRY_INDEX.partition, '#xt': EXPIRY_INDEX.sort },
        ExpressionAttributeValues: {
          ':xq': { S: expiryPartition(platformId, shard) },
          ':from': { N: String(fromSec) },
          ':to': { N: String(toSec) },
        },
        ...(startKey ? { ExclusiveStartKey: startKey } : {}),
      }),
    );
    const due = (page.Items ?? [])
      .filter((item) => item['op']?.S === 'add')
      .map((item) => ({
        platformId,
        dmpUserId: (item['pk']?.S ?? '').slice(memberPk(platformId, '').length),
        segmentId: item['sk']?.S ?? '',
        audienceId: item['aud']?.S ?? '',
        partnerUserId: item['p']?.S ?? '',
        op: 'add' as const,
        ts: Number(item['ts']?.N),
        removeAt: Number(item[EXPIRY_INDEX.sort]?.N),
      }));
    return { due, ...(page.LastEvaluatedKey ? { nextKey: page.LastEvaluatedKey } : {}) };
  }

  async sweptUpTo(platformId: number): Promise<number | undefined> {
    const out = await this.client.send(
      new GetItemCommand({ TableName: this.tableName, Key: sweepKey(platformId), ConsistentRead: true }),
    );
    const value = out.Item?.['upTo']?.N;
    return value === undefined ? undefined : Number(value);
  }

  async setSweptUpTo(platformId: number, upToSec: number): Promise<void> {
    await this.client.send(
      new PutItemCommand({
        TableName: this.tableName,
        Item: { ...sweepKey(platformId), upTo: { N: String(upToSec) } },
      }),
    );
  }

  /** Every segment's stored event for a user at a platform (`dmp why`). */
  async membershipsOf(platformId: number, dmpUserId: string): Promise<StoredMembership[]> {
    const items = await this.queryAll(memberPk(platformId, dmpUserId));
    return items.map((item) => ({
      segmentId: item['sk']?.S ?? '',
      ts: Number(item['ts']?.N),
      op: item['op']?.S === 'remove' ? 'remove' : 'add',
      audienceId: item['aud']?.S ?? '',
      partnerUserId: item['p']?.S ?? '',
      at: item['at']?.S,
      acked: item['ack']?.BOOL !== false,
      ttlSeconds: item['life']?.N === undefined ? undefined : Number(item['life'].N),
    }));
  }

  async putPending(
    memberships: readonly Omit<Membership, 'partnerUserId'>[],
    nowMs: number,
    keepSeconds: number,
  ) {
    const held: PendingEvent[] = [];
    const outranked: Omit<Membership, 'partnerUserId'>[] = [];
    await forEachLimited(memberships, WRITE_CONCURRENCY, async (m) => {
      const pk = key(pendingPk(m.platformId, m.dmpUserId), m.segmentId);
      try {
        const result = await this.client.send(
          new UpdateItemCommand({
            TableName: this.tableName,
            Key: pk,
            // The event it replaces (`ev` of the item) joins the list of replaced events in the
            // same write: a crash before their tallies loses none of them.
            UpdateExpression: `SET sup = list_append(if_not_exists(sup, :none), if_not_exists(ev, :none)), ev = :ev, ts = :ts, #op = :op, aud = :aud, since = :since, expiresAt = :exp${m.ttlSeconds === undefined ? ' REMOVE life' : ', life = :life'}`,
            ConditionExpression: NEWER_CONDITION,
            ExpressionAttributeNames: { '#op': 'op' },
            ExpressionAttributeValues: {
              ':none': { L: [] },
              ':ev': { L: [{ S: eventRef(m) }] },
              ':ts': { N: String(m.ts) },
              ':op': { S: m.op },
              ':add': { S: 'add' },
              ':remove': { S: 'remove' },
              ':aud': { S: m.audienceId },
              ':since': { S: new Date(nowMs).toISOString() },
              ':exp': { N: String(Math.floor(nowMs / 1000) + keepSeconds) },
              ...(m.ttlSeconds === undefined ? {} : { ':life': { N: String(m.ttlSeconds) } }),
            },
            ReturnValues: 'ALL_NEW',
          }),
        );
        held.push({ ...m, replaced: replacedOf(result.Attributes) });
      } catch (error) {
        if (!(error instanceof ConditionalCheckFailedException)) throw error;
        const stored = await this.client.send(
          new GetItemCommand({ TableName: this.tableName, Key: pk, ConsistentRead: true }),
        );
        const item = stored.Item;
        if (item && Number(item['ts']?.N) === m.ts && item['op']?.S === m.op)
          held.push({ ...m, replaced: replacedOf(item) });
        else outranked.push(m);
      }
    });
    return { held, outranked };
  }

  async listPending(platformId: number, dmpUserId: string): Promise<PendingEvent[]> {
    const items = await this.queryAll(pendingPk(platformId, dmpUserId), true);
    return items.map((item) => ({
      platformId,
      dmpUserId,
      segmentId: item['sk']?.S ?? '',
      audienceId: item['aud']?.S ?? '',
      op: (item['op']?.S === 'remove' ? 'remove' : 'add') as Membership['op'],
      ts: Number(item['ts']?.N),
      ...(item['life']?.N === undefined ? {} : { ttlSeconds: Number(item['life'].N) }),
      replaced: replacedOf(item),
    }));
  }

  async forgetReplaced(events: readonly PendingEvent[]): Promise<void> {
    await forEachLimited(
      events.filter((m) => m.replaced.length > 0),
      WRITE_CONCURRENCY,
      async (m) => {
        try {
          await this.client.send(
            new UpdateItemCommand({
              TableName: this.tableName,
              Key: key(pendingPk(m.platformId, m.dmpUserId), m.segmentId),
              UpdateExpression: 'REMOVE sup',
              // Replaced meanwhile: the newer event carried the list over, and its step writes them.
              ConditionExpression: 'ts = :ts AND #op = :op AND size(sup) = :n',
              ExpressionAttributeNames: { '#op': 'op' },
              ExpressionAttributeValues: {
                ':ts': { N: String(m.ts) },
                ':op': { S: m.op },
                ':n': { N: String(m.replaced.length) },
              },
            }),
          );
        } catch (error) {
          if (!(error instanceof ConditionalCheckFailedException)) throw error;
        }
      },
    );
  }

  async deletePending(m: Omit<Membership, 'partnerUserId'>): Promise<boolean> {
    try {
      await this.client.send(
        new DeleteItemCommand({
          TableName: this.tableName,
          Key: key(pendingPk(m.platformId, m.dmpUserId), m.segmentId),
          ConditionExpression: 'ts = :ts AND #op = :op',
          ExpressionAttributeNames: { '#op': 'op' },
          ExpressionAttributeValues: { ':ts': { N: String(m.ts) }, ':op': { S: m.op } },
        }),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }

  async addCounts(batch: CountBatch): Promise<void> {
    await forEachLimited(batch.entries(), WRITE_CONCURRENCY, async ({ platformId, segmentId, counts }) => {
      const names: Record<string, string> = {};
      const values: Record<string, AttributeValue> = {};
      const parts: string[] = [];
      for (const [outcome, by] of Object.entries(counts)) {
        if (!by) continue;
        names[`#${outcome}`] = outcome;
        values[`:${outcome}`] = { N: String(by) };
        parts.push(`#${outcome} :${outcome}`);
      }
      if (parts.length === 0) return;
      await this.client.send(
        new UpdateItemCommand({
          TableName: this.tableName,
          Key: key(`stats#${platformId}`, segmentId),
          UpdateExpression: `ADD ${parts.join(', ')}`,
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
        }),
      );
    });
  }

  async putTallies(tallies: readonly RecordTally[]): Promise<void> {
    await forEachLimited(tallies, WRITE_CONCURRENCY, async (tally) => {
      const counts: Record<string, AttributeValue> = {};
      for (const [name, by] of Object.entries(tally.counts)) if (by) counts[name] = { N: String(by) };
      await this.client.send(
        new PutItemCommand({
          TableName: this.tableName,
          Item: {
            ...key(`tally#${tally.platformId}`, `${tally.recordId}#${tally.segmentId}`),
            seg: { S: tally.segmentId },
            ...counts,
          },
        }),
      );
    });
  }

  async putEventTallies(tallies: readonly EventTally[]): Promise<void> {
    // One write per key (the last one given), 25 a call.
    const byKey = new Map<string, WriteRequest>();
    for (const tally of tallies) {
      const counts: Record<string, AttributeValue> = {};
      for (const [name, by] of Object.entries(tally.counts)) if (by) counts[name] = { N: String(by) };
      const itemKey = key(eventTallyPk(tally.platformId, tally.key), tally.key);
      byKey.set(
        `${tally.platformId}\u0000${tally.key}`,
        Object.keys(counts).length === 0
          ? { DeleteRequest: { Key: itemKey } }
          : { PutRequest: { Item: { ...itemKey, seg: { S: tally.segmentId }, ...counts } } },
      );
    }
    await batchWriteAll(this.client, this.tableName, [...byKey.values()]);
  }

  /**
   * Counts per segment: the added counts (`stats#`), every delivery message's tally (`tally#`) and
   * every event tally of the route and release steps (`etally#`, in EVENT_TALLY_SHARDS partitions).
   */
  async stats(platformId: number): Promise<{ segmentId: string; counts: Record<string, number> }[]> {
    const names = [...OUTCOMES, ...TALLIES];
    const bySegment = new Map<string, Record<string, number>>();
    const add = (segmentId: string, item: Record<string, AttributeValue>) => {
      const counts = bySegment.get(segmentId) ?? Object.fromEntries(names.map((name) => [name, 0]));
      for (const name of names) counts[name] = (counts[name] ?? 0) + Number(item[name]?.N ?? 0);
      bySegment.set(segmentId, counts);
    };
    for (const item of await this.queryAll(`stats#${platformId}`, true)) add(item['sk']?.S ?? '', item);
    for (const item of await this.queryAll(`tally#${platformId}`, true)) add(item['seg']?.S ?? '', item);
    for (let shard = 0; shard < EVENT_TALLY_SHARDS; shard++)
      for (const item of await this.queryAll(`etally#${platformId}#${shard}`, true))
        add(item['seg']?.S ?? '', item);
    return [...bySegment].map(([segmentId, counts]) => ({ segmentId, counts }));
  }

  async recordRejections(entries: readonly RejectedEntry[]): Promise<Set<string>> {
    const recorded = new Set<string>();
    const now = new Date();
    await forEachLimited(entries, WRITE_CONCURRENCY, async (entry) => {
      try {
        await this.client.send(
          new PutItemCommand({
            TableName: this.tableName,
            Item: {
              // The id, not the time, keys the item: a redelivered rejection is recorded once.
              ...key(`rejected#${now.toISOString().slice(0, 10)}`, entry.id),
              at: { S: now.toISOString() },
              reason: { S: entry.reason },
              detail: { S: entry.detail.slice(0, 500) },
              memberships: { N: String(entry.memberships) },
              expiresAt: { N: String(Math.floor(now.getTime() / 1000) + KEEP_SECONDS) },
              ...(entry.platformId === undefined ? {} : { platformId: { N: String(entry.platformId) } }),
              ...(entry.segmentId === undefined ? {} : { segmentId: { S: entry.segmentId } }),
              ...(entry.audienceId === undefined ? {} : { audienceId: { S: entry.audienceId } }),
              ...(entry.dmpUserId === undefined ? {} : { dmpUserId: { S: entry.dmpUserId } }),
              ...(entry.snippet === undefined ? {} : { snippet: { S: entry.snippet.slice(0, 300) } }),
            },
            ConditionExpression: 'attribute_not_exists(pk)',
          }),
        );
        recorded.add(entry.id);
      } catch (error) {
        if (!(error instanceof ConditionalCheckFailedException)) throw error;
      }
    });
    return recorded;
  }

  /** Rejections of the last `days` days, newest day first. */
  async rejections(days = 14, nowMs = Date.now()): Promise<Record<string, unknown>[]> {
    const out: Record<string, unknown>[] = [];
    for (let day = 0; day < days; day++) {
      const date = new Date(nowMs - day * 86_400_000).toISOString().slice(0, 10);
      for (const item of await this.queryAll(`rejected#${date}`, true)) {
        out.push({
          id: item['sk']?.S,
          at: item['at']?.S,
          reason: item['reason']?.S,
          detail: item['detail']?.S,
          memberships: Number(item['memberships']?.N ?? 0),
          platformId: item['platformId']?.N === undefined ? undefined : Number(item['platformId'].N),
          segmentId: item['segmentId']?.S,
          audienceId: item['audienceId']?.S,
          dmpUserId: item['dmpUserId']?.S,
          snippet: item['snippet']?.S,
        });
      }
    }
    return out;
  }

  /** A forgotten user's tombstone (`forgotten#<digest>`), kept until `expiresAtSeconds` (TTL). */
  async putTombstone(digest: string, expiresAtSeconds: number): Promise<void> {
    await this.client.send(
      new PutItemCommand({
        TableName: this.tableName,
        Item: { ...key(`forgotten#${digest}`, '-'), expiresAt: { N: String(expiresAtSeconds) } },
      }),
    );
  }

  async tombstoned(digests: readonly string[]): Promise<Set<string>> {
    const items = await batchGetAll(
      this.client,
      this.tableName,
      [...new Set(digests)].map((digest) => key(`forgotten#${digest}`, '-')),
      { projection: 'pk, expiresAt' },
    );
    const now = Date.now() / 1000;
    return new Set(
      items
        .filter((item) => Number(item['expiresAt']?.N ?? 0) > now)
        .map((item) => (item['pk']?.S ?? '').slice('forgotten#'.length)),
    );
  }

  async deleteMembershipsOf(platformId: number, dmpUserId: string): Promise<number> {
    return this.deleteAll(memberPk(platformId, dmpUserId));
  }

  async deletePendingOf(platformId: number, dmpUserId: string): Promise<number> {
    return this.deleteAll(pendingPk(platformId, dmpUserId));
  }

  /** Deletes the rejection records that name the user (14 days of them). */
  async deleteRejectionsOf(dmpUserId: string, days = 15, nowMs = Date.now()): Promise<number> {
    let deleted = 0;
    for (let day = 0; day < days; day++) {
      const pk = `rejected#${new Date(nowMs - day * 86_400_000).toISOString().slice(0, 10)}`;
      const items = (await this.queryAll(pk, true)).filter((item) => item['dmpUserId']?.S === dmpUserId);
      await forEachLimited(items, WRITE_CONCURRENCY, async (item) => {
        await this.client.send(
          new DeleteItemCommand({ TableName: this.tableName, Key: key(pk, item['sk']?.S ?? '') }),
        );
      });
      deleted += items.length;
    }
    return deleted;
  }

  /** The audit record of a privacy request (`audit#<month>`), kept without expiry; no id in it. */
  async putAudit(record: ForgetAudit): Promise<void> {
    await this.client.send(
      new PutItemCommand({
        TableName: this.tableName,
        Item: {
          ...key(`audit#${record.at.slice(0, 7)}`, `${record.at}#${record.digest.slice(0, 16)}`),
          digest: { S: record.digest },
          source: { S: record.source },
          at: { S: record.at },
          platforms: { S: record.platforms.join(',') },
          removalsSent: { N: String(record.removalsSent) },
          mappingsDeleted: { N: String(record.mappingsDeleted) },
          pendingDeleted: { N: String(record.pendingDeleted) },
          statesDeleted: { N: String(record.statesDeleted) },
          stagedDeleted: { N: String(record.stagedDeleted) },
          rejectionsDeleted: { N: String(record.rejectionsDeleted) },
        },
      }),
    );
  }

  /** Audit records of a month (`YYYY-MM`). */
  async audits(month: string): Promise<Record<string, string>[]> {
    return (await this.queryAll(`audit#${month}`, true)).map((item) =>
      Object.fromEntries(Object.entries(item).map(([name, value]) => [name, value.S ?? value.N ?? ''])),
    );
  }

  private async deleteAll(pk: string): Promise<number> {
    const items = await this.queryAll(pk, true);
    await forEachLimited(items, WRITE_CONCURRENCY, async (item) => {
      await this.client.send(
        new DeleteItemCommand({ TableName: this.tableName, Key: key(pk, item['sk']?.S ?? '') }),
      );
    });
    return items.length;
  }

  private async queryAll(pk: string, consistent = false): Promise<Record<string, AttributeValue>[]> {
    const items: Record<string, AttributeValue>[] = [];
    let startKey: Record<string, AttributeValue> | undefined;
    do {
      const page = await this.client.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: 'pk = :pk',
          ExpressionAttributeValues: { ':pk': { S: pk } },
          ConsistentRead: consistent,
          ...(startKey ? { ExclusiveStartKey: startKey } : {}),
        }),
      );
      items.push(...(page.Items ?? []));
      startKey = page.LastEvaluatedKey;
    } while (startKey);
    return items;
  }
}

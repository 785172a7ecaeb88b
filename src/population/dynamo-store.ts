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
import { forEachLimited } from '../aws/limit.ts';
import { EXPIRY_INDEX } from '../infra/resources.ts';
import type { UserDigests } from '../privacy/digest.ts';
import type { ForgetAudit, ForgetPopulationStore } from '../privacy/forget.ts';
import {
  type AccountingStore,
  type Counts,
  classifyEventTally,
  type EventTally,
  OUTCOMES,
  type RecordTally,
  type RejectedEntry,
  TALLIES,
} from './accounting.ts';
import { expiryPartition, expiryShard } from './expiry.ts';
import type { Membership } from './membership.ts';
import type { AppliedState } from './ordering.ts';
import { type MessageProgress, type PlacedMembership, STATUS } from './progress.ts';

/**
 * Population state in one DynamoDB table (layout: POPULATION_TABLE in src/infra/resources.ts).
 *
 * Cost per membership delivered (on demand, docs/population.md section 6): one conditional write
 * of its intent before the partner call (1 WRU), nothing else per membership. The intent is
 * written only if it ranks above what is stored (or repeats its own message's unsettled intent),
 * so concurrent Lambdas cannot put an older event over a newer one, and an event stored before the
 * call stands whatever happens to the process after it. What the partner acknowledged is written
 * once per delivery message (its progress, src/population/progress.ts), not per membership.
 */

/** Stored events are kept this long after they stop mattering (SQS keeps a message 14 days). */
const KEEP_SECONDS = 15 * 86_400;
/** A lapsed pending event is kept this long after its lapse, for `dmp why` (then TTL deletes it). */
const LAPSED_KEEP_SECONDS = 14 * 86_400;
const WRITE_CONCURRENCY = 16;

export interface StoredMembership extends AppliedState {
  /** Whether the partner acknowledged it (false: stored as the intent before the call). */
  readonly acked: boolean;
  readonly segmentId: string;
  readonly audienceId: string;
  readonly partnerUserId: string;
  /** When the partner acknowledged it, else when its intent was stored. */
  readonly at?: string | undefined;
  readonly ttlSeconds?: number | undefined;
}

export interface IntentOptions {
  /** When the calls of this invocation end at the latest (epoch ms), kept as the intent's `dl`. */
  readonly callsEndBy: number;
  /** When the removal of an add is due (epoch seconds): it enters the expiry index. */
  readonly removeAt?: (membership: Membership) => number | undefined;
  /** No write starts after this time (epoch ms): the memberships not written are `unstarted`. */
  readonly stopAt?: number;
  readonly now?: () => number;
}

export interface IntentResult {
  /** Written; `previous` is the stored event it replaced (its message, position and `dl`). */
  readonly claimed: { item: PlacedMembership; previous?: AppliedState | undefined }[];
  /** Outranked by the stored event, or the same event stored by another message. */
  readonly refused: PlacedMembership[];
  readonly unstarted: PlacedMembership[];
  /** The write failed (a timeout, throttling after the SDK's retries): stored or not, unknown. */
  readonly failed: PlacedMembership[];
}

export interface MembershipStateStore {
  /** The progress of delivery messages (strongly consistent), by message id. */
  progressOf(recordIds: readonly string[]): Promise<Map<string, MessageProgress>>;
  /** Writes (or rewrites) the progress of delivery messages. */
  recordProgress(entries: readonly { recordId: string; statuses: string }[], nowMs: number): Promise<void>;
  /** The stored event per membership (keyed by membershipKey), strongly consistent. */
  getApplied(memberships: readonly Membership[]): Promise<Map<string, AppliedState>>;
  /**
   * Stores each event as the membership's intent BEFORE the partner call, if it ranks above what
   * is stored or repeats its own message's intent: a stale event compared against it later is
   * refused even if this process dies after the call.
   */
  recordIntents(
    memberships: readonly PlacedMembership[],
    nowMs: number,
    options: IntentOptions,
  ): Promise<IntentResult>;
  /** Stores the intent in place of the same event stored by another message, if still stored. */
  takeOver(
    membership: PlacedMembership,
    from: AppliedState,
    nowMs: number,
    options: IntentOptions,
  ): Promise<boolean>;
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
  /**
   * When the event lapses (epoch seconds): from then on it is never released (the user had no
   * partner id in time) and `dmp stats` counts it `lapsed`. The item itself stays LAPSED_KEEP_SECONDS
   * more (TTL), so that `dmp why` can say what became of it.
   */
  readonly lapseAt: number;
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
/** ...or is the same event stored by the same message (a receive that did not settle it). */
const INTENT_CONDITION = `${NEWER_CONDITION} OR (ts = :ts AND #op = :op AND rid = :rid)`;
/** The same event, still stored by the other message (taken over: progress.ts). */
const TAKE_OVER_CONDITION = 'ts = :ts AND #op = :op AND rid = :from';

function appliedOf(item: Record<string, AttributeValue>): AppliedState {
  return {
    ts: Number(item['ts']?.N),
    op: item['op']?.S === 'remove' ? 'remove' : 'add',
    by: item['rid']?.S,
    ix: item['ix']?.N === undefined ? undefined : Number(item['ix'].N),
    dl: item['dl']?.N === undefined ? undefined : Number(item['dl'].N),
    acked: item['ack']?.BOOL,
  };
}

/** A pending item's lapse time; items written before it was kept lapse when TTL deletes them. */
const lapseOf = (item: Record<string, AttributeValue>) =>
  Number(item['lapse']?.N ?? item['expiresAt']?.N ?? 0);

function countAttributes(counts: Counts): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const [name, by] of Object.entries(counts)) if (by) out[name] = { N: String(by) };
  return out;
}

function expiresAt(m: Pick<Membership, 'ts' | 'ttlSeconds'>): number {
  return Math.floor(m.ts / 1000) + (m.ttlSeconds ?? 0) + KEEP_SECONDS;
}

const sweepKey = (platformId: number) => key(`expiry-swept#${platformId}`, '-');
const progressKey = (recordId: string) => key(`prog#${recordId}`, '-');

export class DynamoPopulationStore
  implements MembershipStateStore, PendingStore, AccountingStore, ExpiryIndex, ForgetPopulationStore
{
  constructor(
    private readonly client: DynamoDBClient,
    private readonly tableName: string,
    /**
     * The keyed user digest (src/privacy/digest.ts): rejection records hold it, never the id.
     * Needed to record or delete a user's rejections; reading them does without.
     */
    private readonly digests?: UserDigests,
  ) {}

  private async digester(): Promise<(dmpUserId: string) => string> {
    if (!this.digests) throw new Error('the population store has no privacy key: it cannot digest a user id');
    return this.digests.digester();
  }

  async getApplied(memberships: readonly Membership[]): Promise<Map<string, AppliedState>> {
    const keys = new Map<string, Record<string, AttributeValue>>();
    for (const m of memberships)
      keys.set(
        `${memberPk(m.platformId, m.dmpUserId)}\u0000${m.segmentId}`,
        key(memberPk(m.platformId, m.dmpUserId), m.segmentId),
      );
    const items = await batchGetAll(this.client, this.tableName, [...keys.values()], {
      consistentRead: true,
      projection: 'pk, sk, ts, #op, rid, ix, dl, ack',
      expressionNames: { '#op': 'op' },
    });
    const applied = new Map<string, AppliedState>();
    for (const item of items) {
      const [, platformId, ...user] = (item['pk']?.S ?? '').split('#');
      applied.set(`${platformId}#${item['sk']?.S}#${user.join('#')}`, appliedOf(item));
    }
    return applied;
  }

  async progressOf(recordIds: readonly string[]): Promise<Map<string, MessageProgress>> {
    const items = await batchGetAll(this.client, this.tableName, [...new Set(recordIds)].map(progressKey), {
      consistentRead: true,
      projection: 'pk, s, t',
    });
    return new Map(
      items.map((item) => [
        (item['pk']?.S ?? '').slice('prog#'.length),
        { statuses: item['s']?.S ?? '', writtenAt: Number(item['t']?.N ?? 0) },
      ]),
    );
  }

  async recordProgress(entries: readonly { recordId: string; statuses: string }[], nowMs: number) {
    await forEachLimited(entries, WRITE_CONCURRENCY, async ({ recordId, statuses }) => {
      await this.client.send(
        new PutItemCommand({
          TableName: this.tableName,
          Item: {
            ...progressKey(recordId),
            s: { S: statuses },
            t: { N: String(nowMs) },
            expiresAt: { N: String(Math.floor(nowMs / 1000) + KEEP_SECONDS) },
          },
        }),
      );
    });
  }

  async recordIntents(
    memberships: readonly PlacedMembership[],
    nowMs: number,
    options: IntentOptions,
  ): Promise<IntentResult> {
    const now = options.now ?? Date.now;
    const claimed: IntentResult['claimed'] = [];
    const refused: PlacedMembership[] = [];
    const unstarted: PlacedMembership[] = [];
    const failed: PlacedMembership[] = [];
    await forEachLimited(memberships, WRITE_CONCURRENCY, async (m) => {
      if (options.stopAt !== undefined && now() >= options.stopAt) {
        unstarted.push(m);
        return;
      }
      try {
        const previous = await this.writeIntent(m, nowMs, options, INTENT_CONDITION, {});
        claimed.push({ item: m, previous });
      } catch (error) {
        if (error instanceof ConditionalCheckFailedException) refused.push(m);
        // One failed write does not sink the others: its membership is retried with its record.
        else failed.push(m);
      }
    });
    return { claimed, refused, unstarted, failed };
  }

  async takeOver(m: PlacedMembership, from: AppliedState, nowMs: number, options: IntentOptions) {
    if (from.by === undefined) return false;
    try {
      await this.writeIntent(m, nowMs, options, TAKE_OVER_CONDITION, { ':from': { S: from.by } });
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }

  /**
   * The intent write, returning the event it replaced. An add whose removal is due enters the
   * expiry index with it (src/population/expiry.ts); a removal leaves the index.
   */
  private async writeIntent(
    m: PlacedMembership,
    nowMs: number,
    options: IntentOptions,
    condition: string,
    values: Record<string, AttributeValue>,
  ): Promise<AppliedState | undefined> {
    const set = ['ts = :ts', '#op = :op', 'p = :p', 'aud = :aud', '#at = :at', 'expiresAt = :exp'];
    set.push('rid = :rid', 'ix = :ix', 'dl = :dl');
    // `ack` was the flag of states written before the progress records.
    const remove = ['ack'];
    if (m.ttlSeconds === undefined) remove.push('life');
    else set.push('life = :ttl');
    // Due already (a late event): due now, so the next sweep takes it (its window overlaps).
    const due = m.op === 'add' ? options.removeAt?.(m) : undefined;
    const dueAt = due === undefined ? undefined : Math.max(due, Math.floor(nowMs / 1000));
    if (dueAt === undefined) remove.push(EXPIRY_INDEX.partition, EXPIRY_INDEX.sort);
    else set.push(`${EXPIRY_INDEX.partition} = :xq`, `${EXPIRY_INDEX.sort} = :xt`);
    const out = await this.client.send(
      new UpdateItemCommand({
        TableName: this.tableName,
        Key: key(memberPk(m.platformId, m.dmpUserId), m.segmentId),
        UpdateExpression: `SET ${set.join(', ')} REMOVE ${remove.join(', ')}`,
        ConditionExpression: condition,
        ExpressionAttributeNames: { '#at': 'at', '#op': 'op' },
        ExpressionAttributeValues: {
          ':ts': { N: String(m.ts) },
          ':op': { S: m.op },
          // DynamoDB refuses values the expressions do not use.
          ...(condition.includes(':add') ? { ':add': { S: 'add' }, ':remove': { S: 'remove' } } : {}),
          ':p': { S: m.partnerUserId },
          ':aud': { S: m.audienceId },
          ':at': { S: new Date(nowMs).toISOString() },
          ':exp': { N: String(expiresAt(m)) },
          ':rid': { S: m.recordId },
          ':ix': { N: String(m.index) },
          ':dl': { N: String(options.callsEndBy) },
          ...(m.ttlSeconds === undefined ? {} : { ':ttl': { N: String(m.ttlSeconds) } }),
          ...(dueAt === undefined
            ? {}
            : {
                ':xq': { S: expiryPartition(m.platformId, expiryShard(m.dmpUserId)) },
                ':xt': { N: String(dueAt) },
              }),
          ...values,
        },
        // The replaced event comes back with the write, at no extra cost.
        ReturnValues: 'UPDATED_OLD',
      }),
    );
    return out.Attributes?.['ts'] === undefined ? undefined : appliedOf(out.Attributes);
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
    const items = await this.queryAll(memberPk(platformId, dmpUserId), true);
    const progress = await this.progressOf(items.flatMap((item) => (item['rid']?.S ? [item['rid'].S] : [])));
    return items.map((item) => {
      const applied = appliedOf(item);
      const settled =
        applied.by === undefined || applied.ix === undefined
          ? undefined
          : progress.get(applied.by)?.statuses[applied.ix];
      // States written before the progress records carry their own flag (undefined: acknowledged).
      const acked = applied.acked ?? (applied.ix === undefined || settled === STATUS.delivered);
      const ackedAt = acked && applied.by !== undefined ? progress.get(applied.by)?.writtenAt : undefined;
      return {
        ...applied,
        segmentId: item['sk']?.S ?? '',
        audienceId: item['aud']?.S ?? '',
        partnerUserId: item['p']?.S ?? '',
        at: ackedAt === undefined ? item['at']?.S : new Date(ackedAt).toISOString(),
        acked,
        ttlSeconds: item['life']?.N === undefined ? undefined : Number(item['life'].N),
      };
    });
  }

  async putPending(
    memberships: readonly Omit<Membership, 'partnerUserId'>[],
    nowMs: number,
    keepSeconds: number,
  ) {
    const held: PendingEvent[] = [];
    const outranked: Omit<Membership, 'partnerUserId'>[] = [];
    const lapseAt = Math.floor(nowMs / 1000) + keepSeconds;
    await forEachLimited(memberships, WRITE_CONCURRENCY, async (m) => {
      const pk = key(pendingPk(m.platformId, m.dmpUserId), m.segmentId);
      try {
        const result = await this.client.send(
          new UpdateItemCommand({
            TableName: this.tableName,
            Key: pk,
            // The event it replaces (`ev` of the item) joins the list of replaced events in the
            // same write: a crash before their tallies loses none of them.
            UpdateExpression: `SET sup = list_append(if_not_exists(sup, :none), if_not_exists(ev, :none)), ev = :ev, ts = :ts, #op = :op, aud = :aud, since = :since, lapse = :lapse, expiresAt = :exp${m.ttlSeconds === undefined ? ' REMOVE life' : ', life = :life'}`,
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
              ':lapse': { N: String(lapseAt) },
              ':exp': { N: String(lapseAt + LAPSED_KEEP_SECONDS) },
              ...(m.ttlSeconds === undefined ? {} : { ':life': { N: String(m.ttlSeconds) } }),
            },
            ReturnValues: 'ALL_NEW',
          }),
        );
        held.push({ ...m, replaced: replacedOf(result.Attributes), lapseAt });
      } catch (error) {
        if (!(error instanceof ConditionalCheckFailedException)) throw error;
        const stored = await this.client.send(
          new GetItemCommand({ TableName: this.tableName, Key: pk, ConsistentRead: true }),
        );
        const item = stored.Item;
        // The same event, stored before (a redelivery): it keeps its own lapse time.
        if (item && Number(item['ts']?.N) === m.ts && item['op']?.S === m.op)
          held.push({ ...m, replaced: replacedOf(item), lapseAt: lapseOf(item) });
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
      lapseAt: lapseOf(item),
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

  async putTallies(tallies: readonly RecordTally[]): Promise<void> {
    await forEachLimited(tallies, WRITE_CONCURRENCY, async (tally) => {
      const counts = countAttributes(tally.counts);
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
      const counts = countAttributes(tally.counts);
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

  async putPendingTallies(tallies: readonly EventTally[], nowMs: number): Promise<void> {
    await this.putEventTalliesIf(
      tallies,
      // Handed to delivery (the deliver step counts it), or lapsed: final as far as we are concerned.
      'attribute_not_exists(sent) AND (attribute_not_exists(lapse) OR lapse > :now)',
      { sent: false, values: { ':now': { N: String(Math.floor(nowMs / 1000)) } } },
    );
  }

  async clearPendingTallies(tallies: readonly EventTally[]): Promise<void> {
    // Handed to delivery: the deliver step counts it (or will); the count is not ours to erase.
    await this.putEventTalliesIf(tallies, 'attribute_not_exists(sent)', { sent: false });
  }

  async eventTalliesFound(tallies: readonly Omit<EventTally, 'counts'>[]): Promise<Set<string>> {
    const found = new Set<string>();
    await forEachLimited(tallies, WRITE_CONCURRENCY, async (tally) => {
      const stored = await this.client.send(
        new GetItemCommand({
          TableName: this.tableName,
          Key: key(eventTallyPk(tally.platformId, tally.key), tally.key),
          ConsistentRead: true,
          ProjectionExpression: 'pk',
        }),
      );
      if (stored.Item) found.add(`${tally.platformId}#${tally.key}`);
    });
    return found;
  }

  async markHandedOver(tallies: readonly Omit<EventTally, 'counts'>[]): Promise<void> {
    // Settled by the deliver step already (it was fast, or this is a repeated release): left alone.
    await this.putEventTalliesIf(
      tallies.map((tally) => ({ ...tally, counts: {} })),
      'attribute_not_exists(sent)',
      { sent: true },
    );
  }

  async settleEventTallies(tallies: readonly EventTally[]): Promise<void> {
    // A copy of the event that was delivered stays delivered (another copy may find it superseded).
    await this.putEventTalliesIf(tallies, 'attribute_not_exists(delivered)', { sent: true });
  }

  /** Event tallies written one by one with a condition (a refused one is left as stored). */
  private async putEventTalliesIf(
    tallies: readonly EventTally[],
    condition: string,
    options: { readonly sent: boolean; readonly values?: Record<string, AttributeValue> },
  ): Promise<void> {
    const byKey = new Map<string, EventTally>();
    for (const tally of tallies) byKey.set(`${tally.platformId}\u0000${tally.key}`, tally);
    await forEachLimited([...byKey.values()], WRITE_CONCURRENCY, async (tally) => {
      const itemKey = key(eventTallyPk(tally.platformId, tally.key), tally.key);
      try {
        // A tally cleared (no counts, not handed over: forget) is deleted under the same condition.
        if (Object.keys(countAttributes(tally.counts)).length === 0 && !options.sent) {
          await this.client.send(
            new DeleteItemCommand({
              TableName: this.tableName,
              Key: itemKey,
              ConditionExpression: condition,
              ...(options.values ? { ExpressionAttributeValues: options.values } : {}),
            }),
          );
          return;
        }
        await this.client.send(
          new PutItemCommand({
            TableName: this.tableName,
            Item: {
              ...itemKey,
              seg: { S: tally.segmentId },
              ...countAttributes(tally.counts),
              ...(tally.lapseAt === undefined ? {} : { lapse: { N: String(tally.lapseAt) } }),
              // Handed to delivery: the route's counts may no longer replace it.
              ...(options.sent ? { sent: { BOOL: true } } : {}),
            },
            ConditionExpression: condition,
            ...(options.values ? { ExpressionAttributeValues: options.values } : {}),
          }),
        );
      } catch (error) {
        if (!(error instanceof ConditionalCheckFailedException)) throw error;
      }
    });
  }

  /**
   * Counts per segment: the added counts of earlier versions (`stats#`), every delivery message's
   * tally (`tally#`, the calls of every deliver invocation among them) and every event tally
   * (`etally#`, in EVENT_TALLY_SHARDS partitions), a pending one whose lapse time is past `nowMs`
   * counted `lapsed` (classified here, as it is read: no write, no scan at the lapse).
   */
  async stats(
    platformId: number,
    nowMs = Date.now(),
  ): Promise<{ segmentId: string; counts: Record<string, number> }[]> {
    const names = [...OUTCOMES, ...TALLIES];
    const nowSeconds = Math.floor(nowMs / 1000);
    const bySegment = new Map<string, Record<string, number>>();
    const add = (segmentId: string, item: Record<string, AttributeValue>) => {
      const counts = bySegment.get(segmentId) ?? Object.fromEntries(names.map((name) => [name, 0]));
      const read: Counts = Object.fromEntries(names.map((name) => [name, Number(item[name]?.N ?? 0)]));
      const lapseAt = item['lapse']?.N === undefined ? undefined : Number(item['lapse'].N);
      const classified = classifyEventTally(read, lapseAt, nowSeconds);
      for (const name of names) counts[name] = (counts[name] ?? 0) + (classified[name] ?? 0);
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
    const digest = entries.some((entry) => entry.dmpUserId !== undefined) ? await this.digester() : undefined;
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
              // The keyed digest, not the id: `dmp rejected --user <id>` computes it to find them.
              ...(entry.dmpUserId === undefined || !digest
                ? {}
                : { userDigest: { S: digest(entry.dmpUserId) } }),
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
          userDigest: item['userDigest']?.S,
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

  /** Deletes the rejection records of the user (by its keyed digest; 14 days of them). */
  async deleteRejectionsOf(dmpUserId: string, days = 15, nowMs = Date.now()): Promise<number> {
    const digest = (await this.digester())(dmpUserId);
    let deleted = 0;
    for (let day = 0; day < days; day++) {
      const pk = `rejected#${new Date(nowMs - day * 86_400_000).toISOString().slice(0, 10)}`;
      // Records written before rejections held the digest (at most 14 days old) named the id.
      const items = (await this.queryAll(pk, true)).filter(
        (item) => item['userDigest']?.S === digest || item['dmpUserId']?.S === dmpUserId,
      );
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

import { randomUUID } from 'node:crypto';
import type { ConnectedPlatform } from '../connectors/partner-clients.ts';
import {
  type AccountingStore,
  type Counts,
  callsTally,
  type EventTally,
  NO_SEGMENT,
  pendingEventKey,
  type RecordTally,
  type RejectedEntry,
} from './accounting.ts';
import { type CallGate, deliverMemberships, PARTNER_DOWN_AFTER, type PartnerLike } from './delivery.ts';
import type { IntentOptions, MembershipStateStore } from './dynamo-store.ts';
import { removalDueAt } from './expiry.ts';
import { type Membership, membershipKey } from './membership.ts';
import { type AppliedState, compareEvents, newestPerKey } from './ordering.ts';
import {
  callsMayLandUntil,
  inFlightUntil,
  type MessageProgress,
  outcomeOf,
  type PlacedMembership,
  STATUS,
  type Status,
  StatusLine,
} from './progress.ts';

/**
 * The deliver step for one invocation of a platform's delivery queue: every record's memberships
 * are planned together (micro-batches gathered from many messages), ordered against what is
 * stored, sent, and settled in each message's progress (src/population/progress.ts). A record
 * fails (comes back through the queue) when one of its memberships could not be settled; those
 * that were settled are neither sent nor counted again on the next receive.
 *
 * Per membership: one conditional write of its intent before the call (a stale event is refused
 * by it, whatever happened to the invocation that stored the newer one); per message: one read of
 * its progress before and one write after. An intent that replaces another message's event whose
 * call may still be under way (its invocation's calls end by the `dl` it stored, and its progress
 * does not settle it) is not sent until that time has passed: it could reach the partner first and
 * be undone by the older call.
 */

export interface DeliveryRecord {
  readonly id: string;
  /** Undefined when the body is not a delivery message (never retried). */
  readonly memberships: readonly Membership[] | undefined;
  /** The queue will move the message to its DLQ if this receive fails. */
  readonly lastReceive: boolean;
}

export interface DeliverServiceDeps {
  readonly environment: string;
  readonly platform: (platformId: number) => ConnectedPlatform | undefined;
  readonly partnerFor: (platform: ConnectedPlatform) => Promise<PartnerLike>;
  readonly gateFor?: (platform: ConnectedPlatform) => CallGate | undefined;
  readonly state: MembershipStateStore;
  readonly accounting: AccountingStore;
  /**
   * The users among these that a privacy request forgot: their adds (routed before the request)
   * are set aside as `forgotten`, their removals sent and no state of them kept.
   */
  readonly forgotten?: ((dmpUserIds: readonly string[]) => Promise<Set<string>>) | undefined;
  readonly now?: () => number;
}

/** The share of an invocation's time its intent writes may take; the rest is for the calls. */
export const INTENT_TIME_SHARE = 0.5;

/** Concurrent writes of the store (src/population/dynamo-store.ts). */
const WRITES_AT_ONCE = 16;

/** Memberships checked against privacy requests, written as intents and sent at a time. */
const INTENT_CHUNK = 1000;

/** Chunks whose calls may run while the next chunk's intents are written. */
const CHUNKS_IN_FLIGHT = 2;

/**
 * Calls stop early enough to write what comes after them (each message's progress, its tallies,
 * the counts): twice as long as that many writes took during the intents, and at least a second.
 */
export function callDeadline(deadline: number, writeRoundMs: number, writesAfter: number): number {
  return deadline - Math.ceil(Math.max(1000, 2 * writeRoundMs * Math.ceil(writesAfter / WRITES_AT_ONCE)));
}

/** Intents start until this time: the calls and the writes after them get the rest. */
export function intentStopAt(startedAt: number, deadline: number): number {
  return startedAt + Math.floor(Math.max(0, deadline - startedAt) * INTENT_TIME_SHARE);
}

export interface LatencySample {
  readonly platformId: number;
  /** From the audience event's `ts` to the partner's acknowledgement of the call carrying it. */
  readonly ms: number;
}

export interface DeliverResult {
  readonly failedRecordIds: Set<string>;
  /** Records this invocation had no time to start on: they come back at once. */
  readonly unstartedRecordIds: Set<string>;
  /** The longest Retry-After a partner asked of the failed records (or an in-flight call's end). */
  readonly retryAfterMs?: number | undefined;
  readonly delivered: number;
  readonly calls: number;
  /** One per partner call and event time in it (at most MAX_LATENCY_SAMPLES). */
  readonly latencies: LatencySample[];
}

/** Samples of event-to-partner latency kept per invocation (an EMF record takes 100 values). */
export const MAX_LATENCY_SAMPLES = 100;

type Tracked = PlacedMembership;

export async function deliverRecords(
  records: readonly DeliveryRecord[],
  deps: DeliverServiceDeps,
  deadline: number,
): Promise<DeliverResult> {
  const now = deps.now ?? Date.now;
  const startedAt = now();
  const callsByPlatform = new Map<number, number>();
  const rejections: { entry: RejectedEntry; platformId: number; segmentId: string }[] = [];
  const failedRecordIds = new Set<string>();
  const unstartedRecordIds = new Set<string>();
  const latencies: LatencySample[] = [];
  let retryAfterMs: number | undefined;
  let delivered = 0;
  let calls = 0;
  const retryAfter = (ms: number | undefined) => {
    if (ms !== undefined) retryAfterMs = Math.max(retryAfterMs ?? 0, ms);
  };

  const decodable = records.filter((record) => record.memberships);
  const stored = await deps.state.progressOf(decodable.map((record) => record.id));
  const lines = new Map<string, StatusLine>();
  const byPlatform = new Map<number, Tracked[]>();
  const undecodable: string[] = [];
  for (const record of records) {
    if (!record.memberships) {
      undecodable.push(record.id);
      rejections.push({
        entry: {
          id: `delivery#${record.id}`,
          reason: 'message_invalid',
          detail: 'not a delivery message',
          memberships: 1,
        },
        platformId: 0,
        segmentId: NO_SEGMENT,
      });
      continue;
    }
    const line = new StatusLine(record.memberships.length, stored.get(record.id)?.statuses);
    lines.set(record.id, line);
    record.memberships.forEach((m, index) => {
      // Settled by an earlier receive (which died before the queue deleted the message).
      if (line.get(index) !== STATUS.open) return;
      const list = byPlatform.get(m.platformId) ?? [];
      list.push({ ...m, recordId: record.id, index });
      byPlatform.set(m.platformId, list);
    });
  }
  const settle = (item: Tracked, status: Status) => lines.get(item.recordId)?.set(item.index, status);
  const fail = (item: Tracked) => failedRecordIds.add(item.recordId);

  const reject = (item: Tracked, reason: string, detail: string) => {
    settle(item, STATUS.rejected);
    rejections.push({
      entry: {
        id: `${item.recordId}#${membershipKey(item)}#${item.ts}`,
        reason,
        detail,
        platformId: item.platformId,
        segmentId: item.segmentId,
        audienceId: item.audienceId,
        dmpUserId: item.dmpUserId,
        // Listed by `dmp rejected`, but a removal at expiry is not an accepted event to count.
        memberships: item.expiry ? 0 : 1,
      },
      platformId: item.platformId,
      segmentId: item.segmentId,
    });
  };

  /**
   * Checks a chunk's users against privacy requests and stores its intents (the intent is stored
   * before the call: a stale event is refused against it even if this invocation dies, or times
   * out, between the partner's answer and its progress write); returns what may be sent now.
   */
  const storeIntents = async (
    chunk: readonly Tracked[],
    intentOptions: IntentOptions,
  ): Promise<{ items: Tracked[]; writeRoundMs: number }> => {
    const none = { items: [], writeRoundMs: 0 };
    let forgotten: Set<string>;
    try {
      forgotten = (await deps.forgotten?.([...new Set(chunk.map((m) => m.dmpUserId))])) ?? new Set<string>();
    } catch {
      // The privacy check could not be read (timeouts after the SDK's retries): these
      // memberships come back with their records, after a backoff; the others go on.
      for (const item of chunk) fail(item);
      return none;
    }
    const toWrite: Tracked[] = [];
    // A forgotten user's removal keeps no state (the privacy request deleted the rest): sent
    // without an intent, settled in its message's progress, never stored.
    const items: Tracked[] = [];
    for (const item of chunk) {
      if (!forgotten.has(item.dmpUserId)) toWrite.push(item);
      else if (item.op === 'remove') items.push(item);
      // A forgotten user's add (routed before the request) is set aside, without the id.
      else {
        settle(item, STATUS.rejected);
        rejections.push({
          entry: {
            id: `${item.recordId}#forgotten#${item.platformId}#${item.segmentId}#${item.ts}`,
            reason: 'forgotten',
            detail: 'the user was forgotten by a privacy request',
            platformId: item.platformId,
            segmentId: item.segmentId,
            audienceId: item.audienceId,
            memberships: item.expiry ? 0 : 1,
          },
          platformId: item.platformId,
          segmentId: item.segmentId,
        });
      }
    }
    const writeStart = now();
    const { claimed, refused, unstarted, failed } = await deps.state.recordIntents(
      toWrite,
      writeStart,
      intentOptions,
    );
    for (const item of unstarted) unstartedRecordIds.add(item.recordId);
    for (const item of failed) fail(item);
    const writeRoundMs =
      (now() - writeStart) / Math.max(1, Math.ceil((toWrite.length - unstarted.length) / WRITES_AT_ONCE));

    // What the refused intents met, and the progress of messages whose calls may be under way.
    const met = refused.length > 0 ? await deps.state.getApplied(refused) : new Map<string, AppliedState>();
    const others = new Set<string>();
    const nowMs = now();
    for (const { item, previous } of claimed)
      if (previous?.by && callsMayLandUntil(previous, item.recordId, nowMs) !== undefined)
        others.add(previous.by);
    for (const item of refused) {
      const by = met.get(membershipKey(item))?.by;
      if (by) others.add(by);
    }
    const progress: Map<string, MessageProgress> =
      others.size > 0 ? await deps.state.progressOf([...others]) : new Map();

    const defer = (item: Tracked, until: number) => {
      fail(item);
      retryAfter(until - now());
    };
    for (const { item, previous } of claimed) {
      const busyUntil = inFlightUntil(previous, item.recordId, progress, now());
      if (busyUntil === undefined) items.push(item);
      else defer(item, busyUntil);
    }
    for (const item of refused) {
      const current = met.get(membershipKey(item));
      if (!current) {
        fail(item); // deleted meanwhile (a privacy request): tried again
        continue;
      }
      if (compareEvents(current, item) !== 0) {
        settle(item, STATUS.superseded);
        continue;
      }
      // The same event, stored by another message: that one accounts for it once it settled it;
      // one that gave up on it (its DLQ, a redrive's new message) is taken over once its calls ended.
      // (A state of the previous design says itself whether the partner acknowledged it.)
      const status =
        current.by && current.ix !== undefined ? progress.get(current.by)?.statuses[current.ix] : undefined;
      if ((status !== undefined && status !== STATUS.open) || current.acked === true) {
        settle(item, STATUS.elsewhere);
        continue;
      }
      const busyUntil = inFlightUntil(current, item.recordId, progress, now());
      if (busyUntil !== undefined) defer(item, busyUntil);
      else if (await deps.state.takeOver(item, current, now(), intentOptions)) items.push(item);
      else fail(item);
    }
    return { items, writeRoundMs };
  };

  for (const [platformId, memberships] of byPlatform) {
    const platform = deps.platform(platformId);
    if (!platform) {
      for (const item of memberships)
        reject(item, 'platform_unknown', `platform ${platformId} is not configured`);
      continue;
    }
    const { newest, superseded, duplicates } = newestPerKey(memberships);
    for (const item of superseded) settle(item, STATUS.superseded);
    for (const item of duplicates) settle(item, STATUS.elsewhere);

    const intentOptions = {
      callsEndBy: deadline,
      removeAt: (m: Membership) => removalDueAt(platform.connector, m),
      stopAt: intentStopAt(startedAt, deadline),
      now,
    };
    let partner: PartnerLike | undefined;
    const gate = deps.gateFor?.(platform);
    const sending: Promise<void>[] = [];
    let failedCallsInRow = 0;
    // A chunk's calls are awaited later: an unexpected error is kept, and thrown once all ended.
    let sendError: unknown;
    const keepError = (error: unknown) => {
      sendError ??= error;
    };
    // A chunk at a time: the users are checked against privacy requests, the intents written,
    // then the chunk is sent, so the first calls leave after one chunk's writes, not all of them.
    // Chunks start while the invocation has time for them (the rest comes back at once, unstarted).
    for (let start = 0; start < newest.length; start += INTENT_CHUNK) {
      const chunk = newest.slice(start, start + INTENT_CHUNK);
      if (now() >= intentOptions.stopAt) {
        for (const item of chunk) unstartedRecordIds.add(item.recordId);
        continue;
      }
      // The partner failed the last calls in a row: the rest is not tried now (delivery.ts).
      if (failedCallsInRow >= PARTNER_DOWN_AFTER) {
        for (const item of chunk) fail(item);
        continue;
      }
      const toSend = await storeIntents(chunk, intentOptions);
      if (toSend.items.length === 0) continue;
      partner ??= await deps.partnerFor(platform);
      // Sent while the next chunk is written: at most CHUNKS_IN_FLIGHT chunks' calls at once.
      sending.push(
        deliverMemberships(toSend.items, {
          connector: platform.connector,
          environment: deps.environment,
          partner,
          ...(gate ? { gate } : {}),
          concurrency: platform.connector.population.mode === 'single' ? 16 : 4,
          deadline: callDeadline(deadline, toSend.writeRoundMs, lines.size + 2),
          now,
          onAcknowledged: (items, atMs) => {
            for (const ts of new Set(items.map((item) => item.ts))) {
              if (latencies.length < MAX_LATENCY_SAMPLES)
                latencies.push({ platformId, ms: Math.max(0, atMs - ts) });
            }
          },
        }).then((outcome) => {
          const allFailed = outcome.delivered.length === 0 && outcome.rejected.length === 0;
          failedCallsInRow = allFailed ? failedCallsInRow + outcome.calls : 0;
          calls += outcome.calls;
          callsByPlatform.set(platformId, (callsByPlatform.get(platformId) ?? 0) + outcome.calls);
          for (const item of outcome.delivered as Tracked[]) {
            settle(item, STATUS.delivered);
            if (!item.expiry) delivered += 1;
          }
          for (const { item, reason, detail } of outcome.rejected) reject(item as Tracked, reason, detail);
          for (const failure of outcome.failed) {
            fail(failure.item as Tracked);
            retryAfter(failure.retryAfterMs);
          }
        }, keepError),
      );
      if (sending.length >= CHUNKS_IN_FLIGHT) await sending.shift();
    }
    await Promise.all(sending);
    if (sendError !== undefined) throw sendError;
  }

  // A record with a membership not started comes back at once, unless the partner (or a call
  // still under way elsewhere) asked for a wait on another of its memberships.
  for (const id of unstartedRecordIds) {
    if (failedRecordIds.has(id)) unstartedRecordIds.delete(id);
    else failedRecordIds.add(id);
  }

  // The calls first, keyed by this invocation (a redelivery's calls are other calls, made again):
  // only a crash between the partner's answers and this write leaves calls uncounted
  // (docs/population.md section 5: `calls` counts the calls whose answers were recorded).
  const invocationId = randomUUID();
  await deps.accounting.putTallies(
    [...callsByPlatform]
      .filter(([, made]) => made > 0)
      .map(([platformId, made]) => callsTally(platformId, invocationId, made)),
  );
  // Rejections are listed once each (`dmp rejected`); they are counted in the tallies below.
  if (rejections.length > 0) await deps.accounting.recordRejections(rejections.map((r) => r.entry));
  // The progress first: the tallies are read from it, and a redelivery must find it.
  const changed = [...lines].filter(([, line]) => line.dirty);
  await deps.state.recordProgress(
    changed.map(([recordId, line]) => ({ recordId, statuses: line.toString() })),
    now(),
  );
  const lastReceive = new Set(records.filter((record) => record.lastReceive).map((record) => record.id));
  // Settled: it succeeds, or the queue moves it to its DLQ now (its open memberships count `dlq`).
  const settled = (recordId: string) => !failedRecordIds.has(recordId) || lastReceive.has(recordId);
  const { byMessage, byEvent } = tallies(records, lines, undecodable, settled);
  await deps.accounting.putTallies(byMessage);
  await deps.accounting.settleEventTallies(byEvent);
  return { failedRecordIds, unstartedRecordIds, retryAfterMs, delivered, calls, latencies };
}

/**
 * The outcome of every membership of the settled records (those that succeed now, or are on their
 * last receive), from their progress (progress.ts, `outcomeOf`): written by key, so a redelivery
 * after a crash writes the same tallies again. A membership released from pending is counted in
 * its event's own tally (`byEvent`, accounting.ts `EventTally`), the others per message.
 */
export function tallies(
  records: readonly DeliveryRecord[],
  lines: ReadonlyMap<string, StatusLine>,
  undecodable: readonly string[],
  settled: (recordId: string) => boolean,
): { byMessage: RecordTally[]; byEvent: EventTally[] } {
  const byEvent: EventTally[] = [];
  const out = new Map<string, { recordId: string; platformId: number; segmentId: string; counts: Counts }>();
  const count = (recordId: string, platformId: number, segmentId: string, outcome: keyof Counts) => {
    const key = `${recordId}\u0000${platformId}\u0000${segmentId}`;
    const tally = out.get(key) ?? { recordId, platformId, segmentId, counts: {} };
    tally.counts[outcome] = (tally.counts[outcome] ?? 0) + 1;
    out.set(key, tally);
  };
  for (const recordId of undecodable) if (settled(recordId)) count(recordId, 0, NO_SEGMENT, 'rejected');
  for (const record of records) {
    const line = lines.get(record.id);
    if (!line || !record.memberships || !settled(record.id)) continue;
    record.memberships.forEach((item, index) => {
      const outcome = outcomeOf(line.get(index), item.expiry === true);
      if (!outcome) return;
      if (item.released)
        byEvent.push({
          platformId: item.platformId,
          segmentId: item.segmentId,
          key: pendingEventKey(item),
          counts: { [outcome]: 1 },
        });
      else count(record.id, item.platformId, item.segmentId, outcome);
    });
  }
  return { byMessage: [...out.values()], byEvent };
}

import { forEachLimited } from '../aws/limit.ts';
import type { PlatformConfig } from '../config/schema.ts';
import type { ConnectedPlatform } from '../connectors/partner-clients.ts';
import type { FileStaging } from '../files/staging.ts';
import type { Audience } from '../segments/segment.ts';
import { SegmentRefusedError } from '../segments/segment-service.ts';
import {
  type AccountingStore,
  NO_SEGMENT,
  pendingEventKey,
  pendingTallies,
  type RejectedEntry,
  rejectionTally,
} from './accounting.ts';
import type { PendingStore } from './dynamo-store.ts';
import { type Membership, packDeliveryMessages, toStaged } from './membership.ts';
import { type AudienceEvent, parseAudienceEvent, validUsers } from './message.ts';
import { RELEASE_CONCURRENCY, releasePending, releaseTarget } from './release-service.ts';

/**
 * The route step: audience events in, work out per platform.
 *
 * - a message that fails validation is set aside at once with its reason (never retried); an
 *   invalid user id is set aside alone, an unknown platform alone;
 * - the partner segment comes from the segment service (created on first use, exactly once); a
 *   segment not ready yet fails the record, which comes back later through the queue: nothing is
 *   delivered into an unknown segment and nothing is lost;
 * - partner ids are looked up in bulk; mapped users go to the platform's delivery queue (or to
 *   file staging for file platforms), unmapped ones are kept as pending until their sync;
 * - after the pending writes, the mappings of those users are read again, strongly consistent:
 *   a sync that stored one while this step was between its lookup and its write had its stream's
 *   release run before the write, so found nothing: this step releases them itself.
 */

export interface AudienceRecord {
  /** The SQS message id: stable across redeliveries. */
  readonly id: string;
  readonly body: string;
  /**
   * Received before (SQS ApproximateReceiveCount > 1): an earlier receive may have made some of
   * its users pending and stopped before their release (see `pendedBefore`).
   */
  readonly redelivered?: boolean | undefined;
}

export interface MappingLookup {
  /**
   * Partner ids by `${platformId}#${dmpUserId}`, for live mappings only; eventually consistent
   * unless `consistent` (the re-check after a pending write).
   */
  lookup(
    pairs: readonly { platformId: number; dmpUserId: string }[],
    options?: { readonly consistent?: boolean },
  ): Promise<Map<string, string>>;
}

export interface DeliveryQueues {
  /** Puts message bodies on the platform's delivery queue; throws unless all were accepted. */
  send(platformId: number, bodies: readonly string[]): Promise<void>;
}

export interface SegmentResolver {
  ensure(
    platform: PlatformConfig,
    audience: Audience,
    options?: { signal?: AbortSignal },
  ): Promise<{ partnerSegmentId: string }>;
}

export interface RouteServiceDeps {
  readonly platform: (platformId: number) => PlatformConfig | undefined;
  readonly segments: SegmentResolver;
  readonly mappings: MappingLookup;
  readonly pending: PendingStore;
  readonly accounting: AccountingStore;
  readonly queues: DeliveryQueues;
  /** File-mode platforms' staging (the file-export issue); without it their records are retried. */
  readonly files?: FileStaging | undefined;
  /**
   * The users among these that were forgotten (a privacy request's tombstone): their events are
   * set aside with the reason `forgotten`, without the id. Absent: nobody is checked.
   */
  readonly forgotten?: ((dmpUserIds: readonly string[]) => Promise<Set<string>>) | undefined;
  /** How long a user may stay pending before the event is dropped with its expiry. */
  readonly pendingKeepSeconds: number;
  readonly now?: () => number;
}

export interface RouteResult {
  readonly failedRecordIds: Set<string>;
  /** Why records failed (distinct error names and messages, never a user id), for the log. */
  readonly errors: Set<string>;
  readonly routed: number;
  readonly pending: number;
  readonly rejected: number;
}

export interface BoundedRouteResult extends RouteResult {
  /** Records not started for lack of time: handed back untouched, to be taken again at once. */
  readonly deferredRecordIds: Set<string>;
}

/** Records routed together: about 32 KiB of bodies (a message of 1000 users is 20-30 KiB). */
export const ROUTE_GROUP_BYTES = 32 * 1024;

/**
 * Routes records in groups, one after another, and starts a group only if the time left before
 * `deadline` (epoch ms) is at least twice what the groups so far took per byte, plus
 * `reserveMs`: a batch of ten 10,000-user messages on a loaded table can need more than one
 * invocation, and a group that is started is finished (its writes, its counts), never cut in the
 * middle by the function's timeout. The records of the groups not started are returned as
 * `deferredRecordIds`: nothing of them was done, so taking them again counts nothing twice.
 * The first group always starts (or nothing would ever move).
 */
export async function routeWithinDeadline(
  records: readonly AudienceRecord[],
  deps: RouteServiceDeps,
  deadline: number,
  options: { readonly reserveMs?: number; readonly groupBytes?: number } = {},
): Promise<BoundedRouteResult> {
  const now = deps.now ?? Date.now;
  const reserveMs = options.reserveMs ?? 1000;
  const groups = groupRecords(records, options.groupBytes ?? ROUTE_GROUP_BYTES);
  const failedRecordIds = new Set<string>();
  const errors = new Set<string>();
  const deferredRecordIds = new Set<string>();
  let routed = 0;
  let pending = 0;
  let rejected = 0;
  let spentMs = 0;
  let doneBytes = 0;
  for (const [index, group] of groups.entries()) {
    const bytes = groupSize(group);
    const started = now();
    const expectedMs = doneBytes === 0 ? 0 : (spentMs / doneBytes) * bytes;
    if (index > 0 && started + 2 * expectedMs + reserveMs > deadline) {
      for (const rest of groups.slice(index)) for (const record of rest) deferredRecordIds.add(record.id);
      break;
    }
    const signal = AbortSignal.timeout(Math.min(MAX_TIMER_MS, Math.max(1, deadline - started)));
    const result = await routeRecords(group, deps, signal);
    spentMs += Math.max(1, now() - started);
    doneBytes += bytes;
    for (const id of result.failedRecordIds) failedRecordIds.add(id);
    for (const error of result.errors) errors.add(error);
    routed += result.routed;
    pending += result.pending;
    rejected += result.rejected;
  }
  return { failedRecordIds, errors, deferredRecordIds, routed, pending, rejected };
}

function errorSummary(step: string, error: unknown): string {
  const text = error instanceof Error ? `${error.name}: ${error.message}` : 'unknown error';
  return `${step}: ${text.slice(0, 200)}`;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

const groupSize = (group: readonly AudienceRecord[]) =>
  group.reduce((sum, record) => sum + Buffer.byteLength(record.body), 0);

function groupRecords(records: readonly AudienceRecord[], groupBytes: number): AudienceRecord[][] {
  const groups: AudienceRecord[][] = [];
  let current: AudienceRecord[] = [];
  let bytes = 0;
  for (const record of records) {
    const size = Buffer.byteLength(record.body);
    if (current.length > 0 && bytes + size > groupBytes) {
      groups.push(current);
      current = [];
      bytes = 0;
    }
    current.push(record);
    bytes += size;
  }
  if (current.length > 0) groups.push(current);
  return groups;
}

interface Work {
  readonly record: AudienceRecord;
  readonly event: AudienceEvent;
  readonly tsMs: number;
  readonly platformId: number;
  readonly segmentId: string;
  readonly users: readonly string[];
}

/**
 * The handshake with the sync: this step read no mapping, then a sync stored one and its stream's
 * release ran before this step's pending write (found nothing), so nothing else would release the
 * events before the user's next sync. A strongly consistent read of the mappings AFTER the pending
 * writes closes it: a mapping stored before the read is seen here, one stored after it triggers a
 * release that lists these events. Both may happen: releases are idempotent and count once.
 * Returns how many of the users' events were released. Costs 1 RRU per pending membership.
 */
async function releaseSyncedMeanwhile(
  held: readonly Pick<Membership, 'platformId' | 'dmpUserId'>[],
  deps: RouteServiceDeps,
): Promise<number> {
  if (held.length === 0) return 0;
  const pairs = [...new Map(held.map((m) => [`${m.platformId}#${m.dmpUserId}`, m])).values()];
  const found = await deps.mappings.lookup(
    pairs.map(({ platformId, dmpUserId }) => ({ platformId, dmpUserId })),
    { consistent: true },
  );
  const synced = pairs.flatMap(({ platformId, dmpUserId }) => {
    const partnerUserId = found.get(`${platformId}#${dmpUserId}`);
    return partnerUserId === undefined ? [] : [{ platformId, dmpUserId, partnerUserId }];
  });
  if (synced.length === 0) return 0;
  return releasePending(synced, {
    pending: deps.pending,
    queues: deps.queues,
    accounting: deps.accounting,
    files: deps.files,
    targetOf: (platformId) => releaseTarget(deps.platform(platformId)),
    ...(deps.now ? { now: deps.now } : {}),
  });
}

type Unmapped = Omit<Membership, 'partnerUserId'>;

/**
 * Of the mapped users of a redelivered message, those whose event an earlier receive made pending:
 * the pending item still holds it (that receive stopped before its re-check), or its event tally
 * exists (it got as far as its counts, or its release). Delivered directly now, such an event
 * would be counted twice (the delivery message's tally, and its own one: lapsed, or the release's
 * outcome) and its pending item left behind; the caller routes them as pending again instead,
 * and the re-check releases them (counted once, in the event's tally). Only redeliveries pay: one
 * strongly consistent Query per user and one GetItem per membership not found pending.
 */
async function pendedBefore(candidates: readonly Unmapped[], deps: RouteServiceDeps): Promise<Set<Unmapped>> {
  const pendedAgain = new Set<Unmapped>();
  if (candidates.length === 0) return pendedAgain;
  const users = [...new Map(candidates.map((m) => [`${m.platformId}#${m.dmpUserId}`, m])).values()];
  const stored = new Set<string>();
  await forEachLimited(users, RELEASE_CONCURRENCY, async ({ platformId, dmpUserId }) => {
    for (const event of await deps.pending.listPending(platformId, dmpUserId))
      stored.add(pendingEventKey(event));
  });
  const rest = candidates.filter((m) => {
    if (!stored.has(pendingEventKey(m))) return true;
    pendedAgain.add(m);
    return false;
  });
  const counted = await deps.accounting.eventTalliesFound(
    rest.map((m) => ({ platformId: m.platformId, segmentId: m.segmentId, key: pendingEventKey(m) })),
  );
  for (const m of rest) if (counted.has(`${m.platformId}#${pendingEventKey(m)}`)) pendedAgain.add(m);
  return pendedAgain;
}

export async function routeRecords(
  records: readonly AudienceRecord[],
  deps: RouteServiceDeps,
  signal?: AbortSignal,
): Promise<RouteResult> {
  const now = deps.now ?? Date.now;
  const rejections: { entry: RejectedEntry; platformId: number; segmentId: string }[] = [];
  const failed = new Set<string>();
  const errors = new Set<string>();
  const work: Work[] = [];
  const segmentCache = new Map<string, Promise<{ partnerSegmentId: string }>>();

  for (const record of records) {
    const parsed = parseAudienceEvent(record.body);
    if (!parsed.ok) {
      rejections.push({
        entry: {
          id: `msg#${record.id}`,
          reason: parsed.reason,
          detail: parsed.detail,
          memberships: 1,
          snippet: record.body.slice(0, 200),
        },
        platformId: 0,
        segmentId: NO_SEGMENT,
      });
      continue;
    }
    const { event, tsMs } = parsed;
    const { valid, invalid } = validUsers(event.users);
    const platforms = [...new Set(event.platforms)];
    invalid.forEach((user, index) => {
      for (const platformId of platforms) {
        rejections.push({
          entry: {
            id: `msg#${record.id}#user#${index}#${platformId}`,
            reason: 'user_invalid',
            detail: `user id '${user.slice(0, 40)}' is not a DMP user id (8-128 of A-Z a-z 0-9 . _ -)`,
            platformId,
            audienceId: event.audience.id,
            memberships: 1,
          },
          platformId,
          segmentId: NO_SEGMENT,
        });
      }
    });
    if (valid.length === 0) continue;
    for (const platformId of platforms) {
      const platform = deps.platform(platformId);
      const refuse = (reason: RejectedEntry['reason'], detail: string, segmentId = NO_SEGMENT) =>
        rejections.push({
          entry: {
            id: `msg#${record.id}#platform#${platformId}`,
            reason,
            detail,
            platformId,
            audienceId: event.audience.id,
            memberships: valid.length,
          },
          platformId,
          segmentId,
        });
      if (!platform) {
        refuse('platform_unknown', `platform ${platformId} is not configured in this environment`);
        continue;
      }
      if (!platform.connector) {
        refuse('platform_without_connector', `platform ${platformId} has no connector (sync only)`);
        continue;
      }
      const cacheKey = `${platformId}#${event.audience.id}`;
      let ensured = segmentCache.get(cacheKey);
      if (!ensured) {
        ensured = deps.segments.ensure(platform, event.audience, signal ? { signal } : {});
        segmentCache.set(cacheKey, ensured);
      }
      try {
        const { partnerSegmentId } = await ensured;
        work.push({ record, event, tsMs, platformId, segmentId: partnerSegmentId, users: valid });
      } catch (error) {
        if (error instanceof SegmentRefusedError) {
          refuse('segment_refused', error.message.slice(0, 300));
        } else {
          // Not ready yet, or a transient failure: the record comes back later; nothing is lost.
          failed.add(record.id);
          errors.add(errorSummary('segment', error));
        }
      }
    }
  }

  // Records that failed on one platform come back whole: route none of their work now.
  let live = work.filter((item) => !failed.has(item.record.id));
  let routed = 0;
  let pendingCount = 0;
  /**
   * Runs one step of the bulk work; if it fails, the records that fed it come back through the
   * queue (whatever was done already is recognised on the next receive: ordering state, conditional
   * writes, idempotent staging), and the other steps go on.
   */
  const step = async (name: string, records: ReadonlySet<string>, work: () => Promise<void>) => {
    try {
      await work();
    } catch (error) {
      for (const id of records) failed.add(id);
      errors.add(errorSummary(name, error));
    }
  };
  const bucket = <T>() => ({ items: [] as T[], records: new Set<string>() });
  if (deps.forgotten && live.length > 0) {
    let forgotten: Set<string> | undefined;
    await step('tombstones', new Set(live.map((item) => item.record.id)), async () => {
      forgotten = await deps.forgotten?.([...new Set(live.flatMap((item) => item.users))]);
    });
    live = live.filter((item) => !failed.has(item.record.id));
    if (forgotten && forgotten.size > 0) {
      const gone = forgotten;
      live = live.map((item) => {
        const kept = item.users.filter((user) => !gone.has(user));
        const dropped = item.users.length - kept.length;
        if (dropped > 0)
          rejections.push({
            entry: {
              id: `msg#${item.record.id}#forgotten#${item.platformId}`,
              reason: 'forgotten',
              detail: `${dropped} user(s) of this event were forgotten by a privacy request`,
              platformId: item.platformId,
              segmentId: item.segmentId,
              audienceId: item.event.audience.id,
              memberships: dropped,
            },
            platformId: item.platformId,
            segmentId: item.segmentId,
          });
        return { ...item, users: kept };
      });
    }
  }

  const pairs = live.flatMap((item) =>
    item.users.map((dmpUserId) => ({ platformId: item.platformId, dmpUserId })),
  );
  let partnerIds: Map<string, string> | undefined;
  await step('mappings', new Set(live.map((item) => item.record.id)), async () => {
    partnerIds = pairs.length > 0 ? await deps.mappings.lookup(pairs) : new Map<string, string>();
  });
  if (partnerIds) {
    const toDeliver = new Map<number, ReturnType<typeof bucket<Membership>>>();
    const toStage = bucket<Membership>();
    const toPend = bucket<Unmapped>();
    const toCheck: { membership: Membership; record: AudienceRecord }[] = [];
    for (const item of live) {
      for (const dmpUserId of item.users) {
        const base = {
          platformId: item.platformId,
          segmentId: item.segmentId,
          audienceId: item.event.audience.id,
          dmpUserId,
          op: item.event.op,
          ts: item.tsMs,
          ...(item.event.ttlSeconds === undefined ? {} : { ttlSeconds: item.event.ttlSeconds }),
        };
        const partnerUserId = partnerIds.get(`${item.platformId}#${dmpUserId}`);
        let target: ReturnType<typeof bucket<Membership>> | undefined;
        if (partnerUserId === undefined) {
          toPend.items.push(base);
          toPend.records.add(item.record.id);
          continue;
        }
        if (item.record.redelivered) {
          toCheck.push({ membership: { ...base, partnerUserId }, record: item.record });
          continue;
        }
        const platform = deps.platform(item.platformId) as ConnectedPlatform;
        if (platform.connector.population.mode === 'file') target = toStage;
        else {
          target = toDeliver.get(item.platformId) ?? bucket<Membership>();
          toDeliver.set(item.platformId, target);
        }
        target.items.push({ ...base, partnerUserId });
        target.records.add(item.record.id);
      }
    }
    if (toCheck.length > 0) {
      let pendedAgain: Set<Unmapped> | undefined;
      const checked = new Set(toCheck.map(({ record }) => record.id));
      await step('redelivery', checked, async () => {
        pendedAgain = await pendedBefore(
          toCheck.map(({ membership }) => membership),
          deps,
        );
      });
      // If the check failed, these records come back whole: none of their mapped users go now.
      for (const { membership, record } of pendedAgain ? toCheck : []) {
        if (pendedAgain?.has(membership)) {
          const { partnerUserId: _partnerUserId, ...unmapped } = membership;
          toPend.items.push(unmapped);
          toPend.records.add(record.id);
          continue;
        }
        const platform = deps.platform(membership.platformId) as ConnectedPlatform;
        let target = toStage;
        if (platform.connector.population.mode !== 'file') {
          target = toDeliver.get(membership.platformId) ?? bucket<Membership>();
          toDeliver.set(membership.platformId, target);
        }
        target.items.push(membership);
        target.records.add(record.id);
      }
    }
    await Promise.all([
      toStage.items.length === 0
        ? Promise.resolve()
        : step('file staging', toStage.records, async () => {
            if (!deps.files) throw new Error('file staging is not available in this deployment');
            await deps.files.stage(toStage.items.map(toStaged));
            routed += toStage.items.length;
          }),
      ...[...toDeliver].map(([platformId, { items, records }]) =>
        step('delivery queue', records, async () => {
          const platform = deps.platform(platformId) as ConnectedPlatform;
          await deps.queues.send(
            platformId,
            packDeliveryMessages(platformId, items, platform.connector.population.batchSize),
          );
          routed += items.length;
        }),
      ),
      toPend.items.length === 0
        ? Promise.resolve()
        : step('pending', toPend.records, async () => {
            const { held, outranked } = await deps.pending.putPending(
              toPend.items,
              now(),
              deps.pendingKeepSeconds,
            );
            // Counted after the writes, by event: a redelivery after a crash writes the same tallies;
            // an event a release handed to delivery meanwhile keeps the deliver step's count.
            await deps.accounting.putPendingTallies(
              [
                ...pendingTallies(held, { pending: 1 }),
                ...pendingTallies(
                  outranked.map((m) => ({ ...m, replaced: [] })),
                  { superseded: 1 },
                ),
              ],
              now(),
            );
            await deps.pending.forgetReplaced(held);
            const released = await releaseSyncedMeanwhile(held, deps);
            pendingCount = Math.max(0, held.length - released);
          }),
    ]);
  }

  let rejected = 0;
  if (rejections.length > 0) {
    // Listed once (`dmp rejected`), counted by the rejection's id: a redelivery counts nothing twice.
    await deps.accounting.recordRejections(rejections.map((r) => r.entry));
    await deps.accounting.putEventTallies(
      rejections.map(({ entry, platformId, segmentId }) => rejectionTally(entry, platformId, segmentId)),
    );
    for (const { entry } of rejections) rejected += entry.memberships;
  }
  return { failedRecordIds: failed, errors, routed, pending: pendingCount, rejected };
}

import type { SQSEvent } from 'aws-lambda';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { LambdaHandler } from '../../local/lambda.ts';
import { PENDING_KEEP_SECONDS } from '../../src/infra/population.ts';
import type { FunctionKey } from '../../src/infra/resources.ts';
import { pendingTallies } from '../../src/population/accounting.ts';
import { DynamoMappingLookup } from '../../src/population/dynamo-adapters.ts';
import { DynamoPopulationStore } from '../../src/population/dynamo-store.ts';
import {
  audienceEvent,
  BATCH_PLATFORM,
  countsAdded,
  deferred,
  dmpAgainst,
  partnerIdOf,
  segmentOf,
  statsTotals,
  sync,
  usePopulationStack,
  users,
} from './population-support.ts';

/**
 * Pending users and the sync, interleaved step by step (awaited hooks in the real handlers, no
 * sleeps): a route event replacing a pending one while the release is between its send and its
 * count; the route reading no mapping while the sync stores one and its release runs, before the
 * route's pending write; two releases of the same event; a pending event whose 14 days pass; and
 * the partner-call count under a crash and a repeated write. Every event must be delivered once
 * the user has a partner id, and counted once.
 */

/** Runs after each invocation of a function ends (set by a test, cleared after it). */
const finished = new Map<FunctionKey, () => void>();
/** The deliver handler waits for this before it starts (a test holds the delivery queue). */
let deliverGate: Promise<void> = Promise.resolve();

const harness = usePopulationStack({
  wrapFunction: (key, handler): LambdaHandler => {
    return async (event, context) => {
      if (key === 'deliver') await deliverGate;
      try {
        return await handler(event, context);
      } catch (error) {
        // A crashed deliver invocation's batch comes back (Lambda: after the visibility timeout).
        if (key === 'deliver') await harness.expireVisibility(event as SQSEvent);
        throw error;
      } finally {
        finished.get(key)?.();
      }
    };
  },
});

afterEach(() => {
  vi.restoreAllMocks();
  finished.clear();
  deliverGate = Promise.resolve();
});

/** The next end of an invocation of `key`. */
function nextEnd(key: FunctionKey): Promise<void> {
  const done = deferred();
  finished.set(key, () => {
    finished.delete(key);
    done.resolve();
  });
  return done.promise;
}

/**
 * The route's first (eventually consistent) lookup misses these users' mappings, as a stale read
 * may; `beforeRecheck` runs before its strongly consistent re-check.
 */
function staleFirstLookup(prefix: string, beforeRecheck?: () => Promise<void>) {
  const lookup = DynamoMappingLookup.prototype.lookup;
  vi.spyOn(DynamoMappingLookup.prototype, 'lookup').mockImplementation(async function (
    this: DynamoMappingLookup,
    pairs,
    options,
  ) {
    const ours = pairs.some((pair) => pair.dmpUserId.includes(prefix));
    if (ours && options?.consistent) await beforeRecheck?.();
    const found = await lookup.call(this, pairs, options);
    if (!options?.consistent)
      for (const key of [...found.keys()]) if (key.includes(prefix)) found.delete(key);
    return found;
  });
}

/** Pauses the first call of a store method (before it runs) until `resume` is resolved. */
function pauseFirst<K extends 'markHandedOver' | 'putPending' | 'deletePending'>(method: K) {
  const reached = deferred();
  const resume = deferred();
  const original = DynamoPopulationStore.prototype[method] as (...args: unknown[]) => Promise<unknown>;
  let calls = 0;
  vi.spyOn(DynamoPopulationStore.prototype, method).mockImplementation(async function (
    this: DynamoPopulationStore,
    ...args: unknown[]
  ) {
    calls += 1;
    if (calls === 1) {
      reached.resolve();
      await resume.promise;
    }
    return original.apply(this, args);
  } as never);
  return { reached: reached.promise, resume: () => resume.resolve(), calls: () => calls };
}

const members = async (audienceId: string) =>
  new Set(harness.stack.partner.members(await segmentOf(harness, BATCH_PLATFORM, audienceId)));

describe('a route event replacing a pending event while the release is between its send and its count', () => {
  it.each([
    ['the route counts the replaced event before the deliver step settles it', true],
    ['the deliver step settles the replaced event before the route counts it', false],
  ])(
    '%s: each event delivered in order and counted once',
    {
      timeout: 120_000,
    },
    async (_name, holdDelivery) => {
      const prefix = `race-release-${holdDelivery ? 'held' : 'free'}`;
      const people = users(prefix, 5);
      const audience = `aud-${prefix}`;
      const before = await statsTotals(harness, BATCH_PLATFORM);
      await harness.send(audienceEvent(people, { audience, ts: '2026-11-30T10:00:00Z' }));
      await harness.idle();

      // The sync's release sends the pending adds, then stops before marking them handed over.
      const release = pauseFirst('markHandedOver');
      const held = deferred();
      if (holdDelivery) deliverGate = held.promise;
      const settled = DynamoPopulationStore.prototype.settleEventTallies;
      const addsSettled = deferred();
      vi.spyOn(DynamoPopulationStore.prototype, 'settleEventTallies').mockImplementation(async function (
        this: DynamoPopulationStore,
        tallies,
      ) {
        await settled.call(this, tallies);
        if (tallies.length > 0) addsSettled.resolve();
      });
      staleFirstLookup(prefix);
      const releaseEnded = nextEnd('releasePending');
      await sync(harness, BATCH_PLATFORM, people);
      await release.reached;
      if (!holdDelivery) await addsSettled.promise;

      // A newer removal now: the route replaces the pending adds (counting them superseded unless
      // handed over), re-reads the mappings, finds them, and releases the removals itself.
      const routed = nextEnd('route');
      await harness.send(audienceEvent(people, { audience, op: 'remove', ts: '2026-11-30T10:05:00Z' }));
      await routed;
      release.resume();
      await releaseEnded;
      held.resolve();
      await harness.idle();

      // Order: the removal is the newest event, whatever reached the partner first.
      const held_ = await members(audience);
      for (const user of people) expect(held_.has(partnerIdOf(user))).toBe(false);
      // 10 events (5 adds, 5 removals), each counted once: nothing left pending.
      const added = countsAdded(await statsTotals(harness, BATCH_PLATFORM), before);
      expect(added.delivered + added.superseded).toBe(10);
      expect(added).toMatchObject({ pending: 0, rejected: 0, dlq: 0, lapsed: 0 });
      expect(added.delivered).toBeGreaterThanOrEqual(5);
    },
  );
});

describe('the handshake between the route and the sync', () => {
  it('the route read no mapping, the sync stored one and its release found nothing, then the route wrote pending: delivered now', {
    timeout: 120_000,
  }, async () => {
    const people = users('handshake-late-pending', 4);
    const audience = 'aud-handshake-late-pending';
    const before = await statsTotals(harness, BATCH_PLATFORM);
    staleFirstLookup('handshake-late-pending');
    // The route stops between its (stale) lookup and its pending write.
    const route = pauseFirst('putPending');
    await harness.send(audienceEvent(people, { audience }));
    await route.reached;
    // Meanwhile the sync stores the partner ids and its release runs (nothing pending yet).
    const released = nextEnd('releasePending');
    await sync(harness, BATCH_PLATFORM, people);
    await released;
    expect(await harness.store.listPending(BATCH_PLATFORM, people[0] as string)).toEqual([]);
    route.resume();
    await harness.idle();

    expect(await members(audience)).toEqual(new Set(people.map(partnerIdOf)));
    for (const user of people) expect(await harness.store.listPending(BATCH_PLATFORM, user)).toEqual([]);
    expect(countsAdded(await statsTotals(harness, BATCH_PLATFORM), before)).toMatchObject({
      delivered: 4,
      pending: 0,
      superseded: 0,
      lapsed: 0,
    });
  });

  it('the stream’s release and the route’s re-check both release the same events: sent twice, counted once', {
    timeout: 120_000,
  }, async () => {
    const people = users('handshake-both', 4);
    const audience = 'aud-handshake-both';
    const before = await statsTotals(harness, BATCH_PLATFORM);
    // The route stops after its pending writes, before its re-check of the mappings.
    const recheck = deferred();
    const resumeRecheck = deferred();
    staleFirstLookup('handshake-both', async () => {
      recheck.resolve();
      await resumeRecheck.promise;
    });
    await harness.send(audienceEvent(people, { audience }));
    await recheck.promise;
    // The sync stores the partner ids; its release sends the pending events and stops before
    // marking them handed over.
    const release = pauseFirst('markHandedOver');
    const releaseEnded = nextEnd('releasePending');
    await sync(harness, BATCH_PLATFORM, people);
    await release.reached;
    // The route's re-check finds the mappings and releases the same events: sent a second time.
    const routed = nextEnd('route');
    resumeRecheck.resolve();
    await routed;
    release.resume();
    await releaseEnded;
    await harness.idle();
    // Both releases handed the events over (the second mark finds them marked, or settled).
    expect(release.calls()).toBe(2);

    expect(await members(audience)).toEqual(new Set(people.map(partnerIdOf)));
    expect(countsAdded(await statsTotals(harness, BATCH_PLATFORM), before)).toMatchObject({
      delivered: 4,
      pending: 0,
      superseded: 0,
      dlq: 0,
    });
  });
});

describe('a route that died between its pending write and its re-check, the sync having stored the mapping before that write', () => {
  it.each([
    ['the redelivery finds the pending events and releases them', false],
    ['the redelivery dies after its release too: the third receive finds their tallies', true],
  ])(
    '%s: each event delivered and counted once, nothing left pending',
    { timeout: 120_000 },
    async (_name, redeliveryDies) => {
      const prefix = `redelivered-${redeliveryDies ? 'twice' : 'once'}`;
      const people = users(prefix, 4);
      const audience = `aud-${prefix}`;
      const before = await statsTotals(harness, BATCH_PLATFORM);
      // The route's first receive: its lookup finds no mapping, then it stops before its pending write.
      const route = pauseFirst('putPending');
      const lookup = DynamoMappingLookup.prototype.lookup;
      let rechecks = 0;
      vi.spyOn(DynamoMappingLookup.prototype, 'lookup').mockImplementation(async function (
        this: DynamoMappingLookup,
        pairs,
        options,
      ) {
        if (options?.consistent && pairs.some((pair) => pair.dmpUserId.includes(prefix))) {
          rechecks += 1;
          // It dies after its pending writes and their counts, before its re-check.
          if (rechecks === 1) throw new Error('the route died before its re-check');
        }
        return lookup.call(this, pairs, options);
      });
      if (redeliveryDies) {
        // The redelivery releases the events, deletes one from pending, and dies.
        const remove = DynamoPopulationStore.prototype.deletePending;
        let died = false;
        vi.spyOn(DynamoPopulationStore.prototype, 'deletePending').mockImplementation(async function (
          this: DynamoPopulationStore,
          m,
        ) {
          const deleted = await remove.call(this, m);
          if (!died && m.dmpUserId.includes(prefix)) {
            died = true;
            throw new Error('the route died after its release');
          }
          return deleted;
        });
      }
      await harness.send(audienceEvent(people, { audience }));
      await route.reached;
      // Meanwhile the sync stores the partner ids and its release runs (nothing pending yet).
      const released = nextEnd('releasePending');
      await sync(harness, BATCH_PLATFORM, people);
      await released;
      route.resume();
      await harness.idle();

      expect(rechecks).toBe(redeliveryDies ? 3 : 2);
      expect(await members(audience)).toEqual(new Set(people.map(partnerIdOf)));
      for (const user of people) expect(await harness.store.listPending(BATCH_PLATFORM, user)).toEqual([]);
      // Counted once each: delivered, and no pending tally left to lapse in 14 days.
      expect(countsAdded(await statsTotals(harness, BATCH_PLATFORM), before)).toMatchObject({
        delivered: 4,
        pending: 0,
        lapsed: 0,
        superseded: 0,
        dlq: 0,
      });
    },
  );
});

describe('dmp forget while a release is between its hand-over and its delete', () => {
  it('keeps the deliver step’s count of the released event', { timeout: 120_000 }, async () => {
    const [user] = users('forget-released', 1) as [string];
    const audience = 'aud-forget-released';
    const before = await statsTotals(harness, BATCH_PLATFORM);
    await harness.send(audienceEvent([user], { audience }));
    await harness.idle();
    // The sync's release sends the pending add, marks it handed over, and stops before deleting it.
    const release = pauseFirst('deletePending');
    const settled = DynamoPopulationStore.prototype.settleEventTallies;
    const addSettled = deferred();
    vi.spyOn(DynamoPopulationStore.prototype, 'settleEventTallies').mockImplementation(async function (
      this: DynamoPopulationStore,
      tallies,
    ) {
      await settled.call(this, tallies);
      if (tallies.length > 0) addSettled.resolve();
    });
    const releaseEnded = nextEnd('releasePending');
    await sync(harness, BATCH_PLATFORM, [user]);
    await release.reached;
    await addSettled.promise;
    expect(countsAdded(await statsTotals(harness, BATCH_PLATFORM), before)).toMatchObject({
      delivered: 1,
      pending: 0,
    });

    // The user is forgotten now: its pending item is still there, its event counted delivered.
    const forgotten = await dmpAgainst(harness, ['forget', user, '--json']);
    expect(JSON.parse(forgotten.stdout)).toMatchObject({ pendingDeleted: 1 });
    release.resume();
    await releaseEnded;
    await harness.idle();
    const { removalsSent } = JSON.parse(forgotten.stdout) as { removalsSent: number };
    expect(countsAdded(await statsTotals(harness, BATCH_PLATFORM), before)).toMatchObject({
      delivered: 1 + removalsSent,
      pending: 0,
      lapsed: 0,
    });
  });
});

describe('a pending event whose 14 days pass', () => {
  it('is counted lapsed, not pending, shown lapsed by dmp why, and never released', {
    timeout: 120_000,
  }, async () => {
    const [helper, ...people] = users('lapsing', 4) as [string, ...string[]];
    const audience = 'aud-lapsing';
    // The audience's partner segment exists (a synced user's add created it).
    await sync(harness, BATCH_PLATFORM, [helper]);
    await harness.send(audienceEvent([helper], { audience }));
    await harness.idle();
    const segmentId = await segmentOf(harness, BATCH_PLATFORM, audience);
    const before = await statsTotals(harness, BATCH_PLATFORM);

    // Two events the route kept pending 15 days ago (its clock then; the table's now).
    const then = Date.now() - 15 * 86_400_000;
    const [old1, old2, fresh] = people as [string, string, string];
    const { held } = await harness.store.putPending(
      [old1, old2].map((dmpUserId) => ({
        platformId: BATCH_PLATFORM,
        segmentId,
        audienceId: audience,
        dmpUserId,
        op: 'add' as const,
        ts: then,
      })),
      then,
      PENDING_KEEP_SECONDS,
    );
    await harness.store.putPendingTallies(pendingTallies(held, { pending: 1 }), then);
    // One pending now, through the route.
    await harness.send(audienceEvent([fresh], { audience }));
    await harness.idle();
    expect(countsAdded(await statsTotals(harness, BATCH_PLATFORM), before)).toMatchObject({
      pending: 1,
      lapsed: 2,
    });
    const why = JSON.parse(
      (await dmpAgainst(harness, ['why', old1, '--platform', '99999', '--json'])).stdout,
    );
    expect(why.segments).toMatchObject([{ segmentId, state: 'lapsed' }]);

    // A newer event for a lapsed user (still unsynced): pending anew; the lapsed one stays lapsed.
    await harness.send(audienceEvent([old2], { audience, op: 'remove' }));
    await harness.idle();
    expect(countsAdded(await statsTotals(harness, BATCH_PLATFORM), before)).toMatchObject({
      pending: 2,
      lapsed: 2,
      superseded: 0,
    });

    // Their syncs: the live pending events are delivered, the lapsed one is not.
    await sync(harness, BATCH_PLATFORM, people);
    await harness.idle();
    expect(await members(audience)).toEqual(new Set([helper, fresh].map(partnerIdOf)));
    expect(countsAdded(await statsTotals(harness, BATCH_PLATFORM), before)).toMatchObject({
      delivered: 2,
      pending: 0,
      lapsed: 2,
      superseded: 0,
    });
  });
});

describe('partner calls', () => {
  it('are counted once each whose answer was recorded: a crash before the count leaves out only that invocation’s calls, a repeated write counts once', {
    timeout: 120_000,
  }, async () => {
    const people = users('calls-exact', 3000);
    await sync(harness, BATCH_PLATFORM, people);
    await harness.idle();
    const before = await statsTotals(harness, BATCH_PLATFORM);
    harness.stack.partner.reset();
    const write = DynamoPopulationStore.prototype.putTallies;
    const lost: number[] = [];
    let repeated = 0;
    vi.spyOn(DynamoPopulationStore.prototype, 'putTallies').mockImplementation(async function (
      this: DynamoPopulationStore,
      tallies,
    ) {
      const calls = tallies.filter((tally) => tally.recordId.startsWith('calls#'));
      // The first invocation dies between its partner calls and their count.
      if (calls.length > 0 && lost.length === 0) {
        lost.push(calls.reduce((sum, tally) => sum + (tally.counts.calls ?? 0), 0));
        throw new Error('crashed between the partner calls and their count');
      }
      // Another one's write is sent twice (an SDK retry after a lost answer).
      if (calls.length > 0 && repeated === 0) {
        repeated += 1;
        await write.call(this, tallies);
      }
      await write.call(this, tallies);
    });
    for (let index = 0; index < people.length; index += 1000)
      await harness.send(audienceEvent(people.slice(index, index + 1000), { audience: 'aud-calls-exact' }));
    await harness.idle();

    expect(lost[0]).toBeGreaterThan(0);
    expect(repeated).toBe(1);
    const made = harness.stack.partner.requests.filter(
      (r) => r.method === 'POST' && r.path === '/v1/segment' && !r.url.includes('title='),
    ).length;
    const added = countsAdded(await statsTotals(harness, BATCH_PLATFORM), before);
    expect(added.calls).toBe(made - (lost[0] ?? 0));
    expect(added.delivered).toBe(3000);
  });
});

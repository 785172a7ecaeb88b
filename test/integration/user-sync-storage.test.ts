import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { afterAll, describe, expect, it } from 'vitest';
import { countDynamoWork } from '../../bench/sync-work.ts';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from '../../local/endpoints.ts';
import { partnerIdDigest } from '../../src/sync/cookies.ts';
import { DynamoMappingStore, type SightingInput } from '../../src/sync/mapping-store.ts';
import {
  browserSyncedWith,
  debugTrace,
  expectGif,
  mintedCallback,
  nowSeconds,
  partnerCallback,
  SIGNED_PLATFORM,
  STATIC_PLATFORM,
  STATIC_TOKEN,
  useStack,
} from './support.ts';

/**
 * What a callback writes (docs/user-sync.md, "Storage and write cost"): one item per (user,
 * platform), conditional writes on the version read, no write for a repeat inside the interval,
 * and no write lost to a parallel callback.
 */

const harness = useStack();
const DAY = 86_400;
const iso = (seconds: number) => new Date(seconds * 1000).toISOString();
/** A mapping as a sync at `lastSeen` (seconds) left it, first seen and changed `historyDays` before. */
const seenAt = (
  lastSeen: number,
  { partnerUserId, version, historyDays }: { partnerUserId: string; version: number; historyDays: number },
) => ({
  partnerUserId,
  firstSeen: iso(lastSeen - historyDays * DAY),
  lastSeen: iso(lastSeen),
  lastChanged: iso(lastSeen - historyDays * DAY),
  expiresAt: lastSeen + 90 * DAY,
  version,
});
const callbackFor = (partnerId: string) =>
  harness.url(`/uid?userid=${encodeURIComponent(partnerId)}&pl=99999&plsec=${STATIC_TOKEN}`);

describe('parallel callbacks for the same user and platform', () => {
  // Changes by minted-token callbacks (a static-token callback may change an id once a day only).
  it('10 concurrent callbacks with different partner ids: all 200, one item, every write counted', async () => {
    const { browser, dmpUid } = await browserSyncedWith(harness, SIGNED_PLATFORM);
    const out = await mintedCallback(harness, browser, STATIC_PLATFORM);
    const ids = Array.from({ length: 10 }, (_, index) => `parallel-${index}-${dmpUid.slice(0, 6)}`);
    const responses = await Promise.all(ids.map((id) => browser.get(partnerCallback(out, id))));

    // None lost silently, none failed: every callback was answered with the pixel.
    expect(responses.map((response) => [response.status, response.reason])).toEqual(
      ids.map(() => [200, null]),
    );
    for (const response of responses) expectGif(response, 200);

    const items = (await harness.table.list(dmpUid)).filter((item) => item.platformId === STATIC_PLATFORM);
    expect(items).toHaveLength(1);
    const item = items[0]!;
    expect(ids).toContain(item.partnerUserId);
    // Each callback brought an id different from every other one, so each that answered 200
    // wrote exactly once: the version counts them all.
    expect(item.version).toBe(ids.length);
    expect(item.previousPartnerUserId).toBeDefined();
    expect(ids).toContain(item.previousPartnerUserId);
    expect(item.previousPartnerUserId).not.toBe(item.partnerUserId);
  });

  it('with debug=1 the outcomes add up: one stored, nine changed', async () => {
    const { browser, dmpUid } = await browserSyncedWith(harness, SIGNED_PLATFORM);
    const out = await mintedCallback(harness, browser, STATIC_PLATFORM);
    const ids = Array.from({ length: 10 }, (_, index) => `dbgpar-${index}-${dmpUid.slice(0, 6)}`);
    const traces = (
      await Promise.all(ids.map((id) => browser.get(`${partnerCallback(out, id)}&debug=1`)))
    ).map(debugTrace);
    expect(traces.map((trace) => trace.status)).toEqual(ids.map(() => 200));
    const outcomes = traces.map((trace) => trace.outcome).sort();
    expect(outcomes).toEqual([
      'changed',
      'changed',
      'changed',
      'changed',
      'changed',
      'changed',
      'changed',
      'changed',
      'changed',
      'stored',
    ]);
    expect((await harness.table.get(dmpUid, STATIC_PLATFORM))?.version).toBe(10);
  });

  it('10 concurrent identical callbacks: one write, the rest cost nothing', async () => {
    const { browser, dmpUid } = await browserSyncedWith(harness, SIGNED_PLATFORM);
    const id = `same-${dmpUid.slice(0, 8)}`;
    const responses = await Promise.all(Array.from({ length: 10 }, () => browser.get(callbackFor(id))));
    for (const response of responses) expectGif(response, 200);
    expect(await harness.table.get(dmpUid, STATIC_PLATFORM)).toMatchObject({ partnerUserId: id, version: 1 });
  });
});

describe('a callback again inside the resync interval', () => {
  it('the same callback twice: no write (version and lastSeen unchanged)', async () => {
    const { browser, dmpUid } = await browserSyncedWith(harness, SIGNED_PLATFORM);
    expectGif(await browser.get(callbackFor('resync-same-1')), 200);
    const first = await harness.table.get(dmpUid, STATIC_PLATFORM);
    expect(first).toMatchObject({ partnerUserId: 'resync-same-1', version: 1 });

    expectGif(await browser.get(callbackFor('resync-same-1')), 200);
    expect(await harness.table.get(dmpUid, STATIC_PLATFORM)).toEqual(first);

    const debug = debugTrace(await browser.get(`${callbackFor('resync-same-1')}&debug=1`));
    expect(debug.outcome).toBe('unchanged');
    expect(await harness.table.get(dmpUid, STATIC_PLATFORM)).toEqual(first);
  });

  it('an earlier sighting (an hour ago) seen again: nothing written, lastSeen stays', async () => {
    const { browser, dmpUid } = await browserSyncedWith(harness, SIGNED_PLATFORM);
    const hourAgo = nowSeconds() - 3600;
    const seeded = seenAt(hourAgo, { partnerUserId: 'resync-seeded-1', version: 3, historyDays: 10 });
    await harness.table.put(dmpUid, STATIC_PLATFORM, seeded);
    expectGif(await browser.get(callbackFor('resync-seeded-1')), 200);
    expect(await harness.table.get(dmpUid, STATIC_PLATFORM)).toMatchObject(seeded);
  });

  it('a different partner id: version+1, previousPartnerUserId = old id, lastChanged and lastSeen now', async () => {
    const { browser, dmpUid } = await browserSyncedWith(harness, SIGNED_PLATFORM);
    const hourAgo = nowSeconds() - 3600;
    const seeded = seenAt(hourAgo, { partnerUserId: 'old-partner-id-1', version: 4, historyDays: 10 });
    const out = await mintedCallback(harness, browser, STATIC_PLATFORM);
    await harness.table.put(dmpUid, STATIC_PLATFORM, seeded);
    const before = nowSeconds();
    expectGif(await browser.get(partnerCallback(out, 'new-partner-id-1')), 200);
    const after = nowSeconds();

    const item = (await harness.table.get(dmpUid, STATIC_PLATFORM))!;
    expect(item).toMatchObject({
      partnerUserId: 'new-partner-id-1',
      previousPartnerUserId: 'old-partner-id-1',
      firstSeen: seeded.firstSeen,
      version: 5,
    });
    for (const field of ['lastChanged', 'lastSeen'] as const) {
      const seconds = Date.parse(item[field]) / 1000;
      expect(seconds).toBeGreaterThanOrEqual(before);
      expect(seconds).toBeLessThanOrEqual(after);
    }
    expect(item.expiresAt).toBe(Date.parse(item.lastSeen) / 1000 + 90 * DAY);

    // Over HTTP only: the change of an id stored a moment ago is a write too.
    expectGif(await browser.get(partnerCallback(out, 'new-partner-id-2')), 200);
    expect(await harness.table.get(dmpUid, STATIC_PLATFORM)).toMatchObject({
      partnerUserId: 'new-partner-id-2',
      previousPartnerUserId: 'new-partner-id-1',
      version: 6,
    });
  });

  it('after the resync interval the same id refreshes lastSeen and expiry only (version+1)', async () => {
    const { browser, dmpUid } = await browserSyncedWith(harness, SIGNED_PLATFORM);
    const longAgo = nowSeconds() - 10 * DAY;
    const seeded = seenAt(longAgo, { partnerUserId: 'refresh-me-1', version: 2, historyDays: 30 });
    await harness.table.put(dmpUid, STATIC_PLATFORM, seeded);
    const before = nowSeconds();
    expectGif(await browser.get(callbackFor('refresh-me-1')), 200);
    const item = (await harness.table.get(dmpUid, STATIC_PLATFORM))!;
    expect(item).toMatchObject({
      partnerUserId: 'refresh-me-1',
      firstSeen: seeded.firstSeen,
      lastChanged: seeded.lastChanged,
      version: 3,
    });
    expect(item.previousPartnerUserId).toBeUndefined();
    expect(Date.parse(item.lastSeen) / 1000).toBeGreaterThanOrEqual(before);
    expect(item.expiresAt).toBe(Date.parse(item.lastSeen) / 1000 + 90 * DAY);
  });

  it('an expired item not yet removed by TTL is replaced as a fresh first sighting', async () => {
    const { browser, dmpUid } = await browserSyncedWith(harness, SIGNED_PLATFORM);
    const longAgo = nowSeconds() - 100 * DAY;
    await harness.table.put(dmpUid, STATIC_PLATFORM, {
      partnerUserId: 'expired-id-1',
      previousPartnerUserId: 'even-older-id',
      firstSeen: iso(longAgo),
      lastSeen: iso(longAgo),
      lastChanged: iso(longAgo),
      expiresAt: longAgo + 90 * DAY,
      version: 7,
    });
    // An expired mapping does not count: 99999 is due again.
    browser.deleteCookie('dmp_sa');
    const debug = debugTrace(await browser.get(harness.url('/sync?pl=99999&debug=1')));
    expect(debug).toMatchObject({ status: 302, platformId: STATIC_PLATFORM });

    const before = nowSeconds();
    expectGif(await browser.get(callbackFor('expired-id-1')), 200);
    const item = (await harness.table.get(dmpUid, STATIC_PLATFORM))!;
    // Replaced whole by the new mapping's PutItem: a fresh item, version 1.
    expect(item).toMatchObject({ partnerUserId: 'expired-id-1', version: 1 });
    expect(item.previousPartnerUserId).toBeUndefined();
    expect(Date.parse(item.firstSeen) / 1000).toBeGreaterThanOrEqual(before);
    expect(item.expiresAt).toBeGreaterThan(nowSeconds() + 89 * DAY);
  });
});

describe('an id change in one call: the dmp_ss digest names the stored id', () => {
  it('a callback with another id than the cookie names goes straight to the change', async () => {
    const { browser, dmpUid } = await browserSyncedWith(harness, SIGNED_PLATFORM);
    const out = await mintedCallback(harness, browser, STATIC_PLATFORM);
    const first = debugTrace(await browser.get(`${partnerCallback(out, 'digest-old-1')}&debug=1`));
    expect(first.outcome).toBe('stored');
    // The cookie names the stored id by its digest, never in clear.
    const synced = browser.cookie('dmp_ss')!;
    expect(synced).toContain(`${STATIC_PLATFORM}:`);
    expect(synced).toContain(partnerIdDigest(STATIC_PLATFORM, dmpUid, 'digest-old-1'));
    expect(synced).not.toContain('digest-old-1');
    expect(synced).not.toContain(dmpUid);

    // The partner says another id (the same minted token: it is valid for an hour).
    const changed = debugTrace(await browser.get(`${partnerCallback(out, 'digest-new-2')}&debug=1`));
    expect(changed.outcome).toBe('changed');
    expect(changed.trace).toContainEqual({
      step: 'store',
      detail: 'first write chosen from dmp_ss: the stored id has another digest: change',
      platformId: STATIC_PLATFORM,
    });
    expect(await harness.table.get(dmpUid, STATIC_PLATFORM)).toMatchObject({
      partnerUserId: 'digest-new-2',
      previousPartnerUserId: 'digest-old-1',
      version: 2,
    });
  });

  describe('the store, counted call by call (a client of its own on the local DynamoDB)', () => {
    let client: DynamoDBClient | undefined;
    afterAll(() => client?.destroy());
    const counted = () => {
      client ??= new DynamoDBClient({
        endpoint: harness.stack.dynamodbEndpoint,
        region: LOCAL_REGION,
        credentials: LOCAL_CREDENTIALS,
      });
      const store = new DynamoMappingStore(client, harness.table.tableName);
      const work = countDynamoWork(client);
      return { store, work };
    };
    const sighting = (dmpUserId: string, partnerUserId: string, extra: Partial<SightingInput> = {}) => ({
      dmpUserId,
      platformId: STATIC_PLATFORM,
      partnerUserId,
      nowSeconds: nowSeconds(),
      ttlSeconds: 90 * DAY,
      refreshAfterSeconds: 6 * DAY,
      expected: 'changed' as const,
      ...extra,
    });
    const staticLimits = { assurance: 'static', staticChangeIntervalSeconds: DAY } as const;

    it('an id change the cookie predicted: one UpdateItem, one write unit, no read', async () => {
      const { store, work } = counted();
      const user = `count-change-${nowSeconds()}`;
      await harness.table.put(
        user,
        STATIC_PLATFORM,
        seenAt(nowSeconds() - 3600, { partnerUserId: 'count-old', version: 3, historyDays: 10 }),
      );
      work.take();
      expect(await store.recordSighting(sighting(user, 'count-new'))).toBe('changed');
      const taken = work.take();
      work.detach();
      expect(taken).toMatchObject({ calls: { UpdateItemCommand: 1 }, readUnits: 0, writeUnits: 1 });
      expect(await harness.table.get(user, STATIC_PLATFORM)).toMatchObject({
        partnerUserId: 'count-new',
        previousPartnerUserId: 'count-old',
        version: 4,
      });
    });

    it('a wrong guess is only a call more: the same id, no item, a verified id, a forget marker', async () => {
      const { store, work } = counted();
      const user = `count-wrong-${nowSeconds()}`;
      // The same id (a stale digest): the change's condition fails, the item is read: unchanged.
      await harness.table.put(
        user,
        STATIC_PLATFORM,
        seenAt(nowSeconds() - 3600, { partnerUserId: 'same-id', version: 2, historyDays: 10 }),
      );
      const before = await harness.table.get(user, STATIC_PLATFORM);
      work.take();
      expect(await store.recordSighting(sighting(user, 'same-id'))).toBe('unchanged');
      expect(work.take().calls).toEqual({ UpdateItemCommand: 1, GetItemCommand: 1 });
      expect(await harness.table.get(user, STATIC_PLATFORM)).toEqual(before);

      // No item at all: the creation follows the read.
      const fresh = `${user}-fresh`;
      expect(await store.recordSighting(sighting(fresh, 'brand-new'))).toBe('stored');
      expect(work.take().calls).toEqual({ UpdateItemCommand: 1, GetItemCommand: 1, PutItemCommand: 1 });

      // A static-token change of a verified id: refused by the condition, then by the decision.
      const verified = `${user}-verified`;
      await harness.table.put(verified, STATIC_PLATFORM, {
        ...seenAt(nowSeconds() - 3 * DAY, { partnerUserId: 'verified-id', version: 1, historyDays: 10 }),
        verifiedAt: new Date().toISOString(),
      } as Parameters<typeof harness.table.put>[2]);
      expect(await store.recordSighting(sighting(verified, 'planted-id', { limits: staticLimits }))).toBe(
        'static_token_cannot_replace',
      );
      // Changed an hour ago: a static-token change waits a day.
      const recent = `${user}-recent`;
      await harness.table.put(recent, STATIC_PLATFORM, {
        ...seenAt(nowSeconds() - 3600, { partnerUserId: 'recent-id', version: 1, historyDays: 0 }),
      });
      expect(await store.recordSighting(sighting(recent, 'planted-id', { limits: staticLimits }))).toBe(
        'static_token_rate_limited',
      );
      expect(await harness.table.get(verified, STATIC_PLATFORM)).toMatchObject({
        partnerUserId: 'verified-id',
      });
      expect(await harness.table.get(recent, STATIC_PLATFORM)).toMatchObject({ partnerUserId: 'recent-id' });

      // A privacy request's forget marker: refused.
      const forgotten = `${user}-forgotten`;
      await store.putForgetMarkers(forgotten, [STATIC_PLATFORM], nowSeconds() + DAY);
      expect(await store.recordSighting(sighting(forgotten, 'any-id'))).toBe('user_forgotten');
      work.detach();
    });
  });
});

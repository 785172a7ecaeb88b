import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { DynamoDBRecord, DynamoDBStreamEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from '../../local/endpoints.ts';
import { MAPPING_TABLE } from '../../src/infra/resources.ts';
import { REFRESHED_ATTRIBUTE } from '../../src/sync/mapping.ts';
import { DynamoMappingStore, type SightingInput } from '../../src/sync/mapping-store.ts';
import {
  audienceEvent,
  BATCH_PLATFORM,
  partnerIdOf,
  segmentOf,
  usePopulationStack,
  users,
} from './population-support.ts';

/**
 * The mapping table's stream reaches the release function only for writes that can release
 * something (RELEASE_STREAM_FILTERS, applied by the local stream event source as Lambda applies
 * them): a new or changed partner id, not a refresh of the same one. Writes go through the real
 * mapping store and the streams proxy; the release handler is the real one, counted.
 */

const delivered: DynamoDBRecord[] = [];
const harness = usePopulationStack({
  wrapFunction: (key, handler) =>
    key !== 'releasePending'
      ? handler
      : async (event, context) => {
          delivered.push(...(event as DynamoDBStreamEvent).Records);
          return handler(event, context);
        },
});

let client: DynamoDBClient;
let store: DynamoMappingStore;
beforeAll(() => {
  client = new DynamoDBClient({
    endpoint: harness.stack.dynamodbEndpoint,
    region: LOCAL_REGION,
    credentials: LOCAL_CREDENTIALS,
  });
  store = new DynamoMappingStore(client, MAPPING_TABLE.localName);
});
afterAll(() => client?.destroy());

const DAY = 86_400;
const now = () => Math.floor(Date.now() / 1000);
const sighting = (dmpUserId: string, partnerUserId: string, nowSeconds: number, ttlSeconds = 30 * DAY) =>
  ({
    dmpUserId,
    platformId: BATCH_PLATFORM,
    partnerUserId,
    nowSeconds,
    ttlSeconds,
    refreshAfterSeconds: DAY,
  }) satisfies SightingInput;

/** The records the release function received for `dmpUserId` since `from`. */
const receivedFor = (dmpUserId: string, from: number) =>
  delivered
    .slice(from)
    .filter((record) => record.dynamodb?.Keys?.['pk']?.S === `user#${dmpUserId}`)
    .map((record) => ({ event: record.eventName, id: record.dynamodb?.NewImage?.['partnerUserId']?.S }));

describe('the release stream filter', () => {
  it('invokes the release function for a new and a changed partner id, never for a refresh', async () => {
    const [user] = users('filter-a', 1) as [string];
    const t0 = now() - 10 * DAY;
    let mark = delivered.length;
    expect(await store.recordSighting(sighting(user, 'first', t0))).toBe('stored');
    await harness.idle();
    expect(receivedFor(user, mark)).toEqual([{ event: 'INSERT', id: 'first' }]);

    // Both refresh paths: the cookie's guess (one conditional update) and the read-then-decide.
    mark = delivered.length;
    expect(
      await store.recordSighting({ ...sighting(user, 'first', t0 + 2 * DAY), expected: 'refresh' }),
    ).toBe('refreshed');
    expect(await store.recordSighting(sighting(user, 'first', t0 + 4 * DAY))).toBe('refreshed');
    await harness.idle();
    expect(receivedFor(user, mark)).toEqual([]);
    expect((await harness.mappings.get(user, BATCH_PLATFORM))?.[REFRESHED_ATTRIBUTE]).toBe(true);

    // Both change paths: the read-then-decide, and the cookie's guess (the change as first write).
    mark = delivered.length;
    expect(await store.recordSighting(sighting(user, 'second', t0 + 5 * DAY))).toBe('changed');
    await harness.idle();
    expect(receivedFor(user, mark)).toEqual([{ event: 'MODIFY', id: 'second' }]);
    expect((await harness.mappings.get(user, BATCH_PLATFORM))?.[REFRESHED_ATTRIBUTE]).toBeUndefined();
    expect(await store.recordSighting(sighting(user, 'second', t0 + 7 * DAY))).toBe('refreshed');
    mark = delivered.length;
    expect(
      await store.recordSighting({ ...sighting(user, 'third', t0 + 8 * DAY), expected: 'changed' }),
    ).toBe('changed');
    await harness.idle();
    expect(receivedFor(user, mark)).toEqual([{ event: 'MODIFY', id: 'third' }]);
    expect((await harness.mappings.get(user, BATCH_PLATFORM))?.[REFRESHED_ATTRIBUTE]).toBeUndefined();
  });

  it('releases pending events when a sync replaces an expired mapping that was last refreshed', async () => {
    const [user] = users('filter-b', 1) as [string];
    // A mapping stored 12 days ago, refreshed 9 days ago for 8 days: expired a day ago.
    expect(await store.recordSighting(sighting(user, partnerIdOf(user), now() - 12 * DAY))).toBe('stored');
    expect(await store.recordSighting(sighting(user, partnerIdOf(user), now() - 9 * DAY, 8 * DAY))).toBe(
      'refreshed',
    );
    await harness.idle();
    // The route finds no live mapping: the user's add waits.
    const before = await harness.totals(BATCH_PLATFORM);
    await harness.send(audienceEvent([user], { audience: 'aud-filter-b' }));
    await harness.idle();
    expect((await harness.totals(BATCH_PLATFORM)).pending - before.pending).toBe(1);

    // The same id seen again replaces the expired item whole: no refresh mark, so it is released.
    const mark = delivered.length;
    expect(await store.recordSighting(sighting(user, partnerIdOf(user), now()))).toBe('stored');
    await harness.idle();
    expect(receivedFor(user, mark)).toEqual([{ event: 'MODIFY', id: partnerIdOf(user) }]);
    const segment = await segmentOf(harness, BATCH_PLATFORM, 'aud-filter-b');
    expect(harness.stack.partner.members(segment)).toEqual([partnerIdOf(user)]);
    const after = await harness.totals(BATCH_PLATFORM);
    expect(after.pending - before.pending).toBe(0);
    expect(after.delivered - before.delivered).toBe(1);
  });

  it('keeps replay guards, forget markers and deletions from the release function', async () => {
    const [user] = users('filter-c', 1) as [string];
    expect(await store.recordSighting(sighting(user, 'kept', now()))).toBe('stored');
    await harness.idle();
    const mark = delivered.length;
    expect(await store.claimReplayGuard(BATCH_PLATFORM, `digest-${user}`, now() + 600)).toBe(true);
    expect(await store.deleteUser(user)).toBe(1);
    await store.putForgetMarkers(user, [BATCH_PLATFORM], now() + DAY);
    await harness.idle();
    expect(delivered.slice(mark)).toEqual([]);
  });
});

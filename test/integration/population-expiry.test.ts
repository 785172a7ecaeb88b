import { describe, expect, it } from 'vitest';
import { EXPIRY_SCHEDULE_NAME } from '../../src/infra/population.ts';
import {
  audienceEvent,
  BATCH_PLATFORM,
  partnerIdOf,
  SINGLE_PLATFORM,
  segmentOf,
  sync,
  usePopulationStack,
  users,
} from './population-support.ts';

/**
 * Removals at expiry on the local stack: the reference partner takes removal calls but no lifetime
 * (both its platforms), so the service sends the removal when a membership's `ttlSeconds` ends.
 * Time is driven by the events' own `ts` (the DMP's decision time, minutes in the past) and by
 * running the sweep's schedule on request: no sleeps.
 */

const harness = usePopulationStack();
const partner = () => harness.stack.partner;
const minutesAgo = (minutes: number) => new Date(Date.now() - minutes * 60_000).toISOString();

async function members(platformId: number, audienceId: string): Promise<Set<string>> {
  return new Set(partner().members(await segmentOf(harness, platformId, audienceId)));
}

describe('population: removals at expiry', () => {
  it('removes an expired membership at the partner; a newer add or removal wins', async () => {
    const people = users('expiry-b', 30);
    await sync(harness, BATCH_PLATFORM, people);
    await harness.idle();
    const before = await harness.totals(BATCH_PLATFORM);

    // Added 10 minutes ago for 60 s: expired. Users 0-9 were added again a minute ago for an hour
    // (the expiry moves), users 10-14 removed by the DMP 5 minutes ago (nothing left to expire).
    const addedAt = minutesAgo(10);
    await harness.send(audienceEvent(people, { audience: 'aud-expiry', ts: addedAt, ttlSeconds: 60 }));
    await harness.idle();
    await harness.send(
      audienceEvent(people.slice(0, 10), { audience: 'aud-expiry', ts: minutesAgo(1), ttlSeconds: 3600 }),
    );
    await harness.send(
      audienceEvent(people.slice(10, 15), { audience: 'aud-expiry', op: 'remove', ts: minutesAgo(5) }),
    );
    await harness.idle();
    expect(await members(BATCH_PLATFORM, 'aud-expiry')).toEqual(
      new Set([...people.slice(0, 10), ...people.slice(15)].map(partnerIdOf)),
    );
    const removesBefore = partner().requests.filter((r) => r.method === 'DELETE').length;

    await harness.stack.runSchedule(EXPIRY_SCHEDULE_NAME);
    await harness.idle();

    expect(await members(BATCH_PLATFORM, 'aud-expiry')).toEqual(
      new Set(people.slice(0, 10).map(partnerIdOf)),
    );
    const stored = await harness.store.membershipsOf(BATCH_PLATFORM, people[20] as string);
    // The removal at expiry carries the add's ts: any later event of the DMP outranks it.
    expect(stored).toMatchObject([{ op: 'remove', ts: Date.parse(addedAt) }]);
    const after = await harness.totals(BATCH_PLATFORM);
    // 15 removals at expiry, counted apart: the 45 accepted events stay delivered, nothing superseded.
    expect(after.expired - before.expired).toBe(15);
    expect(after.delivered - before.delivered).toBe(45);
    expect(after.superseded - before.superseded).toBe(0);

    // Another sweep (a repeated invocation) sends nothing again.
    const deletes = partner().requests.filter((r) => r.method === 'DELETE').length;
    expect(deletes).toBeGreaterThan(removesBefore);
    await harness.stack.runSchedule(EXPIRY_SCHEDULE_NAME);
    await harness.idle();
    expect(partner().requests.filter((r) => r.method === 'DELETE').length).toBe(deletes);
    expect((await harness.totals(BATCH_PLATFORM)).expired - before.expired).toBe(15);
  });

  it('sends one removal call per expired user to a single-mode partner', async () => {
    const people = users('expiry-s', 4);
    await sync(harness, SINGLE_PLATFORM, people);
    await harness.idle();
    await harness.send(
      audienceEvent(people, {
        audience: 'aud-expiry-s',
        platforms: [SINGLE_PLATFORM],
        ts: minutesAgo(3),
        ttlSeconds: 60,
      }),
    );
    await harness.idle();
    expect(await members(SINGLE_PLATFORM, 'aud-expiry-s')).toEqual(new Set(people.map(partnerIdOf)));

    await harness.stack.runSchedule(EXPIRY_SCHEDULE_NAME);
    await harness.idle();
    expect(await members(SINGLE_PLATFORM, 'aud-expiry-s')).toEqual(new Set());
  });
});

import { describe, expect, it } from 'vitest';
import { type DeliveryRecord, deliverRecords } from '../../src/population/deliver-service.ts';
import type { Membership } from '../../src/population/membership.ts';
import { IN_FLIGHT_MARGIN_MS, type PlacedMembership } from '../../src/population/progress.ts';
import {
  adds,
  audienceEvent,
  BATCH_PLATFORM,
  deliverDeps,
  partnerIdOf,
  segmentOf,
  sync,
  usePopulationStack,
  users,
} from './population-support.ts';

/**
 * Another invocation stored intents and may still be calling the partner with them (its calls end
 * by the deadline it stored), or it died long ago without settling them. A newer event waits until
 * the older call cannot land any more; the same event (a second message carrying it, as a DLQ
 * redrive's new message does) takes over an intent given up on, and only then.
 */

const harness = usePopulationStack();

const placed = (memberships: readonly Membership[], recordId: string): PlacedMembership[] =>
  memberships.map((m, index) => ({ ...m, recordId, index }));

describe('an older call that may still land', () => {
  it('holds back a newer event until the older call cannot land, then sends it; counts each once', async () => {
    const people = users('in-flight', 5);
    await sync(harness, BATCH_PLATFORM, [...people, 'in-flight-warm-up']);
    await harness.send(audienceEvent(['in-flight-warm-up'], { audience: 'aud-in-flight' }));
    await harness.idle();
    const segment = await segmentOf(harness, BATCH_PLATFORM, 'aud-in-flight');
    const before = await harness.totals(BATCH_PLATFORM);
    const ts = Date.now() - 10_000;
    const older = adds(people, segment, 'aud-in-flight', ts);

    // Message A's invocation stored its intents and is calling the partner until now + 20 s.
    const now = Date.now();
    await harness.store.recordIntents(placed(older, 'in-flight-a'), now, { callsEndBy: now + 20_000 });
    const removal: DeliveryRecord = {
      id: 'in-flight-b',
      lastReceive: false,
      memberships: older.map((m) => ({ ...m, op: 'remove', ts: ts + 1000 })),
    };
    const held = await deliverRecords([removal], deliverDeps(harness), Date.now() + 50_000);
    expect([...held.failedRecordIds]).toEqual(['in-flight-b']);
    expect(held.calls).toBe(0);
    expect(held.retryAfterMs).toBeGreaterThan(15_000);
    expect(held.retryAfterMs).toBeLessThanOrEqual(20_000 + IN_FLIGHT_MARGIN_MS);
    // Its intents stand: A's add, redelivered, is refused against them.
    for (const user of people)
      expect((await harness.store.membershipsOf(BATCH_PLATFORM, user))[0]).toMatchObject({
        op: 'remove',
        acked: false,
      });

    // A settles its call (its progress says so): the removal goes at once.
    await harness.store.recordProgress([{ recordId: 'in-flight-a', statuses: 'ddddd' }], Date.now());
    const sent = await deliverRecords([removal], deliverDeps(harness), Date.now() + 50_000);
    expect(sent.failedRecordIds.size).toBe(0);
    expect(sent.delivered).toBe(5);
    expect(harness.stack.partner.members(segment)).not.toContain(partnerIdOf(people[1] as string));
    const after = await harness.totals(BATCH_PLATFORM);
    expect(after.delivered - before.delivered).toBe(5);
  });

  it('takes over the same event from a message that gave up on it, never from one that may be calling', async () => {
    const people = users('take-over', 4);
    await sync(harness, BATCH_PLATFORM, people);
    await harness.send(audienceEvent(people.slice(0, 1), { audience: 'aud-take-over' }));
    await harness.idle();
    const segment = await segmentOf(harness, BATCH_PLATFORM, 'aud-take-over');
    const before = await harness.totals(BATCH_PLATFORM);
    const event = adds(people.slice(1), segment, 'aud-take-over', Date.now() - 5_000);

    // Message A (in its DLQ now) stored the intents long ago and never settled them.
    const longAgo = Date.now() - 3_600_000;
    await harness.store.recordIntents(placed(event, 'take-over-a'), longAgo, {
      callsEndBy: longAgo + 55_000,
    });
    const redriven: DeliveryRecord = { id: 'take-over-b', lastReceive: false, memberships: event };
    const result = await deliverRecords([redriven], deliverDeps(harness), Date.now() + 50_000);
    expect(result.failedRecordIds.size).toBe(0);
    expect(result.delivered).toBe(3);
    expect(new Set(harness.stack.partner.members(segment))).toEqual(new Set(people.map(partnerIdOf)));
    const stored = (await harness.store.membershipsOf(BATCH_PLATFORM, people[1] as string))[0];
    expect(stored).toMatchObject({ by: 'take-over-b', acked: true });
    const after = await harness.totals(BATCH_PLATFORM);
    expect(after.delivered - before.delivered).toBe(3);

    // A third message with the same event now finds it settled by B: not sent, not counted.
    const repeat = await deliverRecords(
      [{ id: 'take-over-c', lastReceive: false, memberships: event }],
      deliverDeps(harness),
      Date.now() + 50_000,
    );
    expect(repeat).toMatchObject({ delivered: 0, calls: 0 });
    expect(repeat.failedRecordIds.size).toBe(0);
    expect((await harness.totals(BATCH_PLATFORM)).delivered - before.delivered).toBe(3);

    // The same event stored by a message whose calls may still be under way: held back.
    const fresh = adds(users('take-over-busy', 2), segment, 'aud-take-over', Date.now());
    await sync(
      harness,
      BATCH_PLATFORM,
      fresh.map((m) => m.dmpUserId),
    );
    await harness.store.recordIntents(placed(fresh, 'take-over-d'), Date.now(), {
      callsEndBy: Date.now() + 20_000,
    });
    const busy = await deliverRecords(
      [{ id: 'take-over-e', lastReceive: false, memberships: fresh }],
      deliverDeps(harness),
      Date.now() + 50_000,
    );
    expect([...busy.failedRecordIds]).toEqual(['take-over-e']);
    expect(busy.calls).toBe(0);
  });
});

import { type DynamoDBClient, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { describe, expect, it } from 'vitest';
import { POPULATION_TABLE } from '../../src/infra/resources.ts';
import { type DeliveryRecord, deliverRecords } from '../../src/population/deliver-service.ts';
import { DynamoPopulationStore } from '../../src/population/dynamo-store.ts';
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
 * A deliver invocation short of time (under load its intent writes take half of it) finishes what
 * it started and hands back the rest at once: no record is half done and lost, nothing is sent
 * that was not stored first, and the records handed back are delivered on their next receive.
 * The clock is the test's: each intent write takes 100 ms of it, so exactly 300 writes start
 * before half of the 60 s is used.
 */

const harness = usePopulationStack();

describe('deliver step bounded by its time', () => {
  it('completes the records it started and returns the unstarted ones, which come back whole', async () => {
    await sync(harness, BATCH_PLATFORM, ['time-bound-warm-up']);
    await harness.send(audienceEvent(['time-bound-warm-up'], { audience: 'aud-time-bound' }));
    await harness.idle();
    const segment = await segmentOf(harness, BATCH_PLATFORM, 'aud-time-bound');
    const before = await harness.totals(BATCH_PLATFORM);

    const people = users('time-bound', 500);
    const ts = Date.now();
    const records: DeliveryRecord[] = Array.from({ length: 5 }, (_, record) => ({
      id: `time-bound-record-${record}`,
      lastReceive: false,
      memberships: adds(people.slice(record * 100, (record + 1) * 100), segment, 'aud-time-bound', ts),
    }));

    let clock = Date.now();
    const real = harness.store as unknown as { client: DynamoDBClient };
    const slowWrites = {
      send: (command: Parameters<DynamoDBClient['send']>[0]) => {
        if (command instanceof UpdateItemCommand) clock += 100;
        return real.client.send(command as never);
      },
    } as unknown as DynamoDBClient;
    const store = new DynamoPopulationStore(slowWrites, POPULATION_TABLE.localName);
    const deps = deliverDeps(harness, { state: store, accounting: store, now: () => clock });

    const first = await deliverRecords(records, deps, clock + 60_000);

    // Three records started (300 intents in 30 s of the clock), sent and settled; two untouched.
    const returned = ['time-bound-record-3', 'time-bound-record-4'];
    expect([...first.failedRecordIds].sort()).toEqual(returned);
    expect([...first.unstartedRecordIds].sort()).toEqual(returned);
    expect(first.delivered).toBe(300);
    expect(new Set(harness.stack.partner.members(segment))).toEqual(
      new Set(['time-bound-warm-up', ...people.slice(0, 300)].map(partnerIdOf)),
    );
    expect(await harness.store.membershipsOf(BATCH_PLATFORM, people[300] as string)).toEqual([]);

    // Their next receive delivers them; every membership is counted once.
    const second = await deliverRecords(
      records.filter((record) => returned.includes(record.id)),
      deps,
      clock + 60_000,
    );
    expect(second.failedRecordIds.size).toBe(0);
    expect(new Set(harness.stack.partner.members(segment))).toEqual(
      new Set(['time-bound-warm-up', ...people].map(partnerIdOf)),
    );
    const after = await harness.totals(BATCH_PLATFORM);
    expect(after.delivered - before.delivered).toBe(500);
    expect(after.dlq - before.dlq).toBe(0);
  });
});

describe('deliver step against a table that times out', () => {
  it('sends what it could store, and hands back only the record whose intent write failed', async () => {
    await sync(harness, BATCH_PLATFORM, ['time-out-warm-up']);
    await harness.send(audienceEvent(['time-out-warm-up'], { audience: 'aud-time-out' }));
    await harness.idle();
    const segment = await segmentOf(harness, BATCH_PLATFORM, 'aud-time-out');
    const people = users('time-out', 30);
    const records: DeliveryRecord[] = Array.from({ length: 3 }, (_, record) => ({
      id: `time-out-record-${record}`,
      lastReceive: false,
      memberships: adds(people.slice(record * 10, (record + 1) * 10), segment, 'aud-time-out', Date.now()),
    }));
    const real = harness.store as unknown as { client: DynamoDBClient };
    // The write of one membership of the second record times out (after the SDK's own retries).
    const flaky = {
      send: (command: Parameters<DynamoDBClient['send']>[0]) => {
        const key = (command.input as { Key?: { pk?: { S?: string } } }).Key?.pk?.S ?? '';
        if (command instanceof UpdateItemCommand && key.endsWith(people[15] as string)) {
          return Promise.reject(Object.assign(new Error('socket timed out'), { name: 'TimeoutError' }));
        }
        return real.client.send(command as never);
      },
    } as unknown as DynamoDBClient;
    const store = new DynamoPopulationStore(flaky, POPULATION_TABLE.localName);

    const result = await deliverRecords(
      records,
      deliverDeps(harness, { state: store, accounting: store }),
      Date.now() + 50_000,
    );
    expect([...result.failedRecordIds]).toEqual(['time-out-record-1']);
    expect(result.unstartedRecordIds.size).toBe(0);
    expect(result.delivered).toBe(29);
    expect(harness.stack.partner.members(segment)).not.toContain(partnerIdOf(people[15] as string));

    // The next receive of that record (the table answering again) settles the rest of it.
    const again = await deliverRecords(
      records.filter((record) => record.id === 'time-out-record-1'),
      deliverDeps(harness),
      Date.now() + 50_000,
    );
    expect(again).toMatchObject({ delivered: 1 });
    expect(new Set(harness.stack.partner.members(segment))).toEqual(
      new Set(['time-out-warm-up', ...people].map(partnerIdOf)),
    );
  });
});

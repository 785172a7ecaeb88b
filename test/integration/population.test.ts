import { describe, expect, it } from 'vitest';
import {
  audienceEvent,
  BATCH_PLATFORM,
  dmpAgainst,
  partnerIdOf,
  SINGLE_PLATFORM,
  segmentOf,
  sync,
  usePopulationStack,
  users,
} from './population-support.ts';

/**
 * Segment population end to end on the local stack: audience events on the queue, the real route
 * and deliver handlers behind Lambda's SQS event source, the reference partner holding what it was
 * sent. Every test ends with a conservation check: each user accounted for once, the partner
 * holding exactly what it should.
 */

const harness = usePopulationStack();

const partner = () => harness.stack.partner;

async function held(platformId: number, audienceId: string) {
  const segment = await segmentOf(harness, platformId, audienceId);
  const state = partner()
    .population.state()
    .find((entry) => String(entry.segment_id) === segment);
  return { segment, members: new Set(partner().members(segment)), state };
}

describe('population, micro batch (the seed: POST /v1/segment with a JSON array)', () => {
  it('delivers 3,000 users in at most 1.05 calls per 1,000 (batch size 1000), nothing twice', {
    timeout: 120_000,
  }, async () => {
    const people = users('batch-a', 3000);
    await sync(harness, BATCH_PLATFORM, people);
    await harness.idle();
    partner().reset();
    const before = await harness.totals(BATCH_PLATFORM);
    // Messages of 1000 users, as `dmp send` packs them: each reaches the partner in one call,
    // however the queues group the messages into invocations.
    for (let index = 0; index < people.length; index += 1000) {
      await harness.send(audienceEvent(people.slice(index, index + 1000), { audience: 'aud-batch-a' }));
    }
    await harness.idle();

    const { members, state } = await held(BATCH_PLATFORM, 'aud-batch-a');
    expect(members).toEqual(new Set(people.map(partnerIdOf)));
    expect(state).toMatchObject({ adds: 3000, duplicateAdds: 0, removes: 0 });
    const populationCalls = partner().requests.filter(
      (r) => r.method === 'POST' && r.path === '/v1/segment' && !r.url.includes('title='),
    );
    expect(populationCalls.length / (people.length / 1000)).toBeLessThanOrEqual(1.05);
    const after = await harness.totals(BATCH_PLATFORM);
    expect(after.calls - before.calls).toBe(populationCalls.length);
    expect(after.delivered - before.delivered).toBe(3000);
    expect(after.rejected - before.rejected).toBe(0);
    expect(after.pending - before.pending).toBe(0);
  });

  it('applies adds and removes in event order, whatever order the queue brings them in', async () => {
    const people = users('order', 20);
    await sync(harness, BATCH_PLATFORM, people);
    const t0 = Date.parse('2026-11-28T12:00:00Z');
    const at = (seconds: number) => new Date(t0 + seconds * 1000).toISOString();
    // The remove (t=2) reaches the queue before the add (t=1) it follows: the add is stale.
    await harness.send(
      audienceEvent(people.slice(0, 10), { audience: 'aud-order', op: 'remove', ts: at(2) }),
    );
    await harness.idle();
    await harness.send(audienceEvent(people, { audience: 'aud-order', op: 'add', ts: at(1) }));
    await harness.idle();
    // A later add of two of them (t=3) stands; a second copy of the t=2 remove changes nothing.
    await harness.send(audienceEvent(people.slice(0, 2), { audience: 'aud-order', op: 'add', ts: at(3) }));
    await harness.send(
      audienceEvent(people.slice(0, 10), { audience: 'aud-order', op: 'remove', ts: at(2) }),
    );
    await harness.idle();

    const { members } = await held(BATCH_PLATFORM, 'aud-order');
    expect(members).toEqual(new Set([...people.slice(0, 2), ...people.slice(10)].map(partnerIdOf)));
    const stored = await harness.store.membershipsOf(BATCH_PLATFORM, people[5] as string);
    expect(stored).toMatchObject([{ op: 'remove', ts: Date.parse(at(2)) }]);
  });

  it('keeps unsynced users pending and delivers them when their sync stores a partner id', async () => {
    const people = users('pending', 30);
    const before = await harness.totals(BATCH_PLATFORM);
    await harness.send(audienceEvent(people, { audience: 'aud-pending' }));
    await harness.idle();
    let totals = await harness.totals(BATCH_PLATFORM);
    expect(totals.pending - before.pending).toBe(30);
    // A removal before the sync cancels the pending add of that user.
    await harness.send(audienceEvent(people.slice(0, 5), { audience: 'aud-pending', op: 'remove' }));
    await harness.idle();

    await sync(harness, BATCH_PLATFORM, people);
    await harness.idle();
    const { members } = await held(BATCH_PLATFORM, 'aud-pending');
    expect(members).toEqual(new Set(people.slice(5).map(partnerIdOf)));
    totals = await harness.totals(BATCH_PLATFORM);
    expect(totals.pending - before.pending).toBe(0);
    // 30 adds + 5 removes: 25 adds and 5 removes delivered, 5 adds superseded while pending.
    expect(totals.delivered - before.delivered).toBe(30);
    expect(totals.superseded - before.superseded).toBe(5);
  });

  it('sets aside a malformed message, an invalid user and an unknown platform, and keeps flowing', async () => {
    const before = await harness.totals(BATCH_PLATFORM);
    const people = users('flow', 3);
    await sync(harness, BATCH_PLATFORM, people);
    await harness.send('{"v":1,"audience":');
    await harness.send(
      audienceEvent(['bad user id', ...people], {
        audience: 'aud-flow',
        platforms: [BATCH_PLATFORM, 424242],
      }),
    );
    await harness.idle();
    const { members } = await held(BATCH_PLATFORM, 'aud-flow');
    expect(members).toEqual(new Set(people.map(partnerIdOf)));
    const rejected = await harness.store.rejections();
    expect(rejected.map((entry) => entry.reason)).toEqual(
      expect.arrayContaining(['message_not_json', 'user_invalid', 'platform_unknown']),
    );
    expect(rejected.find((entry) => entry.reason === 'platform_unknown')).toMatchObject({
      platformId: 424242,
      memberships: 3,
    });
    const totals = await harness.totals(BATCH_PLATFORM);
    expect(totals.delivered - before.delivered).toBe(3);
    expect(totals.rejected - before.rejected).toBe(1);
  });

  it('a message delivered twice by SQS is applied once', async () => {
    const people = users('dupe', 40);
    await sync(harness, BATCH_PLATFORM, people);
    const before = await harness.totals(BATCH_PLATFORM);
    const event = audienceEvent(people, { audience: 'aud-dupe' });
    await harness.send(event);
    await harness.send(event);
    await harness.idle();
    const { members, state } = await held(BATCH_PLATFORM, 'aud-dupe');
    expect(members.size).toBe(40);
    expect(state?.duplicateAdds).toBe(0);
    expect((await harness.totals(BATCH_PLATFORM)).delivered - before.delivered).toBe(40);
  });
});

describe('population, no batch (the seed: POST /v1/segment?id=12345&userid=abcdef123)', () => {
  it('sends one call per user with bounded concurrency, and removals by the removal call', async () => {
    const people = users('single', 25);
    await sync(harness, SINGLE_PLATFORM, people);
    partner().reset();
    await harness.send(audienceEvent(people, { audience: 'aud-single', platforms: [SINGLE_PLATFORM] }));
    await harness.idle();
    await harness.send(
      audienceEvent(people.slice(0, 5), {
        audience: 'aud-single',
        platforms: [SINGLE_PLATFORM],
        op: 'remove',
      }),
    );
    await harness.idle();
    const { segment, members } = await held(SINGLE_PLATFORM, 'aud-single');
    expect(members).toEqual(new Set(people.slice(5).map(partnerIdOf)));
    const calls = partner().requests.filter((r) => r.path === '/v1/segment' && r.query['id'] === segment);
    expect(calls.filter((r) => r.method === 'POST')).toHaveLength(25);
    expect(calls.filter((r) => r.method === 'DELETE')).toHaveLength(5);
    const totals = await harness.totals(SINGLE_PLATFORM);
    expect(totals.delivered).toBe(30);
  });
});

describe('the operator CLI', () => {
  const cli = (argv: string[]) => dmpAgainst(harness, argv);

  it('dmp send puts events on the queue as a producer does; stats, why and rejected say where they went', async () => {
    const sent = await cli([
      'send',
      '--audience',
      'aud-cli',
      '--name',
      'CLI sends',
      '--platform',
      String(BATCH_PLATFORM),
      '--users',
      '1200',
      '--prefix',
      'cli-user',
      '--json',
    ]);
    expect(sent.stderr).toBe('');
    expect(JSON.parse(sent.stdout)).toMatchObject({
      users: 1200,
      messages: 2,
      queue: 'dmp-local-audience-events',
    });
    await harness.idle();
    // Nobody synced yet: all pending.
    const stats = JSON.parse((await cli(['stats', '--platform', String(BATCH_PLATFORM), '--json'])).stdout);
    const segment = await segmentOf(harness, BATCH_PLATFORM, 'aud-cli');
    expect(stats.rows).toContainEqual(
      expect.objectContaining({ segmentId: segment, pending: 1200, delivered: 0 }),
    );

    await sync(harness, BATCH_PLATFORM, ['cli-user-00000001']);
    await harness.idle();
    const why = JSON.parse(
      (await cli(['why', 'cli-user-00000001', '--platform', String(BATCH_PLATFORM), '--json'])).stdout,
    );
    expect(why).toMatchObject({
      partnerUserId: partnerIdOf('cli-user-00000001'),
      synced: true,
      segments: [{ segmentId: segment, audienceId: 'aud-cli', state: 'member' }],
    });
    const unsynced = await cli(['why', 'cli-user-00000002', '--platform', String(BATCH_PLATFORM)]);
    expect(unsynced.stdout).toContain('pending: no partner id yet');

    await harness.send('not json at all');
    await harness.idle();
    const rejected = JSON.parse((await cli(['rejected', '--json'])).stdout);
    expect(rejected.rejected).toContainEqual(
      expect.objectContaining({ reason: 'message_not_json', snippet: 'not json at all' }),
    );
    const table = await cli(['rejected']);
    expect(table.stdout).toContain('message_not_json');
  });

  it('dmp send refuses what the contract refuses, before sending anything', async () => {
    const refused = await cli([
      'send',
      '--audience',
      'bad audience!',
      '--name',
      'x',
      '--platform',
      '99999',
      '--users',
      '3',
    ]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('audience.id');
  });
});

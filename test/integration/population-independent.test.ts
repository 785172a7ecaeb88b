import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { IndependentPartner } from '../support/independent-partner.ts';
import {
  audienceEvent,
  partnerIdOf,
  segmentOf,
  sync,
  type Totals,
  usePopulationStack,
  users,
} from './population-support.ts';

/**
 * Population through a partner written from the seed's text alone (test/support/independent-
 * partner.ts, no code shared with the reference partner): numbers for segment ids, a count of
 * mutations as its only answer, no de-duplication, and every fourth population call applied and
 * then answered 500. In both of the seed's modes, every accepted membership ends counted once, and
 * the partner holds exactly the users added and not removed; an add reaches it more than once only
 * when a call carrying it was answered 500 after it was applied (the at-least-once window,
 * docs/population.md section 3).
 */

const BATCH = 66601;
const SINGLE = 66602;
const CREDENTIALS = { username: 'independent', password: 'not-the-reference-partner' };
const partner = new IndependentPartner({ ...CREDENTIALS, failEvery: 4 });

function platformFile(id: number, baseUrl: string, population: Record<string, unknown>) {
  return {
    id,
    name: `Independent partner ${id}`,
    sync: { urlTemplate: `${baseUrl}/sync?out={out}` },
    connector: {
      api: { baseUrl, auth: { type: 'basic' } },
      segments: {
        creation: 'api',
        nameTemplate: '{audienceName}',
        create: { method: 'POST', path: '/v1/segment?title={name}' },
        idPath: 'segment_id',
      },
      population,
      ...(population['mode'] === 'batch' ? { responses: { countPath: 'mutations' } } : {}),
    },
  };
}

const harness = usePopulationStack({
  async configure(dir) {
    const url = await partner.start();
    const platforms = join(dir, 'platforms', 'local');
    writeFileSync(
      join(platforms, '04-66601-independent-batch.json'),
      JSON.stringify(
        platformFile(BATCH, url, {
          mode: 'batch',
          batchSize: 250,
          add: { method: 'POST', path: '/v1/segment' },
          item: { segment: '{segmentIdNumber}', userid: '{userId}' },
          removal: { via: 'call', request: { method: 'DELETE', path: '/v1/segment' } },
        }),
      ),
    );
    writeFileSync(
      join(platforms, '05-66602-independent-single.json'),
      JSON.stringify(
        platformFile(SINGLE, url, {
          mode: 'single',
          concurrency: 2,
          add: { method: 'POST', path: '/v1/segment?id={segmentId}&userid={userId}' },
          removal: {
            via: 'call',
            request: { method: 'DELETE', path: '/v1/segment?id={segmentId}&userid={userId}' },
          },
        }),
      ),
    );
    const secretsFile = join(dir, 'secrets.json');
    const secrets = JSON.parse(readFileSync(secretsFile, 'utf8')) as Record<string, unknown>;
    for (const id of [BATCH, SINGLE]) secrets[`dmp-activation/local/platforms/${id}/api`] = CREDENTIALS;
    writeFileSync(secretsFile, JSON.stringify(secrets));
  },
});

afterAll(async () => {
  await partner.stop();
});

async function conservation(platformId: number, label: string, count: number, removed: number) {
  const people = users(`independent-${label}`, count);
  const [kept, gone] = [people.slice(removed), people.slice(0, removed)];
  await sync(harness, platformId, people);
  await harness.idle();
  const before = await harness.totals(platformId);
  const audience = `aud-independent-${label}`;
  for (let index = 0; index < people.length; index += 500)
    await harness.send(
      audienceEvent(people.slice(index, index + 500), {
        audience,
        platforms: [platformId],
        ts: '2026-11-30T12:00:00Z',
      }),
    );
  await harness.idle();
  await harness.send(
    audienceEvent(gone, { audience, platforms: [platformId], op: 'remove', ts: '2026-11-30T12:01:00Z' }),
  );
  await harness.idle();

  const segment = Number(await segmentOf(harness, platformId, audience));
  expect(partner.segmentIdOf(`Audience ${audience}`)).toBe(segment);
  // Exactly the users added and not removed.
  expect(partner.members(segment)).toEqual(new Set(kept.map(partnerIdOf)));
  for (const user of people) expect(partner.addsOf(segment, partnerIdOf(user))).toBeGreaterThanOrEqual(1);
  // Repeats only where a call was answered 500 after the partner applied it.
  const failed = partner.usersOfFailedCalls();
  for (const user of partner.repeatedAdds(segment)) expect(failed.has(`${segment}#${user}`)).toBe(true);

  const after = await harness.totals(platformId);
  const counts = (['delivered', 'pending', 'rejected', 'dlq', 'superseded'] as const).map(
    (name) => [name, after[name] - before[name]] as const,
  );
  expect(Object.fromEntries(counts) as Partial<Totals>).toEqual({
    delivered: count + removed,
    pending: 0,
    rejected: 0,
    dlq: 0,
    superseded: 0,
  });
  return { segment, calls: after.calls - before.calls };
}

describe('population through a partner written independently from the seed', () => {
  it('micro batch: numbers for segment ids, a count as the only answer, 500s after the work', {
    timeout: 120_000,
  }, async () => {
    const { segment, calls } = await conservation(BATCH, 'batch', 1000, 200);
    // The fourth call (adds) was answered 500 after it was applied: its 250 users came twice.
    expect(partner.repeatedAdds(segment).size).toBe(250);
    expect(partner.calls.batch).toBeGreaterThanOrEqual(5);
    expect(partner.calls.refused).toBe(0);
    // 1200 memberships at 250 a call: 5 calls, and the ones a 500 made us repeat.
    expect(calls).toBe(partner.calls.batch);
  });

  it('no batch: one call per user, removals by its DELETE', { timeout: 120_000 }, async () => {
    const singleBefore = partner.calls.single;
    await conservation(SINGLE, 'single', 60, 20);
    expect(partner.calls.single - singleBefore).toBeGreaterThanOrEqual(80);
    expect(partner.usersOfFailedCalls().size).toBeGreaterThan(0);
  });
});

import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type ReferencePartner, startReferencePartner } from '../../local/reference-partner.ts';

/** The reference partner's population side: honest (no de-duplication), configurable answers, faults. */

let partner: ReferencePartner;
const auth = { authorization: `Basic ${Buffer.from('foo:bar').toString('base64')}` };

async function send(method: string, path: string, body?: unknown) {
  const response = await fetch(`${partner.url}${path}`, {
    method,
    headers: { ...auth, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, text, headers: response.headers };
}

async function segment(title: string): Promise<number> {
  return JSON.parse((await send('POST', `/v1/segment?title=${title}`)).text).segment_id;
}

beforeAll(async () => {
  partner = await startReferencePartner();
});
afterAll(() => partner.stop());
beforeEach(() => partner.resetAll());

describe('reference partner population', () => {
  it('counts every add it receives: a repeated add is a visible duplicate', async () => {
    const id = await segment('dupes');
    const batch = [{ segment: id, userid: 'abcdef123' }];
    await send('POST', '/v1/segment', batch);
    await send('POST', '/v1/segment', batch);
    await send('POST', `/v1/segment?id=${id}&userid=abcdef123`);
    expect(partner.members(id)).toEqual(['abcdef123']);
    expect(partner.population.state()).toEqual([
      { segment_id: id, memberCount: 1, adds: 3, removes: 0, duplicateAdds: 2 },
    ]);
    const shown = JSON.parse((await send('GET', '/__population?members=true')).text);
    expect(shown.segments[0]).toMatchObject({ segment_id: id, members: ['abcdef123'], duplicateAdds: 2 });
    expect(shown.calls).toBe(3);
  });

  it('answers with nothing, or fails the whole batch for one bad item, as set', async () => {
    const id = await segment('settings');
    const set = await send('PUT', '/__population/settings', {
      answer: 'empty',
      badItems: 'rejectBatch',
      rejectUserIds: '^bad',
    });
    expect(set.status).toBe(200);
    const ok = await send('POST', '/v1/segment', [{ segment: id, userid: 'good1' }]);
    expect(ok).toMatchObject({ status: 200, text: '' });
    const refused = await send('POST', '/v1/segment', [
      { segment: id, userid: 'good2' },
      { segment: id, userid: 'bad-one' },
    ]);
    expect(refused.status).toBe(400);
    expect(partner.members(id)).toEqual(['good1']);
    expect((await send('POST', `/v1/segment?id=${id}&userid=bad2`)).status).toBe(400);
    expect((await send('PUT', '/__population/settings', { answer: 'sometimes' })).status).toBe(400);
  });

  it('applies a ratio fault to an even share of calls, doing the work before a 500 when asked', async () => {
    const id = await segment('ratio');
    partner.addFault({ pathPrefix: '/v1/segment', method: 'POST', status: 500, ratio: 0.3, process: true });
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++)
      statuses.push((await send('POST', `/v1/segment?id=${id}&userid=u${i}`)).status);
    expect(statuses.filter((status) => status === 500)).toHaveLength(3);
    // The partner did the work and still answered 500.
    expect(partner.members(id)).toHaveLength(10);
  });
});

import { describe, expect, it } from 'vitest';
import { loadPlatformFile } from '../../../src/config/load.ts';
import { decodeDeliveryMessage, packDeliveryMessages } from '../../../src/population/membership.ts';
import { MAX_USERS_PER_MESSAGE, parseAudienceEvent, validUsers } from '../../../src/population/message.ts';
import { planRequests } from '../../../src/population/requests.ts';
import { membership, seedConnector } from './support.ts';

const context = (population: Record<string, unknown> = {}) => ({
  connector: seedConnector(population),
  environment: 'test',
});

const event = (overrides: Record<string, unknown> = {}) =>
  JSON.stringify({
    v: 1,
    audience: { id: 'aud-42', name: 'Cart abandoners', kind: 'custom' },
    platforms: [99999],
    op: 'add',
    users: ['dmp-user-1', 'dmp-user-2'],
    ttlSeconds: 2_592_000,
    ts: '2026-11-28T12:00:00Z',
    ...overrides,
  });

describe('audience event contract', () => {
  it('takes the architecture example', () => {
    const parsed = parseAudienceEvent(event());
    expect(parsed.ok).toBe(true);
    if (parsed.ok) expect(parsed.tsMs).toBe(Date.parse('2026-11-28T12:00:00Z'));
  });

  it('says why a message is refused', () => {
    expect(parseAudienceEvent('{not json')).toMatchObject({ ok: false, reason: 'message_not_json' });
    expect(parseAudienceEvent(event({ op: 'delete' }))).toMatchObject({
      ok: false,
      reason: 'message_invalid',
    });
    expect(parseAudienceEvent(event({ ts: 'yesterday' }))).toMatchObject({
      ok: false,
      detail: expect.stringContaining('ts'),
    });
    const tooMany = Array.from({ length: MAX_USERS_PER_MESSAGE + 1 }, (_, i) => `dmp-user-${i}`);
    expect(parseAudienceEvent(event({ users: tooMany }))).toMatchObject({
      ok: false,
      reason: 'message_too_large',
    });
    expect(parseAudienceEvent('x'.repeat(1024 * 1024 + 1))).toMatchObject({
      ok: false,
      reason: 'message_too_large',
    });
  });

  it('sets aside one invalid user without the others, and drops repeats', () => {
    expect(validUsers(['dmp-user-1', 'bad user', 'dmp-user-1', 'dmp-user-2'])).toEqual({
      valid: ['dmp-user-1', 'dmp-user-2'],
      invalid: ['bad user'],
    });
  });
});

describe('delivery messages', () => {
  it('round-trips memberships and packs at most maxUsers per message', () => {
    const memberships = Array.from({ length: 25 }, (_, i) =>
      membership(i, i % 2 ? { op: 'remove', ttlSeconds: 60 } : {}),
    );
    const bodies = packDeliveryMessages(99999, memberships, 10);
    expect(bodies).toHaveLength(3);
    expect(bodies.flatMap((body) => decodeDeliveryMessage(body) ?? [])).toEqual(memberships);
  });

  it('keeps each message under the byte bound', () => {
    const memberships = Array.from({ length: 500 }, (_, i) => membership(i));
    const bodies = packDeliveryMessages(99999, memberships, 1000, 4096);
    expect(bodies.length).toBeGreaterThan(1);
    for (const body of bodies) expect(body.length).toBeLessThanOrEqual(4096);
    expect(bodies.flatMap((body) => decodeDeliveryMessage(body) ?? [])).toHaveLength(500);
  });

  it('refuses what is not a delivery message', () => {
    expect(decodeDeliveryMessage('{"v":2}')).toBeUndefined();
    expect(decodeDeliveryMessage('nope')).toBeUndefined();
  });
});

describe('request planning', () => {
  it('renders the seed micro batch, mixing segments in one call', () => {
    const plan = planRequests([membership(1), membership(2, { segmentId: '45678' })], context());
    expect(plan.requests).toHaveLength(1);
    const request = plan.requests[0]?.request;
    expect(request?.method).toBe('POST');
    expect(request?.pathAndQuery).toBe('/v1/segment');
    expect(JSON.parse(request?.body?.toString() ?? '')).toEqual([
      { segment: 12345, userid: 'partner1' },
      { segment: 45678, userid: 'partner2' },
    ]);
  });

  it('splits by batchSize', () => {
    const items = Array.from({ length: 2500 }, (_, i) => membership(i));
    const plan = planRequests(items, context());
    expect(plan.requests.map((r) => r.items.length)).toEqual([1000, 1000, 500]);
  });

  it('the shipped local platform 99999 sends 1000 users in one call (the seed: up to 1000 per batch)', () => {
    const { connector } = loadPlatformFile('config/platforms/local/01-99999-reference-partner.json');
    if (!connector) throw new Error('platform 99999 has no connector');
    const items = Array.from({ length: 1000 }, (_, i) => membership(i));
    const plan = planRequests(items, { connector, environment: 'local' });
    expect(plan.requests.map((r) => r.items.length)).toEqual([1000]);
  });

  it('splits by maxRequestBytes, each body within the bound', () => {
    const items = Array.from({ length: 300 }, (_, i) => membership(i));
    const plan = planRequests(items, context({ maxRequestBytes: 2048 }));
    expect(plan.requests.length).toBeGreaterThan(1);
    for (const planned of plan.requests) expect(planned.request.body?.length).toBeLessThanOrEqual(2048);
    expect(plan.requests.flatMap((r) => r.items)).toHaveLength(300);
  });

  it('separates adds from removes, and refuses removals a partner cannot take', () => {
    const items = [membership(1), membership(2, { op: 'remove' })];
    const plan = planRequests(items, context());
    expect(plan.requests.map((r) => r.request.method).sort()).toEqual(['DELETE', 'POST']);
    const ttlOnly = planRequests(items, context({ removal: { via: 'ttl' } }));
    expect(ttlOnly.requests).toHaveLength(1);
    expect(ttlOnly.refused).toMatchObject([{ reason: 'removal_unsupported' }]);
  });

  it('renders one call per user in single mode', () => {
    const plan = planRequests(
      [membership(1), membership(2)],
      context({
        mode: 'single',
        add: { method: 'POST', path: '/v1/segment?id={segmentId}&userid={userId}' },
      }),
    );
    expect(plan.requests.map((r) => r.request.pathAndQuery)).toEqual([
      '/v1/segment?id=12345&userid=partner1',
      '/v1/segment?id=12345&userid=partner2',
    ]);
    expect(plan.requests[0]?.request.body).toBeUndefined();
  });

  it('groups per segment when the request names the segment, and passes the TTL', () => {
    const plan = planRequests(
      [membership(1, { ttlSeconds: 3600 }), membership(2, { segmentId: '7', ttlSeconds: 3600 })],
      context({
        add: { method: 'POST', path: '/segments/{segmentId}/users', body: { users: '{items}' } },
        item: { id: '{userId}', ttlMinutes: '{ttlMinutes}' },
      }),
    );
    expect(plan.requests.map((r) => r.request.pathAndQuery).sort()).toEqual([
      '/segments/12345/users',
      '/segments/7/users',
    ]);
    expect(JSON.parse(plan.requests[0]?.request.body?.toString() ?? '')).toEqual({
      users: [{ id: 'partner1', ttlMinutes: 60 }],
    });
  });
});

describe('published JSON Schema', () => {
  it('docs/schemas/audience-event.v1.json is generated from the contract (regenerate: see docs/population.md)', async () => {
    const { readFileSync } = await import('node:fs');
    const { audienceEventJsonSchema } = await import('../../../src/population/message.ts');
    const published = JSON.parse(
      readFileSync(new URL('../../../docs/schemas/audience-event.v1.json', import.meta.url), 'utf8'),
    );
    expect(published).toEqual(audienceEventJsonSchema());
  });
});

describe('segment ids beyond 2^53', () => {
  it('are sent as the exact digits', () => {
    const plan = planRequests([membership(1, { segmentId: '90071992547412345' })], context());
    expect(plan.requests[0]?.request.body?.toString()).toBe(
      '[{"segment":90071992547412345,"userid":"partner1"}]',
    );
  });
});

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ensureTable, type LocalDynamoDb, startDynalite } from '../../local/dynamodb.ts';
import { LOCAL_CREDENTIALS, LOCAL_REGION, REPO_ROOT } from '../../local/endpoints.ts';
import { type ReferencePartner, startReferencePartner } from '../../local/reference-partner.ts';
import { loadEnvironmentFile, parsePlatform } from '../../src/config/load.ts';
import type { PlatformConfig } from '../../src/config/schema.ts';
import { PartnerClients } from '../../src/connectors/partner-clients.ts';
import { SEGMENT_TABLE } from '../../src/infra/resources.ts';
import type { Audience } from '../../src/segments/segment.ts';
import {
  SegmentNotReadyError,
  SegmentRefusedError,
  SegmentService,
} from '../../src/segments/segment-service.ts';
import { DynamoSegmentStore } from '../../src/segments/segment-store.ts';

/**
 * Segment creation end to end: the real SegmentService, partner client and DynamoDB store, against
 * dynalite and the reference partner over HTTP. Each test uses its own audience ids.
 */

const CREDENTIALS = {
  basic: { username: 'foo', password: 'bar' },
  bearer: { token: 'reference-bearer-token' },
  apiKey: { apiKey: 'reference-api-key' },
  oauth2ClientCredentials: { clientId: 'reference-client', clientSecret: 'reference-client-secret' },
  hmac: { keyId: 'ref-k1', key: 'reference-hmac-key-0001' },
} as const;
const SECRET_VALUES = [
  'bar',
  'reference-bearer-token',
  'reference-api-key',
  'reference-client-secret',
  'reference-hmac-key-0001',
];

let dynamo: LocalDynamoDb;
let partner: ReferencePartner;
let client: DynamoDBClient;
let seedPlatform: PlatformConfig;
let counter = 0;

beforeAll(async () => {
  dynamo = await startDynalite({});
  client = new DynamoDBClient({ endpoint: dynamo.url, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
  await ensureTable(client, SEGMENT_TABLE);
  partner = await startReferencePartner({ credentials: { hmac: { algorithms: ['sha1', 'sha256'] } } });
  const local = loadEnvironmentFile(join(REPO_ROOT, 'config', 'environments', 'local.json'));
  const platform = local.platforms.find((candidate) => candidate.id === 99999)!;
  seedPlatform = withApi(platform, { baseUrl: partner.url });
});

afterEach(() => {
  partner.clearFaults();
  partner.releaseHeld();
});

afterAll(async () => {
  client?.destroy();
  await partner?.stop();
  await dynamo?.stop();
});

function withApi(
  platform: PlatformConfig,
  api: Record<string, unknown>,
  segments: Record<string, unknown> = {},
) {
  const connector = platform.connector!;
  return parsePlatform(
    {
      ...platform,
      connector: {
        ...connector,
        api: { ...connector.api, ...api },
        segments: { ...connector.segments, ...segments },
      },
    },
    'test',
  );
}

function audience(name: string, kind: Audience['kind'] = 'custom'): Audience {
  counter += 1;
  return { id: `aud-${counter}-${Date.now().toString(36)}`, name, kind };
}

/** A service as one Lambda would build it: its own clients, retries without real waiting. */
function service(credentials: Record<string, string> = CREDENTIALS.basic, delays: number[] = []) {
  const store = new DynamoSegmentStore(
    new DynamoDBClient({ endpoint: dynamo.url, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS }),
    SEGMENT_TABLE.localName,
  );
  const clients = new PartnerClients(async () => credentials, {
    sleep: async (ms) => {
      delays.push(ms);
    },
  });
  return {
    store,
    service: new SegmentService({
      environment: 'test',
      store,
      partnerFor: (platform) => clients.for(platform),
    }),
  };
}

const creates = (title?: string) =>
  partner.requests.filter(
    (request) =>
      request.method === 'POST' &&
      request.path === '/v1/segment' &&
      request.query['title'] !== undefined &&
      (title === undefined || request.query['title'] === title),
  );

describe('segment creation against the reference partner', () => {
  it("creates the partner segment once with the seed's call and answer, then reuses the stored id", async () => {
    const { service: segments, store } = service();
    const target = audience('My segment');
    const first = await segments.ensure(seedPlatform, target);
    expect(first.obtainedNow).toBe(true);
    expect(first.partnerSegmentId).toMatch(/^\d+$/);
    const created = creates('My segment');
    expect(created).toHaveLength(1);
    expect(created[0]!.url).toContain('title=My%20segment');
    expect(created[0]!.auth).toBe('basic');

    const again = await segments.ensure(seedPlatform, target);
    expect(again).toMatchObject({ partnerSegmentId: first.partnerSegmentId, obtainedNow: false });
    expect(creates('My segment')).toHaveLength(1);
    expect(await store.get(99999, target.id)).toMatchObject({
      state: 'ready',
      partnerSegmentId: first.partnerSegmentId,
      nameAtPartner: 'My segment',
      source: 'created',
      attempts: 1,
      possibleDuplicate: false,
    });
  });

  it('delivers a name with &, quotes, / and % intact, and the kind in the partner spelling', async () => {
    const { service: segments } = service();
    const name = 'Cart & "VIP" / 50%';
    const result = await segments.ensure(seedPlatform, audience(name, 'lookalike'));
    const segment = partner
      .segments()
      .find((candidate) => String(candidate.segment_id) === result.partnerSegmentId);
    expect(segment?.title).toBe(name);
    expect(segment?.kind).toBe('lookalike');
  });

  it('treats the seed\'s "created":false answer with an id as success', async () => {
    const name = `Existing ${Date.now()}`;
    const existing = await fetch(`${partner.url}/v1/segment?title=${encodeURIComponent(name)}`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from('foo:bar').toString('base64')}` },
    }).then((answer) => answer.json() as Promise<{ segment_id: number }>);
    const { service: segments } = service();
    const result = await segments.ensure(seedPlatform, audience(name));
    expect(result.partnerSegmentId).toBe(String(existing.segment_id));
    expect(result.record.source).toBe('existing');
  });

  it.each([
    ['bearer', { type: 'bearer' }, CREDENTIALS.bearer, 'bearer'],
    ['API key header', { type: 'apiKey', header: 'x-api-key' }, CREDENTIALS.apiKey, 'apiKey'],
    [
      'OAuth2 client credentials',
      { type: 'oauth2ClientCredentials', tokenUrl: '/oauth/token' },
      CREDENTIALS.oauth2ClientCredentials,
      'oauth2',
    ],
    ['HMAC-SHA256 request signing', { type: 'hmac', algorithm: 'sha256' }, CREDENTIALS.hmac, 'hmac'],
    ['HMAC-SHA1 request signing', { type: 'hmac', algorithm: 'sha1' }, CREDENTIALS.hmac, 'hmac'],
  ])(
    'authenticates with %s, and no credential reaches the stored record',
    async (_, auth, credentials, method) => {
      const platform = withApi(seedPlatform, { auth });
      const { service: segments, store } = service(credentials);
      const target = audience(`Auth ${method} ${counter}`);
      const result = await segments.ensure(platform, target);
      const request = creates(target.name)[0];
      expect(request?.auth).toBe(method);
      const stored = JSON.stringify(await store.get(platform.id, target.id));
      expect(stored).toContain(result.partnerSegmentId);
      for (const secret of SECRET_VALUES) expect(stored).not.toContain(secret);
    },
  );

  it('reuses one OAuth2 token across calls', async () => {
    const platform = withApi(seedPlatform, {
      auth: { type: 'oauth2ClientCredentials', tokenUrl: '/oauth/token' },
    });
    const { service: segments } = service(CREDENTIALS.oauth2ClientCredentials);
    partner.reset();
    await segments.ensure(platform, audience(`OAuth one ${counter}`));
    await segments.ensure(platform, audience(`OAuth two ${counter}`));
    expect(partner.requests.filter((request) => request.path === '/oauth/token')).toHaveLength(1);
  });

  it('a wrong credential is a refusal recorded with the partner answer, never showing the credential', async () => {
    const { service: segments, store } = service({ username: 'foo', password: 'not-the-password' });
    const target = audience('Wrong credential');
    const error = await segments.ensure(seedPlatform, target).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(SegmentRefusedError);
    const record = await store.get(99999, target.id);
    expect(record).toMatchObject({ state: 'failed', lastError: { status: 401 } });
    expect(JSON.stringify(record)).not.toContain('not-the-password');
    expect(String((error as Error).message)).not.toContain('not-the-password');
  });

  it('ten concurrent first uses of one audience create exactly one partner segment', async () => {
    const target = audience('Concurrent audience');
    partner.addFault({ hold: true, count: 1, pathPrefix: '/v1/segment' });
    const tenLambdas = Array.from({ length: 10 }, () => service().service);
    const results = Promise.all(
      tenLambdas.map((lambda) => lambda.ensure(seedPlatform, target, { waitMs: 60_000 })),
    );
    await partner.waitForHeld(1);
    partner.releaseHeld();
    const settled = await results;
    const ids = new Set(settled.map((result) => result.partnerSegmentId));
    expect(ids.size).toBe(1);
    expect(settled.filter((result) => result.obtainedNow)).toHaveLength(1);
    expect(creates('Concurrent audience')).toHaveLength(1);
    expect(partner.segments().filter((segment) => segment.title === 'Concurrent audience')).toHaveLength(1);
  });

  it('a partner 500 then 200 yields one segment, after a backoff', async () => {
    const delays: number[] = [];
    const { service: segments } = service(CREDENTIALS.basic, delays);
    partner.addFault({ status: 500, count: 1, pathPrefix: '/v1/segment' });
    const target = audience('After a 500');
    const result = await segments.ensure(seedPlatform, target);
    expect(result.obtainedNow).toBe(true);
    expect(creates('After a 500')).toHaveLength(2);
    expect(partner.segments().filter((segment) => segment.title === 'After a 500')).toHaveLength(1);
    expect(delays).toHaveLength(1);
  });

  it('a 500 after the partner did create it still yields one segment (created:false on the retry)', async () => {
    const { service: segments } = service();
    partner.addFault({ status: 500, process: true, count: 1, pathPrefix: '/v1/segment' });
    const result = await segments.ensure(seedPlatform, audience('Processed then 500'));
    expect(partner.segments().filter((segment) => segment.title === 'Processed then 500')).toHaveLength(1);
    expect(result.record.source).toBe('existing');
  });

  it('honours Retry-After on a 429', async () => {
    const delays: number[] = [];
    const { service: segments } = service(CREDENTIALS.basic, delays);
    partner.addFault({ status: 429, retryAfter: 3, count: 1, pathPrefix: '/v1/segment' });
    await segments.ensure(seedPlatform, audience('Rate limited'));
    expect(delays).toEqual([3000]);
  });

  it('a 400 is recorded with the answer, not retried blindly, and retried on request', async () => {
    const { service: segments, store } = service();
    const target = audience('Refused segment');
    partner.addFault({
      status: 400,
      body: '{"status":"ERROR","error":"title not allowed"}',
      count: 1,
      pathPrefix: '/v1/segment',
    });
    await expect(segments.ensure(seedPlatform, target)).rejects.toBeInstanceOf(SegmentRefusedError);
    const failed = await store.get(99999, target.id);
    expect(failed).toMatchObject({ state: 'failed', lastError: { status: 400 } });
    expect(failed?.lastError?.message).toContain('title not allowed');

    await expect(segments.ensure(seedPlatform, target)).rejects.toBeInstanceOf(SegmentRefusedError);
    expect(creates('Refused segment')).toHaveLength(1);

    const retried = await segments.ensure(seedPlatform, target, { retryFailed: true });
    expect(retried.obtainedNow).toBe(true);
    expect(await store.get(99999, target.id)).toMatchObject({ state: 'ready', attempts: 2 });
  });

  it('retries exhausted leave the segment for the next caller, who creates it once', async () => {
    const { service: segments, store } = service();
    const target = audience('Partner down');
    partner.addFault({ status: 503, count: 4, pathPrefix: '/v1/segment' });
    await expect(segments.ensure(seedPlatform, target)).rejects.toBeInstanceOf(SegmentNotReadyError);
    expect(await store.get(99999, target.id)).toMatchObject({
      state: 'retry',
      outcomeUnknown: true,
      lastError: { status: 503 },
    });
    const later = await segments.ensure(seedPlatform, target);
    expect(later.obtainedNow).toBe(true);
    expect(partner.segments().filter((segment) => segment.title === 'Partner down')).toHaveLength(1);
  });

  it('a malformed 200 is an unknown outcome; the next caller finds the segment by name instead of creating it again', async () => {
    const { service: segments, store } = service();
    const target = audience('Garbled answer');
    partner.addFault({ malformed: true, count: 1, pathPrefix: '/v1/segment' });
    await expect(segments.ensure(seedPlatform, target)).rejects.toBeInstanceOf(SegmentNotReadyError);
    expect(await store.get(99999, target.id)).toMatchObject({ state: 'retry', outcomeUnknown: true });
    const recovered = await segments.ensure(seedPlatform, target);
    expect(recovered.record.source).toBe('lookup');
    expect(creates('Garbled answer')).toHaveLength(1);
  });

  it('missing credentials free the lease at once, with nothing sent to the partner', async () => {
    const store = new DynamoSegmentStore(client, SEGMENT_TABLE.localName);
    const clients = new PartnerClients(async () => ({}));
    const segments = new SegmentService({
      environment: 'test',
      store,
      partnerFor: (platform) => clients.for(platform),
    });
    const target = audience('No credentials');
    await expect(segments.ensure(seedPlatform, target)).rejects.toThrow(/username/);
    expect(await store.get(99999, target.id)).toMatchObject({ state: 'retry', outcomeUnknown: false });
    expect(creates('No credentials')).toHaveLength(0);
    const { service: withCredentials } = service();
    const result = await withCredentials.ensure(seedPlatform, target);
    expect(result.record).toMatchObject({ source: 'created', possibleDuplicate: false });
  });

  describe('a crash between the partner answer and our write', () => {
    async function crashAfterCreate(
      platform: PlatformConfig,
      target: Audience,
      headers: Record<string, string> = {},
    ) {
      const { store } = service();
      // The crashed Lambda took the lease (now long expired) and the partner created the segment.
      const lease = await store.acquireLease(
        platform.id,
        target,
        'crashed-lambda',
        Date.now() - 600_000,
        1000,
        false,
      );
      expect(lease.acquired).toBe(true);
      // The very request the connector sends (the idempotency key binds the key to it).
      const query = `title=${encodeURIComponent(target.name)}&kind=custom&external_id=${encodeURIComponent(target.id)}`;
      await fetch(`${partner.url}/v1/segment?${query}`, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from('foo:bar').toString('base64')}`, ...headers },
      });
    }

    it('is recovered by a lookup by name, without a second segment', async () => {
      const target = audience('Crash with lookup');
      await crashAfterCreate(seedPlatform, target);
      const { service: segments } = service();
      const result = await segments.ensure(seedPlatform, target);
      expect(result.record).toMatchObject({ source: 'lookup', possibleDuplicate: false });
      expect(partner.segments().filter((segment) => segment.title === target.name)).toHaveLength(1);
    });

    it('is recovered by the idempotency key where the partner honours one', async () => {
      const platform = withApi(
        seedPlatform,
        {},
        { lookupByName: undefined, idempotencyKeyHeader: 'Idempotency-Key' },
      );
      const target = audience('Crash with idempotency key');
      await crashAfterCreate(platform, target, { 'idempotency-key': `dmp-test-99999-${target.id}` });
      const { service: segments } = service();
      const result = await segments.ensure(platform, target);
      expect(result.record.possibleDuplicate).toBe(false);
      expect(partner.segments().filter((segment) => segment.title === target.name)).toHaveLength(1);
    });

    it('is reported as a possible duplicate where neither is available', async () => {
      const platform = withApi(seedPlatform, {}, { lookupByName: undefined });
      const target = audience('Crash without recovery');
      await crashAfterCreate(platform, target);
      const { service: segments, store } = service();
      await segments.ensure(platform, target);
      expect(await store.get(platform.id, target.id)).toMatchObject({
        state: 'ready',
        possibleDuplicate: true,
      });
    });
  });

  describe('renames', () => {
    it('renames the partner segment when the DMP audience is renamed', async () => {
      const { service: segments, store } = service();
      const target = audience('Old name');
      const created = await segments.ensure(seedPlatform, target);
      await segments.ensure(seedPlatform, { ...target, name: 'New name' });
      const segment = partner
        .segments()
        .find((candidate) => String(candidate.segment_id) === created.partnerSegmentId);
      expect(segment?.title).toBe('New name');
      expect(await store.get(99999, target.id)).toMatchObject({
        audienceName: 'New name',
        nameAtPartner: 'New name',
      });
    });

    it('retries a rename the partner refused on a later use, not on every use', async () => {
      let now = Date.now();
      const store = new DynamoSegmentStore(client, SEGMENT_TABLE.localName);
      const clients = new PartnerClients(async () => CREDENTIALS.basic);
      const segments = new SegmentService({
        environment: 'test',
        store,
        partnerFor: (platform) => clients.for(platform),
        now: () => now,
      });
      const target = audience('Rename me');
      const created = await segments.ensure(seedPlatform, target);
      partner.addFault({ status: 409, count: 1, pathPrefix: `/v1/segment/${created.partnerSegmentId}` });
      await segments.ensure(seedPlatform, { ...target, name: 'Renamed' });
      expect(await store.get(99999, target.id)).toMatchObject({
        audienceName: 'Renamed',
        nameAtPartner: 'Rename me',
        renameError: { status: 409 },
      });
      const renames = () => partner.requests.filter((request) => request.method === 'PUT').length;
      const before = renames();
      await segments.ensure(seedPlatform, { ...target, name: 'Renamed' });
      expect(renames()).toBe(before);
      now += 11 * 60_000;
      await segments.ensure(seedPlatform, { ...target, name: 'Renamed' });
      expect(renames()).toBe(before + 1);
      expect(await store.get(99999, target.id)).toMatchObject({ nameAtPartner: 'Renamed' });
      expect((await store.get(99999, target.id))?.renameError).toBeUndefined();
    });

    it('records the difference where the connector cannot rename', async () => {
      const platform = withApi(seedPlatform, {}, { rename: undefined });
      const { service: segments, store } = service();
      const target = audience('Before');
      await segments.ensure(platform, target);
      await segments.ensure(platform, { ...target, name: 'After' });
      expect(await store.get(platform.id, target.id)).toMatchObject({
        audienceName: 'After',
        nameAtPartner: 'Before',
      });
    });
  });
});

describe('example connectors against the reference partner speaking their shapes', () => {
  const example = (file: string) =>
    parsePlatform(
      JSON.parse(readFileSync(join(REPO_ROOT, 'config', 'platforms', 'examples', file), 'utf8')),
      file,
    );

  it("creates, finds and renames a Meta-shaped custom audience with Meta's string ids", async () => {
    const meta = example('meta.json');
    const platform = withApi(meta, { baseUrl: `${partner.url}/meta`, variables: { adAccountId: '1234' } });
    const { service: segments, store } = service(CREDENTIALS.bearer);
    const target = audience('Buyers');
    const result = await segments.ensure(platform, target);
    const created = partner.metaAudiences().find((candidate) => candidate.id === result.partnerSegmentId);
    expect(created).toMatchObject({ name: 'DMP Buyers' });
    expect(result.partnerSegmentId.length).toBeGreaterThan(15);

    await segments.ensure(platform, { ...target, name: 'Big buyers' });
    expect(partner.metaAudiences().find((candidate) => candidate.id === result.partnerSegmentId)?.name).toBe(
      'DMP Big buyers',
    );
    expect(await store.get(platform.id, target.id)).toMatchObject({ nameAtPartner: 'DMP Big buyers' });
  });

  it('uses the segment name as the id for a Trade-Desk-shaped platform, without a call', async () => {
    const ttd = example('the-trade-desk.json');
    const platform = withApi(ttd, { baseUrl: `${partner.url}/ttd` });
    const { service: segments } = service(CREDENTIALS.hmac);
    partner.reset();
    const target = audience('Shoppers');
    const result = await segments.ensure(platform, target);
    expect(result.partnerSegmentId).toBe(`dmp-${target.id}`);
    expect(partner.requests).toHaveLength(0);
    expect((await segments.ensure(platform, target)).obtainedNow).toBe(false);
  });
});

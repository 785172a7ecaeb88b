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
  adoptPartnerSegment,
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
  partner.setDedupeTitles(false);
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
  const sleep = async (ms: number) => {
    delays.push(ms);
  };
  const clients = new PartnerClients(async () => credentials, { sleep });
  return {
    store,
    service: new SegmentService({
      environment: 'test',
      store,
      partnerFor: (platform) => clients.for(platform),
    }),
  };
}

const lookups = (title: string) =>
  partner.requests.filter(
    (request) =>
      request.method === 'GET' && request.path === '/v1/segments' && request.query['title'] === title,
  );
const segmentsTitled = (title: string) => partner.segments().filter((segment) => segment.title === title);

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
    partner.setDedupeTitles(true);
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

  it('a 500 on the create: looked up by name before the create is repeated, one segment', async () => {
    const { service: segments } = service();
    partner.addFault({ status: 500, count: 1, method: 'POST', pathPrefix: '/v1/segment' });
    const target = audience('After a 500');
    const result = await segments.ensure(seedPlatform, target);
    expect(result).toMatchObject({
      obtainedNow: true,
      record: { source: 'created', possibleDuplicate: false, attempts: 2 },
    });
    expect(creates('After a 500')).toHaveLength(2);
    expect(lookups('After a 500')).toHaveLength(1);
    expect(segmentsTitled('After a 500')).toHaveLength(1);
  });

  it('a 500 after the partner did create it: found by name, never created twice', async () => {
    const { service: segments } = service();
    partner.addFault({ status: 500, process: true, count: 1, method: 'POST', pathPrefix: '/v1/segment' });
    const result = await segments.ensure(seedPlatform, audience('Processed then 500'));
    expect(segmentsTitled('Processed then 500')).toHaveLength(1);
    expect(creates('Processed then 500')).toHaveLength(1);
    expect(result.record).toMatchObject({ source: 'lookup', possibleDuplicate: false });
    expect(result.partnerSegmentId).toBe(String(segmentsTitled('Processed then 500')[0]!.segment_id));
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
    partner.addFault({ status: 503, count: 4, method: 'POST', pathPrefix: '/v1/segment' });
    await expect(segments.ensure(seedPlatform, target)).rejects.toMatchObject({
      name: 'SegmentNotReadyError',
      reason: 'transient',
    });
    expect(await store.get(99999, target.id)).toMatchObject({
      state: 'retry',
      outcomeUnknown: true,
      lastError: { status: 503 },
    });
    // Four creates, each after a lookup found nothing: the partner was never left with a twin.
    expect(creates('Partner down')).toHaveLength(4);
    expect((await store.get(99999, target.id))?.attempts).toBe(4);
    const later = await segments.ensure(seedPlatform, target);
    expect(later.obtainedNow).toBe(true);
    expect(partner.segments().filter((segment) => segment.title === 'Partner down')).toHaveLength(1);
  });

  it('a malformed 200 is an unknown outcome: the segment is found by name instead of created again', async () => {
    const { service: segments } = service();
    const target = audience('Garbled answer');
    partner.addFault({ malformed: true, count: 1, method: 'POST', pathPrefix: '/v1/segment' });
    const recovered = await segments.ensure(seedPlatform, target);
    expect(recovered.record.source).toBe('lookup');
    expect(creates('Garbled answer')).toHaveLength(1);
    expect(segmentsTitled('Garbled answer')).toHaveLength(1);
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

    it('says the lookup ran when it found only another audience’s segment of that name', async () => {
      const { service: segments } = service();
      const holder = audience('Crash into a taken name');
      await segments.ensure(seedPlatform, holder);
      const target = { ...audience('Crash into a taken name') };
      await crashAfterCreate(seedPlatform, target);
      const error = await segments.ensure(seedPlatform, target).catch((caught: unknown) => caught);
      expect(error).toMatchObject({ reason: 'possibleDuplicate' });
      expect((error as Error).message).toContain('looking it up by name did not settle it');
      expect((error as Error).message).not.toContain('cannot look it up');
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

    it('is left unresolved, flagged possibleDuplicate, where neither is available: no second create', async () => {
      const platform = withApi(seedPlatform, {}, { lookupByName: undefined });
      const target = audience('Crash without recovery');
      await crashAfterCreate(platform, target);
      const { service: segments, store } = service();
      const error = await segments.ensure(platform, target).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(SegmentNotReadyError);
      expect(error).toMatchObject({ reason: 'possibleDuplicate' });
      expect((error as Error).message).toContain(
        `dmp segments resolve --platform 99999 --audience ${target.id} --adopt <partner segment id>`,
      );
      expect((error as Error).message).toContain(
        'the connector cannot look it up or repeat the create safely',
      );
      expect(await store.get(platform.id, target.id)).toMatchObject({
        state: 'unresolved',
        possibleDuplicate: true,
        outcomeUnknown: true,
      });
      // Asking again does not call the partner.
      const before = partner.requests.length;
      await expect(segments.ensure(platform, target)).rejects.toMatchObject({ reason: 'possibleDuplicate' });
      expect(partner.requests.length).toBe(before);
      expect(segmentsTitled(target.name)).toHaveLength(1);

      // The operator found it at the partner and adopts it.
      const id = String(segmentsTitled(target.name)[0]!.segment_id);
      expect(await adoptPartnerSegment(store, platform.id, target.id, id, Date.now())).toMatchObject({
        adopted: true,
      });
      const adopted = await segments.ensure(platform, target);
      expect(adopted).toMatchObject({
        partnerSegmentId: id,
        record: { source: 'adopted', possibleDuplicate: false },
      });
      expect(segmentsTitled(target.name)).toHaveLength(1);
    });

    it('an unresolved segment is created on the operator confirmation, once', async () => {
      const platform = withApi(seedPlatform, {}, { lookupByName: undefined });
      const target = audience('Confirmed create');
      const { service: segments } = service();
      partner.addFault({ status: 502, count: 1, method: 'POST', pathPrefix: '/v1/segment' });
      await expect(segments.ensure(platform, target)).rejects.toMatchObject({ reason: 'possibleDuplicate' });
      // The 502 did not create anything (the operator checks the partner and confirms).
      expect(segmentsTitled(target.name)).toHaveLength(0);
      const created = await segments.ensure(platform, target, { confirmCreate: true });
      expect(created.record).toMatchObject({ state: 'ready', source: 'created', possibleDuplicate: false });
      expect(segmentsTitled(target.name)).toHaveLength(1);
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

describe('exactly once against a partner that creates twice, under faults and parallel callers', () => {
  /** Ways a create fails after the partner carried it out. */
  const FAULTS = {
    '500 after creating': { status: 500, process: true },
    'reset after the request was read': { reset: true, process: true },
    'answer after the timeout': { hold: true },
    'a 200 whose body is cut short': { malformed: true },
  } as const;
  /** What the connector can do about an unknown outcome. */
  const CONNECTORS = {
    'lookup by name': { segments: {}, dedupe: false, resolvable: true },
    'an idempotency key': {
      segments: { lookupByName: undefined, idempotencyKeyHeader: 'Idempotency-Key' },
      dedupe: false,
      resolvable: true,
    },
    'a partner that de-duplicates (createDeduplicates)': {
      segments: { lookupByName: undefined, createDeduplicates: true },
      dedupe: true,
      resolvable: true,
    },
    'no way to check': { segments: { lookupByName: undefined }, dedupe: false, resolvable: false },
  } as const;

  const cases = Object.entries(CONNECTORS).flatMap(([connector, setup]) =>
    Object.entries(FAULTS).map(([fault, spec]) => [connector, fault, setup, spec] as const),
  );

  it.each(cases)(
    'with %s, on %s: one segment per audience, or a flagged record',
    async (_, __, setup, spec) => {
      partner.setDedupeTitles(setup.dedupe);
      const platform = withApi(seedPlatform, { timeoutMs: 200 }, setup.segments);
      const audiences = Array.from({ length: 4 }, (_, i) => audience(`Faulty ${counter} #${i}`));
      partner.addFault({ ...spec, count: audiences.length, method: 'POST', pathPrefix: '/v1/segment' });
      // Three Lambdas per audience, all at once.
      const first = await Promise.allSettled(
        audiences.flatMap((target) =>
          [1, 2, 3].map(() => service().service.ensure(platform, target, { waitMs: 30_000 })),
        ),
      );
      // Every refusal is an explicit "not ready", never a silent success with a twin.
      for (const outcome of first) {
        if (outcome.status === 'rejected') expect(outcome.reason).toBeInstanceOf(SegmentNotReadyError);
      }
      // The next use of each audience (faults gone).
      partner.releaseHeld();
      const { service: later, store } = service();
      for (const target of audiences) await later.ensure(platform, target).catch(() => undefined);

      for (const target of audiences) {
        const record = await store.get(platform.id, target.id);
        const atPartner = segmentsTitled(target.name);
        if (setup.resolvable) {
          expect(record).toMatchObject({ state: 'ready', possibleDuplicate: false });
          expect(atPartner).toHaveLength(1);
          expect(record?.partnerSegmentId).toBe(String(atPartner[0]!.segment_id));
        } else {
          // Nothing can tell whether the partner made it: an operator decides, and nothing was made twice.
          expect(record).toMatchObject({ state: 'unresolved', possibleDuplicate: true });
          expect(atPartner).toHaveLength(1);
        }
      }
    },
  );

  it('stores a 17-digit id exactly, and uses it for renames', async () => {
    partner.addFault({ bigId: true, count: 1, method: 'POST', pathPrefix: '/v1/segment' });
    const { service: segments, store } = service();
    const target = audience('Huge id');
    const result = await segments.ensure(seedPlatform, target);
    const [segment] = segmentsTitled('Huge id');
    expect(typeof segment?.segment_id).toBe('bigint');
    expect(result.partnerSegmentId).toBe(String(segment!.segment_id));
    expect(result.partnerSegmentId).toMatch(/^\d{17}$/);
    expect((await store.get(99999, target.id))?.partnerSegmentId).toBe(result.partnerSegmentId);
    await segments.ensure(seedPlatform, { ...target, name: 'Huge id renamed' });
    expect(partner.requests.at(-1)?.path).toBe(`/v1/segment/${result.partnerSegmentId}`);
    expect(segmentsTitled('Huge id renamed')).toHaveLength(1);
    expect(creates('Huge id')).toHaveLength(1);
  });

  it('never puts two audiences on one partner segment: a collision is refused with a clear error', async () => {
    partner.setDedupeTitles(true);
    const { service: segments, store } = service();
    const first = audience('Shared name');
    const second = audience('Shared name');
    const owner = await segments.ensure(seedPlatform, first);
    const error = await segments.ensure(seedPlatform, second).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(SegmentRefusedError);
    expect((error as Error).message).toContain(
      `partner segment ${owner.partnerSegmentId} already belongs to audience ${first.id}`,
    );
    expect((error as Error).message).toContain('{audienceId}');
    expect(await store.get(99999, second.id)).toMatchObject({
      state: 'failed',
      lastError: { step: 'claim' },
    });
    expect((await store.get(99999, second.id))?.partnerSegmentId).toBeUndefined();
  });

  it('a 429 with a long Retry-After records when to come back; callers before then are told so without a call', async () => {
    let now = Date.now();
    const store = new DynamoSegmentStore(client, SEGMENT_TABLE.localName);
    const clients = new PartnerClients(async () => CREDENTIALS.basic, { now: () => now });
    const segments = new SegmentService({
      environment: 'test',
      store,
      partnerFor: (platform) => clients.for(platform),
      now: () => now,
    });
    const target = audience('Throttled');
    partner.addFault({ status: 429, retryAfter: 3600, count: 1, method: 'POST', pathPrefix: '/v1/segment' });
    const first = await segments.ensure(seedPlatform, target).catch((caught: unknown) => caught);
    expect(first).toMatchObject({
      name: 'SegmentNotReadyError',
      reason: 'throttled',
      retryAt: now + 3_600_000,
    });
    expect(await store.get(99999, target.id)).toMatchObject({
      state: 'retry',
      retryAt: now + 3_600_000,
      outcomeUnknown: false,
    });
    const calls = partner.requests.length;
    now += 60_000;
    await expect(segments.ensure(seedPlatform, target)).rejects.toMatchObject({ reason: 'throttled' });
    expect(partner.requests.length).toBe(calls);
    now += 3_600_000;
    const ready = await segments.ensure(seedPlatform, target);
    expect(ready.record).toMatchObject({ state: 'ready', source: 'created' });
    expect(ready.record.retryAt).toBeUndefined();
  });

  it('an id obtained after the lease was lost is kept, as an orphan that flags the record', async () => {
    const target = audience('Lost lease');
    partner.addFault({ hold: true, count: 1, method: 'POST', pathPrefix: '/v1/segment' });
    const slow = service().service.ensure(seedPlatform, target);
    await partner.waitForHeld(1);
    // An hour later (for this Lambda's clock), the lease has run out: another caller takes over.
    // It is configured as if the partner de-duplicated, so it creates a second segment.
    const store = new DynamoSegmentStore(client, SEGMENT_TABLE.localName);
    const clients = new PartnerClients(async () => CREDENTIALS.basic);
    const takeover = new SegmentService({
      environment: 'test',
      store,
      partnerFor: (platform) => clients.for(platform),
      now: () => Date.now() + 3_600_000,
    });
    const misconfigured = withApi(seedPlatform, {}, { lookupByName: undefined, createDeduplicates: true });
    const second = await takeover.ensure(misconfigured, target);
    partner.releaseHeld();
    const late = await slow;
    const [firstSegment, secondSegment] = segmentsTitled('Lost lease');
    expect(second.partnerSegmentId).toBe(String(secondSegment!.segment_id));
    expect(late.partnerSegmentId).toBe(second.partnerSegmentId);
    expect(await store.get(99999, target.id)).toMatchObject({
      state: 'ready',
      partnerSegmentId: second.partnerSegmentId,
      possibleDuplicate: true,
      orphans: [{ partnerSegmentId: String(firstSegment!.segment_id) }],
    });
  });

  it('a holder that lost its lease makes no further partner call', async () => {
    // This Lambda's lease is taken over between its create (answered 500) and its lookup.
    class TakenOver extends DynamoSegmentStore {
      renewals = 0;
      override async renewLease(...args: Parameters<DynamoSegmentStore['renewLease']>) {
        this.renewals += 1;
        return this.renewals === 1 ? super.renewLease(...args) : false;
      }
    }
    const store = new TakenOver(client, SEGMENT_TABLE.localName);
    const clients = new PartnerClients(async () => CREDENTIALS.basic);
    const segments = new SegmentService({ environment: 'test', store, partnerFor: (p) => clients.for(p) });
    const target = audience('Taken over');
    partner.addFault({ status: 500, process: true, count: 1, method: 'POST', pathPrefix: '/v1/segment' });
    await expect(segments.ensure(seedPlatform, target)).rejects.toMatchObject({
      name: 'SegmentNotReadyError',
      reason: 'leaseLost',
    });
    expect(creates('Taken over')).toHaveLength(1);
    expect(lookups('Taken over')).toHaveLength(0);
    // The next caller, once the lease has run out, recovers it by name without a second create.
    const later = new SegmentService({
      environment: 'test',
      store: new DynamoSegmentStore(client, SEGMENT_TABLE.localName),
      partnerFor: (p) => clients.for(p),
      now: () => Date.now() + 3_600_000,
    });
    expect((await later.ensure(seedPlatform, target)).record.source).toBe('lookup');
    expect(segmentsTitled('Taken over')).toHaveLength(1);
  });

  it('an OAuth2 token endpoint failure names the token endpoint, not segment creation', async () => {
    const platform = withApi(seedPlatform, {
      auth: { type: 'oauth2ClientCredentials', tokenUrl: '/oauth/token' },
    });
    const { service: segments, store } = service({
      clientId: 'reference-client',
      clientSecret: 'fresh-client-secret',
    });
    partner.addFault({ status: 200, body: '{"token_type":"mac"}', count: 1, pathPrefix: '/oauth' });
    const target = audience('Token trouble');
    const error = await segments.ensure(platform, target).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(SegmentRefusedError);
    expect((error as Error).message).toContain("the partner's OAuth2 token endpoint refused: HTTP 200");
    expect((error as Error).message).not.toContain('refused segment creation');
    expect(await store.get(platform.id, target.id)).toMatchObject({
      lastError: { step: 'token', status: 200 },
    });
    expect(creates('Token trouble')).toHaveLength(0);
  });

  it.each([
    [
      'a bearer token with / escaped as \\/',
      { token: 'tok/en+with/slashes' },
      { type: 'bearer' },
      '"authorization":"Bearer tok\\/en+with\\/slashes"',
    ],
    [
      'a non-ASCII basic password escaped as \\uXXXX',
      { username: 'foo', password: 'pässwörd/秘' },
      { type: 'basic' },
      '"password":"p\\u00e4ssw\\u00f6rd\\/\\u79d8"',
    ],
  ])('keeps %s out of the stored error and the message', async (_, credentials, auth, echo) => {
    const platform = withApi(seedPlatform, { auth });
    const { service: segments, store } = service(credentials);
    partner.addFault({
      status: 400,
      body: `{"error":"bad request",${echo}}`,
      count: 1,
      method: 'POST',
      pathPrefix: '/v1/segment',
    });
    const target = audience(`Echo ${counter}`);
    const error = await segments.ensure(platform, target).catch((caught: unknown) => caught);
    const stored = await store.get(platform.id, target.id);
    const texts = [JSON.stringify(stored), (error as Error).message];
    for (const text of texts) {
      expect(text).toContain('bad request');
      expect(text).toContain('***');
      for (const secret of Object.values(credentials).filter((value) => value !== 'foo')) {
        expect(text).not.toContain(secret);
        expect(text).not.toContain(JSON.stringify(secret).slice(1, -1).replaceAll('/', '\\/'));
        expect(text).not.toContain('tok\\/en');
        expect(text).not.toContain('p\\u00e4ss');
      }
    }
  });

  it('a stored id the partner no longer knows (404 on use) is replaced, not delivered into', async () => {
    const { service: segments, store } = service();
    const target = audience('Forgotten');
    const old = await segments.ensure(seedPlatform, target);
    partner.addFault({ status: 404, count: 1, method: 'PUT' });
    const renewed = await segments.ensure(seedPlatform, { ...target, name: 'Forgotten 2' });
    expect(renewed.partnerSegmentId).not.toBe(old.partnerSegmentId);
    expect(renewed.record).toMatchObject({ state: 'ready', nameAtPartner: 'Forgotten 2' });
    expect(segmentsTitled('Forgotten 2')).toHaveLength(1);

    // The population step reports a 404 the same way.
    expect(
      await segments.reportUnknownAtPartner(99999, target.id, renewed.partnerSegmentId, {
        status: 404,
        message: 'unknown segment',
      }),
    ).toBe(true);
    expect(await store.get(99999, target.id)).toMatchObject({
      state: 'retry',
      lastError: { message: expect.stringContaining(`no longer knows segment ${renewed.partnerSegmentId}`) },
    });
  });

  it("an error after creation that is not the partner's (the store) propagates, not recorded as a rename error", async () => {
    const { service: segments } = service();
    const target = audience('Store trouble');
    await segments.ensure(seedPlatform, target);
    class FailingStore extends DynamoSegmentStore {
      override async recordName(): Promise<void> {
        throw new Error('the table is unreachable');
      }
    }
    const failing = new FailingStore(client, SEGMENT_TABLE.localName);
    const clients = new PartnerClients(async () => CREDENTIALS.basic);
    const broken = new SegmentService({
      environment: 'test',
      store: failing,
      partnerFor: (p) => clients.for(p),
    });
    await expect(broken.ensure(seedPlatform, { ...target, name: 'Store trouble 2' })).rejects.toThrow(
      'the table is unreachable',
    );
    const record = await new DynamoSegmentStore(client, SEGMENT_TABLE.localName).get(99999, target.id);
    expect(record?.renameError).toBeUndefined();
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

import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  type PartnerCredentials,
  type ReferencePartner,
  startReferencePartner,
  TTD_MAX_BODY_BYTES,
} from '../../local/reference-partner.ts';

/**
 * The reference partner's API side: credentials, the seed's segment API, the Meta-like and
 * Trade-Desk-like shapes, fault switches and the request log. Everything on 127.0.0.1, port 0,
 * with an injected clock; held answers are released by the tests, nothing waits on real time.
 */

const START = Date.parse('2026-11-02T10:00:00Z');
let clock = START;
const now = () => clock;

const BASIC = `Basic ${Buffer.from('foo:bar').toString('base64')}`;
const HMAC_KEY_ID = 'ref-k1';
const HMAC_KEY = 'reference-hmac-key-0001';
const UNAUTHORIZED = { status: 'ERROR', error: 'unauthorized' };

interface CallOptions {
  readonly method?: string;
  readonly body?: string | Buffer;
  readonly headers?: Record<string, string>;
  /** An Authorization header value, or `null` for none; default basic foo:bar. */
  readonly authorization?: string | null;
  readonly signal?: AbortSignal;
}

function call(partner: ReferencePartner, path: string, options: CallOptions = {}): Promise<Response> {
  const authorization = options.authorization === undefined ? BASIC : options.authorization;
  return fetch(`${partner.url}${path}`, {
    method: options.method ?? 'GET',
    headers: { ...(authorization === null ? {} : { authorization }), ...options.headers },
    ...(options.body !== undefined ? { body: options.body } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
}

function postJson(
  partner: ReferencePartner,
  path: string,
  body: unknown,
  method = 'POST',
): Promise<Response> {
  return call(partner, path, {
    method,
    body: JSON.stringify(body),
    headers: { 'content-type': 'application/json' },
  });
}

/** Signs as the contract says, independently of src/connectors/auth/hmac.ts. */
function signature(
  method: string,
  pathAndQuery: string,
  body: string,
  options: { algorithm?: 'sha1' | 'sha256'; keyId?: string; key?: string; timestamp?: number } = {},
): Record<string, string> {
  const timestamp = options.timestamp ?? Math.floor(clock / 1000);
  const mac = createHmac(options.algorithm ?? 'sha256', options.key ?? HMAC_KEY)
    .update(`dmp-request-v1\n${method}\n${pathAndQuery}\n${timestamp}\n`, 'utf8')
    .update(Buffer.from(body, 'utf8'))
    .digest('hex');
  return {
    'x-dmp-key-id': options.keyId ?? HMAC_KEY_ID,
    'x-dmp-timestamp': String(timestamp),
    'x-dmp-signature': mac,
  };
}

function lastRequest(partner: ReferencePartner) {
  const last = partner.requests.at(-1);
  expect(last).toBeDefined();
  return last!;
}

async function createSegment(partner: ReferencePartner, title: string): Promise<number> {
  const response = await call(partner, `/v1/segment?title=${encodeURIComponent(title)}`, { method: 'POST' });
  expect(response.status).toBe(200);
  return ((await response.json()) as { segment_id: number }).segment_id;
}

/** A plain node:http request without keep-alive, for what fetch hides (connection resets). */
function rawRequest(
  partner: ReferencePartner,
  path: string,
  method = 'POST',
  headers: Record<string, string> = { authorization: BASIC },
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const outgoing = httpRequest(
      { host: '127.0.0.1', port: partner.port, path, method, agent: false, headers },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () =>
          resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
        response.on('error', reject);
      },
    );
    outgoing.on('error', reject);
    outgoing.end();
  });
}

let partner: ReferencePartner;

beforeAll(async () => {
  partner = await startReferencePartner({ now });
});

afterAll(async () => {
  await partner?.stop();
});

beforeEach(() => {
  clock = START;
  partner.resetAll();
});

describe('reference partner API: credentials', () => {
  it('accepts basic, bearer, API key, OAuth2 and HMAC credentials and logs which one, never the secret', async () => {
    const token = (await (
      await call(partner, '/oauth/token', {
        method: 'POST',
        authorization: `Basic ${Buffer.from('reference-client:reference-client-secret').toString('base64')}`,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'grant_type=client_credentials',
      })
    ).json()) as { access_token: string };

    const path = '/v1/segments?title=x';
    const attempts: [string, CallOptions, string][] = [
      ['basic', {}, 'basic'],
      ['bearer', { authorization: 'Bearer reference-bearer-token' }, 'bearer'],
      ['apiKey', { authorization: null, headers: { 'x-api-key': 'reference-api-key' } }, 'apiKey'],
      ['oauth2', { authorization: `Bearer ${token.access_token}` }, 'oauth2'],
      ['hmac', { authorization: null, headers: signature('GET', path, '') }, 'hmac'],
    ];
    for (const [name, options, method] of attempts) {
      const response = await call(partner, path, options);
      expect(response.status, name).toBe(200);
      expect(await response.json(), name).toEqual({ segments: [] });
      expect(lastRequest(partner).auth, name).toBe(method);
    }
    const log = partner.requests.slice(-5);
    expect(log.map((request) => request.authDetail)).toEqual([
      'foo',
      undefined,
      undefined,
      'reference-client',
      'ref-k1 sha256',
    ]);
    expect(log[0]!.headers['authorization']).toBe('[redacted]');
    expect(log[2]!.headers['x-api-key']).toBe('[redacted]');
    expect(log[4]!.headers['x-dmp-signature']).toBe('[redacted]');
    expect(log[4]!.headers['x-dmp-key-id']).toBe('ref-k1');

    const served = await (await fetch(`${partner.url}/__requests`)).text();
    for (const secret of [
      'reference-bearer-token',
      'reference-api-key',
      'reference-client-secret',
      token.access_token,
      Buffer.from('foo:bar').toString('base64'),
      (attempts[4]![1].headers as Record<string, string>)['x-dmp-signature']!,
    ]) {
      expect(served).not.toContain(secret);
      expect(JSON.stringify(partner.requests)).not.toContain(secret);
    }
  });

  it('refuses a missing or wrong credential with 401 and logs why', async () => {
    const path = '/v1/segments';
    const attempts: [string, CallOptions, string][] = [
      ['none', { authorization: null }, 'no credentials'],
      [
        'wrong password',
        { authorization: `Basic ${Buffer.from('foo:baz').toString('base64')}` },
        'basic: wrong username or password',
      ],
      ['wrong user', { authorization: `Basic ${Buffer.from('bar:bar').toString('base64')}` }, 'basic:'],
      ['wrong bearer', { authorization: 'Bearer nope' }, 'bearer: unknown token'],
      ['other scheme', { authorization: 'Digest username="foo"' }, 'authorization: unsupported scheme'],
      ['wrong API key', { authorization: null, headers: { 'x-api-key': 'nope' } }, 'apiKey: wrong key'],
      ['good basic with a wrong API key', { headers: { 'x-api-key': 'nope' } }, 'apiKey: wrong key'],
      [
        'HMAC over another path',
        { authorization: null, headers: signature('GET', '/v1/segments?title=x', '') },
        'hmac: signature_invalid',
      ],
      [
        'HMAC with a wrong key',
        { authorization: null, headers: signature('GET', path, '', { key: 'other' }) },
        'hmac: signature_invalid',
      ],
      [
        'HMAC with an unknown key id',
        { authorization: null, headers: signature('GET', path, '', { keyId: 'ref-k9' }) },
        'hmac: signature_unknown_key',
      ],
      [
        'HMAC too old',
        { authorization: null, headers: signature('GET', path, '', { timestamp: clock / 1000 - 301 }) },
        'hmac: signature_stale',
      ],
      [
        'HMAC with SHA-1 where SHA-256 is configured',
        { authorization: null, headers: signature('GET', path, '', { algorithm: 'sha1' }) },
        'hmac: signature_malformed',
      ],
    ];
    for (const [name, options, reason] of attempts) {
      const response = await call(partner, path, options);
      expect(response.status, name).toBe(401);
      expect(response.headers.get('www-authenticate'), name).toMatch(/realm="reference-partner"/);
      expect(await response.json(), name).toEqual(UNAUTHORIZED);
      const record = lastRequest(partner);
      expect(record.auth, name).toBeUndefined();
      expect(record.authError, name).toContain(reason);
      expect(record.status, name).toBe(401);
    }
    expect(partner.segments()).toEqual([]);
  });

  it('checks an HMAC signature over the exact body bytes', async () => {
    const id = await createSegment(partner, 'signed');
    const body = JSON.stringify([{ segment: id, userid: 'ü-1' }]);
    const headers = { 'content-type': 'application/json', ...signature('POST', '/v1/segment', body) };
    const good = await call(partner, '/v1/segment', { method: 'POST', authorization: null, body, headers });
    expect(good.status).toBe(200);
    expect(partner.members(id)).toEqual(['ü-1']);

    const tampered = body.replace('ü-1', 'ü-2');
    const bad = await call(partner, '/v1/segment', {
      method: 'POST',
      authorization: null,
      body: tampered,
      headers,
    });
    expect(bad.status).toBe(401);
    expect(partner.members(id)).toEqual(['ü-1']);

    // The request target is signed as sent: a `'` that fetch would escape to %27 stays as it is.
    const target = "/v1/segment?title=it's%20signed";
    const signed = await rawRequest(partner, target, 'POST', signature('POST', target, ''));
    expect(signed).toMatchObject({ status: 200 });
    expect(lastRequest(partner)).toMatchObject({ url: target, auth: 'hmac' });
    expect(partner.segments().at(-1)!.title).toBe("it's signed");
  });

  it('accepts HMAC-SHA1 where configured, and turns methods off or changes them by option', async () => {
    const custom = await startReferencePartner({
      now,
      credentials: {
        basic: false,
        bearerToken: 'other-token',
        apiKey: { header: 'X-Partner-Key', value: 'k-123' },
        hmac: { algorithms: ['sha1', 'sha256'] },
      } satisfies PartnerCredentials,
    });
    try {
      const path = '/v1/segments';
      expect((await call(custom, path)).status).toBe(401);
      expect(custom.requests.at(-1)!.authError).toBe('basic: basic authentication is not accepted');
      expect((await call(custom, path, { authorization: 'Bearer reference-bearer-token' })).status).toBe(401);
      expect((await call(custom, path, { authorization: 'Bearer other-token' })).status).toBe(200);
      const key = { authorization: null, headers: { 'x-partner-key': 'k-123' } };
      expect((await call(custom, path, key)).status).toBe(200);
      expect(custom.requests.at(-1)!.headers['x-partner-key']).toBe('[redacted]');
      for (const algorithm of ['sha1', 'sha256'] as const) {
        const signed = await call(custom, path, {
          authorization: null,
          headers: signature('GET', path, '', { algorithm }),
        });
        expect(signed.status, algorithm).toBe(200);
        expect(custom.requests.at(-1)!.authDetail).toBe(`ref-k1 ${algorithm}`);
      }
    } finally {
      await custom.stop();
    }

    const sha1Only = await startReferencePartner({ now, credentials: { hmac: { algorithms: ['sha1'] } } });
    try {
      const path = '/v1/segments';
      const sha1 = signature('GET', path, '', { algorithm: 'sha1' });
      expect((await call(sha1Only, path, { authorization: null, headers: sha1 })).status).toBe(200);
      const sha256 = signature('GET', path, '');
      expect((await call(sha1Only, path, { authorization: null, headers: sha256 })).status).toBe(401);
    } finally {
      await sha1Only.stop();
    }
  });

  it('does not ask /sync, the log or the fault switches for credentials', async () => {
    const out = 'https://dmp.example/uid?userid=[[USERID]]&pl=99999';
    const sync = await fetch(`${partner.url}/sync?out=${encodeURIComponent(out)}`, { redirect: 'manual' });
    expect(sync.status).toBe(302);
    expect(lastRequest(partner).auth).toBeUndefined();
    expect((await fetch(`${partner.url}/__requests`)).status).toBe(200);
    expect((await fetch(`${partner.url}/__faults`)).status).toBe(200);
  });
});

describe('reference partner API: OAuth2 client credentials', () => {
  const form = { 'content-type': 'application/x-www-form-urlencoded' };
  const clientBasic = `Basic ${Buffer.from('reference-client:reference-client-secret').toString('base64')}`;

  async function token(options: CallOptions): Promise<Response> {
    return call(partner, '/oauth/token', { method: 'POST', headers: form, ...options });
  }

  it('issues random bearer tokens, client authenticated by basic or in the body', async () => {
    const viaBasic = await token({ authorization: clientBasic, body: 'grant_type=client_credentials' });
    expect(viaBasic.status).toBe(200);
    expect(viaBasic.headers.get('cache-control')).toBe('no-store');
    const first = (await viaBasic.json()) as Record<string, unknown>;
    expect(first).toEqual({ access_token: expect.any(String), token_type: 'Bearer', expires_in: 3600 });
    expect(lastRequest(partner)).toMatchObject({
      auth: 'oauth2Client',
      authDetail: 'client_secret_basic reference-client',
    });

    const viaBody = await token({
      authorization: null,
      body: 'grant_type=client_credentials&client_id=reference-client&client_secret=reference-client-secret&scope=audiences',
    });
    expect(viaBody.status).toBe(200);
    const second = (await viaBody.json()) as Record<string, unknown>;
    expect(second).toMatchObject({ token_type: 'Bearer', expires_in: 3600, scope: 'audiences' });
    expect(second['access_token']).not.toBe(first['access_token']);
    expect(lastRequest(partner)).toMatchObject({
      auth: 'oauth2Client',
      authDetail: 'client_secret_post reference-client',
      body: 'grant_type=client_credentials&client_id=reference-client&client_secret=[redacted]&scope=audiences',
    });

    for (const access of [first['access_token'], second['access_token']]) {
      expect((await call(partner, '/v1/segments', { authorization: `Bearer ${access}` })).status).toBe(200);
    }
  });

  it('refuses a wrong client, a missing or other grant type, and two client authentications', async () => {
    const wrongSecret = await token({
      authorization: `Basic ${Buffer.from('reference-client:nope').toString('base64')}`,
      body: 'grant_type=client_credentials',
    });
    expect(wrongSecret.status).toBe(401);
    expect(wrongSecret.headers.get('www-authenticate')).toBe('Basic realm="reference-partner"');
    expect(await wrongSecret.json()).toMatchObject({ error: 'invalid_client' });

    const wrongBody = await token({
      authorization: null,
      body: 'grant_type=client_credentials&client_id=reference-client&client_secret=nope',
    });
    expect(wrongBody.status).toBe(401);
    expect(JSON.stringify(partner.requests)).not.toContain('client_secret=nope');

    const noClient = await token({ authorization: null, body: 'grant_type=client_credentials' });
    expect(noClient.status).toBe(401);

    const password = await token({ authorization: clientBasic, body: 'grant_type=password&username=a' });
    expect(password.status).toBe(400);
    expect(await password.json()).toMatchObject({ error: 'unsupported_grant_type' });

    const missing = await token({ authorization: clientBasic, body: '' });
    expect(missing.status).toBe(400);
    expect(await missing.json()).toMatchObject({ error: 'invalid_request' });

    const both = await token({
      authorization: clientBasic,
      body: 'grant_type=client_credentials&client_id=reference-client&client_secret=reference-client-secret',
    });
    expect(both.status).toBe(400);
    expect(await both.json()).toMatchObject({ error: 'invalid_request' });
  });

  it('accepts a token until it expires, by the injected clock', async () => {
    const issued = (await (
      await token({ authorization: clientBasic, body: 'grant_type=client_credentials' })
    ).json()) as { access_token: string; expires_in: number };
    const bearer = { authorization: `Bearer ${issued.access_token}` };

    clock = START + (issued.expires_in - 1) * 1000;
    expect((await call(partner, '/v1/segments', bearer)).status).toBe(200);

    clock = START + issued.expires_in * 1000;
    const expired = await call(partner, '/v1/segments', bearer);
    expect(expired.status).toBe(401);
    expect(expired.headers.get('www-authenticate')).toContain('error="invalid_token"');
    expect(await expired.json()).toEqual(UNAUTHORIZED);
    expect(lastRequest(partner).authError).toBe('oauth2: access token expired');

    // A fresh token works again.
    const fresh = (await (
      await token({ authorization: clientBasic, body: 'grant_type=client_credentials' })
    ).json()) as { access_token: string };
    expect(
      (await call(partner, '/v1/segments', { authorization: `Bearer ${fresh.access_token}` })).status,
    ).toBe(200);
  });

  it('takes expires_in and the client from options', async () => {
    const custom = await startReferencePartner({
      now,
      credentials: { oauth2: { clientId: 'c', clientSecret: 's', expiresInSeconds: 60 } },
    });
    try {
      const response = await call(custom, '/oauth/token', {
        method: 'POST',
        authorization: null,
        headers: form,
        body: 'grant_type=client_credentials&client_id=c&client_secret=s',
      });
      const issued = (await response.json()) as { access_token: string; expires_in: number };
      expect(issued.expires_in).toBe(60);
      clock = START + 59_999;
      expect(
        (await call(custom, '/v1/segments', { authorization: `Bearer ${issued.access_token}` })).status,
      ).toBe(200);
      clock = START + 60_000;
      expect(
        (await call(custom, '/v1/segments', { authorization: `Bearer ${issued.access_token}` })).status,
      ).toBe(401);
    } finally {
      await custom.stop();
    }
  });
});

describe("reference partner API: the seed's segment API", () => {
  it("answers the seed's literal request with the seed's literal answer", async () => {
    // curl -XPOST -u foo:bar https://api.third-party.com/v1/segment?title=My%20segment
    const response = await call(partner, '/v1/segment?title=My%20segment', { method: 'POST' });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/json');
    expect(await response.text()).toBe('{"status":"OK","created":true,"segment_id":12345}');
    expect(partner.segments()).toEqual([
      { segment_id: 12345, title: 'My segment', kind: null, external_id: null },
    ]);
  });

  it('creates a second segment for a repeated title, as most platforms do, and counts ids up', async () => {
    expect(await createSegment(partner, 'My segment')).toBe(12345);
    const again = await call(partner, '/v1/segment?title=My%20segment', { method: 'POST' });
    expect(await again.json()).toEqual({ status: 'OK', created: true, segment_id: 12346 });
    expect(await createSegment(partner, 'Other')).toBe(12347);
    expect(partner.segments().map((segment) => segment.segment_id)).toEqual([12345, 12346, 12347]);
    // A lookup by title finds both, oldest first.
    const found = await call(partner, '/v1/segments?title=My%20segment');
    expect(
      ((await found.json()) as { segments: { segment_id: number }[] }).segments.map((s) => s.segment_id),
    ).toEqual([12345, 12346]);
  });

  it('answers created:false with the existing id when title de-duplication is on', async () => {
    partner.setDedupeTitles(true);
    expect(await createSegment(partner, 'My segment')).toBe(12345);
    const again = await call(partner, '/v1/segment?title=My%20segment', { method: 'POST' });
    expect(await again.json()).toEqual({ status: 'OK', created: false, segment_id: 12345 });
    expect(partner.segments()).toHaveLength(1);
    // resetAll() goes back to the default: no de-duplication.
    partner.resetAll();
    await createSegment(partner, 'My segment');
    expect(await createSegment(partner, 'My segment')).toBe(12346);
    const missing = await call(partner, '/v1/segment?title=', { method: 'POST' });
    expect(missing.status).toBe(400);
    expect(await missing.json()).toEqual({ status: 'ERROR', error: 'missing title' });
  });

  it('replays the first answer for a repeated Idempotency-Key, without a second segment', async () => {
    const create = (title: string, key: string) =>
      call(partner, `/v1/segment?title=${title}&kind=custom&external_id=a1`, {
        method: 'POST',
        headers: { 'idempotency-key': key },
      });
    const first = await create('Buyers', 'key-1');
    expect(await first.json()).toEqual({ status: 'OK', created: true, segment_id: 12345 });
    expect(first.headers.get('idempotent-replayed')).toBeNull();

    const replay = await create('Buyers', 'key-1');
    expect(replay.status).toBe(200);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(await replay.json()).toEqual({ status: 'OK', created: true, segment_id: 12345 });
    expect(partner.segments()).toHaveLength(1);

    // Another key for the same title: another segment (titles are not de-duplicated).
    expect(await (await create('Buyers', 'key-2')).json()).toEqual({
      status: 'OK',
      created: true,
      segment_id: 12346,
    });
    // The same key for another request is a client bug.
    const misuse = await create('Sellers', 'key-1');
    expect(misuse.status).toBe(422);
    expect(partner.segments()).toHaveLength(2);
  });

  it('looks segments up by title, with kind and external id as created', async () => {
    await call(partner, '/v1/segment?title=Buyers&kind=lookalike&external_id=aud-7', { method: 'POST' });
    await createSegment(partner, 'Sellers');
    const found = await call(partner, '/v1/segments?title=Buyers');
    expect(await found.json()).toEqual({
      segments: [{ segment_id: 12345, title: 'Buyers', kind: 'lookalike', external_id: 'aud-7' }],
    });
    expect(await (await call(partner, '/v1/segments?title=Nobody')).json()).toEqual({ segments: [] });
    expect(await (await call(partner, '/v1/segments?title=buyers')).json()).toEqual({ segments: [] });
    const all = (await (await call(partner, '/v1/segments')).json()) as { segments: { title: string }[] };
    expect(all.segments.map((segment) => segment.title)).toEqual(['Buyers', 'Sellers']);
  });

  it('renames a segment, refusing an unknown id and a title another segment has', async () => {
    const id = await createSegment(partner, 'Old name');
    const other = await createSegment(partner, 'Taken');
    const renamed = await call(partner, `/v1/segment/${id}?title=New%20name`, { method: 'PUT' });
    expect(renamed.status).toBe(200);
    expect(await renamed.json()).toEqual({ status: 'OK', segment_id: id, title: 'New name' });
    expect(await (await call(partner, '/v1/segments?title=Old%20name')).json()).toEqual({ segments: [] });
    expect(await (await call(partner, '/v1/segments?title=New%20name')).json()).toMatchObject({
      segments: [{ segment_id: id, title: 'New name' }],
    });
    // The old title is free again.
    expect(await createSegment(partner, 'Old name')).toBe(other + 1);

    const unknown = await call(partner, '/v1/segment/99999?title=x', { method: 'PUT' });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toEqual({ status: 'ERROR', error: 'unknown segment' });
    expect((await call(partner, '/v1/segment/abc?title=x', { method: 'PUT' })).status).toBe(404);

    const clash = await call(partner, `/v1/segment/${id}?title=Taken`, { method: 'PUT' });
    expect(clash.status).toBe(409);
    expect(await clash.json()).toEqual({ status: 'ERROR', error: 'title in use', segment_id: other });
  });

  it('keeps special characters in titles exactly as sent', async () => {
    const titles = ['Cart & "VIP" / 50%', 'a+b = c?#', 'Café ☕ 東京', "  it's  "];
    for (const title of titles) {
      const id = await createSegment(partner, title);
      expect(lastRequest(partner).query['title']).toBe(title);
      const found = await call(partner, `/v1/segments?title=${encodeURIComponent(title)}`);
      expect(await found.json(), title).toEqual({
        segments: [{ segment_id: id, title, kind: null, external_id: null }],
      });
    }
    expect(partner.segments().map((segment) => segment.title)).toEqual(titles);
    // The log keeps the request target as received; fetch (WHATWG URL) escapes `'` in a query.
    expect(lastRequest(partner).url).toBe('/v1/segments?title=%20%20it%27s%20%20');

    // `+` is a space (form style); a broken escape is refused rather than guessed.
    await createSegment(partner, 'x');
    const plus = await call(partner, '/v1/segment?title=two+words', { method: 'POST' });
    expect(await plus.json()).toMatchObject({ created: true });
    expect(partner.segments().at(-1)!.title).toBe('two words');
    const broken = await call(partner, '/v1/segment?title=%E0%A4%A', { method: 'POST' });
    expect(broken.status).toBe(400);
    expect(await broken.json()).toEqual({ status: 'ERROR', error: 'malformed query string' });
  });

  it('adds one user per call (no batch): 200 with an empty body, and removes with DELETE', async () => {
    const id = await createSegment(partner, 'Single');
    const added = await call(partner, `/v1/segment?id=${id}&userid=abcdef123`, { method: 'POST' });
    expect(added.status).toBe(200);
    expect(await added.text()).toBe('');
    await call(partner, `/v1/segment?id=${id}&userid=ghjkl1321`, { method: 'POST' });
    await call(partner, `/v1/segment?id=${id}&userid=abcdef123`, { method: 'POST' });
    expect(partner.members(id)).toEqual(['abcdef123', 'ghjkl1321']);

    const removed = await call(partner, `/v1/segment?id=${id}&userid=abcdef123`, { method: 'DELETE' });
    expect(removed.status).toBe(200);
    expect(partner.members(id)).toEqual(['ghjkl1321']);

    const unknown = await call(partner, '/v1/segment?id=1&userid=u', { method: 'POST' });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toEqual({ status: 'ERROR', error: 'unknown segment' });
    expect((await call(partner, `/v1/segment?id=${id}`, { method: 'POST' })).status).toBe(400);
  });

  it('adds and removes micro batches, with per-item errors for unknown segments', async () => {
    const a = await createSegment(partner, 'A');
    const b = await createSegment(partner, 'B');
    const batch = [
      { segment: a, userid: 'abcdef123' },
      { segment: b, userid: 'ghjkl1321' },
      { segment: a, userid: 'u3' },
    ];
    const ok = await postJson(partner, '/v1/segment', batch);
    expect(ok.status).toBe(200);
    expect(await ok.text()).toBe('{"status":"OK","processed":3}');
    expect(partner.members(a)).toEqual(['abcdef123', 'u3']);
    expect(partner.members(b)).toEqual(['ghjkl1321']);

    const partial = await postJson(partner, '/v1/segment', [
      { segment: 45678, userid: 'x' },
      { segment: a, userid: 'u4' },
      { segment: String(a), userid: 'u5' },
      { segment: a },
      'u6',
    ]);
    expect(partial.status).toBe(200);
    expect(await partial.json()).toEqual({
      status: 'PARTIAL',
      processed: 1,
      errors: [
        { index: 0, error: 'unknown segment' },
        { index: 2, error: 'malformed item' },
        { index: 3, error: 'malformed item' },
        { index: 4, error: 'malformed item' },
      ],
    });
    expect(partner.members(a)).toEqual(['abcdef123', 'u3', 'u4']);

    const removed = await postJson(
      partner,
      '/v1/segment',
      [
        { segment: a, userid: 'abcdef123' },
        { segment: a, userid: 'never-added' },
        { segment: b, userid: 'ghjkl1321' },
      ],
      'DELETE',
    );
    expect(await removed.json()).toEqual({ status: 'OK', processed: 3 });
    expect(partner.members(a)).toEqual(['u3', 'u4']);
    expect(partner.members(b)).toEqual([]);

    expect(await (await postJson(partner, '/v1/segment', [])).json()).toEqual({ status: 'OK', processed: 0 });
    for (const body of ['{"segment":1}', 'not json', '']) {
      const refused = await call(partner, '/v1/segment', { method: 'POST', body });
      expect(refused.status, body).toBe(400);
      expect(await refused.json()).toEqual({ status: 'ERROR', error: 'body must be a JSON array' });
    }
  });

  it('answers 404 for unknown paths and 405 for other methods', async () => {
    expect((await call(partner, '/v2/segment')).status).toBe(404);
    const wrongMethod = await call(partner, '/v1/segments', { method: 'POST' });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get('allow')).toBe('GET');
  });
});

describe('reference partner API: Meta-like custom audiences', () => {
  const ACCOUNT = '/meta/act_1234567890';

  async function createAudience(name: string): Promise<string> {
    const response = await postJson(partner, `${ACCOUNT}/customaudiences`, {
      name,
      subtype: 'CUSTOM',
      description: 'from the DMP',
      customer_file_source: 'USER_PROVIDED_ONLY',
    });
    expect(response.status).toBe(200);
    return ((await response.json()) as { id: string }).id;
  }

  function rows(count: number, prefix = 'u'): string[][] {
    return Array.from({ length: count }, (_, index) => [`${prefix}${index}`]);
  }

  it('creates audiences with string ids (JSON or form), lists them by name and renames', async () => {
    const created = await postJson(partner, `${ACCOUNT}/customaudiences`, {
      name: 'Cart & "VIP"',
      subtype: 'CUSTOM',
      description: 'd',
      customer_file_source: 'USER_PROVIDED_ONLY',
    });
    expect(await created.text()).toBe('{"id":"23850000000000001"}');

    const viaForm = await call(partner, '/meta/v21.0/act_1234567890/customaudiences', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ name: 'Buyers', subtype: 'CUSTOM' }).toString(),
    });
    expect(await viaForm.json()).toEqual({ id: '23850000000000002' });
    // Like Meta, a second audience with the same name is created, not found.
    expect(await createAudience('Buyers')).toBe('23850000000000003');

    const listed = await call(partner, `${ACCOUNT}/customaudiences?name=${encodeURIComponent('Buyers')}`);
    expect(await listed.json()).toEqual({
      data: [
        { id: '23850000000000002', name: 'Buyers' },
        { id: '23850000000000003', name: 'Buyers' },
      ],
    });
    expect(await (await call(partner, `${ACCOUNT}/customaudiences?name=Nobody`)).json()).toEqual({
      data: [],
    });
    expect(await (await call(partner, '/meta/act_999/customaudiences')).json()).toEqual({ data: [] });

    const renamed = await postJson(partner, '/meta/23850000000000001', { name: 'Renamed' });
    expect(await renamed.json()).toEqual({ success: true });
    expect(partner.metaAudiences()[0]).toEqual({
      id: '23850000000000001',
      adAccountId: '1234567890',
      name: 'Renamed',
      subtype: 'CUSTOM',
      description: 'd',
      customer_file_source: 'USER_PROVIDED_ONLY',
    });
    expect(await (await call(partner, '/meta/23850000000000001')).json()).toMatchObject({
      name: 'Renamed',
      approximate_count: 0,
    });
  });

  it('refuses a create without a name and unknown audiences with Graph API errors', async () => {
    const noName = await postJson(partner, `${ACCOUNT}/customaudiences`, { subtype: 'CUSTOM' });
    expect(noName.status).toBe(400);
    expect(await noName.json()).toEqual({
      error: {
        message: expect.any(String),
        type: 'OAuthException',
        code: 100,
        fbtrace_id: expect.any(String),
      },
    });
    const badSource = await postJson(partner, `${ACCOUNT}/customaudiences`, {
      name: 'x',
      customer_file_source: 'SOMEONE',
    });
    expect(badSource.status).toBe(400);

    const unknown = await postJson(partner, '/meta/42/users', {
      payload: { schema: 'EXTERN_ID', data: [['a']] },
    });
    expect(unknown.status).toBe(400);
    expect(await unknown.json()).toMatchObject({
      error: { type: 'GraphMethodException', code: 100, error_subcode: 33 },
    });
  });

  it('adds and removes users, up to 10,000 rows per request', async () => {
    const id = await createAudience('Uploads');
    const added = await postJson(partner, `/meta/${id}/users`, {
      payload: { schema: 'EXTERN_ID', data: [['id1'], ['id2']] },
    });
    expect(added.status).toBe(200);
    expect(await added.json()).toEqual({ audience_id: id, num_received: 2, num_invalid_entries: 0 });
    expect(partner.metaMembers(id)).toEqual(['id1', 'id2']);

    const full = await postJson(partner, `/meta/${id}/users`, {
      payload: { schema: ['EXTERN_ID'], data: rows(10_000) },
      session: { session_id: 9, batch_seq: 1, last_batch_flag: false },
    });
    expect(full.status).toBe(200);
    expect(await full.json()).toEqual({
      audience_id: id,
      session_id: '9',
      num_received: 10_000,
      num_invalid_entries: 0,
    });
    expect(partner.metaMembers(id)).toHaveLength(10_002);

    const tooMany = await postJson(partner, `/meta/${id}/users`, {
      payload: { schema: 'EXTERN_ID', data: rows(10_001, 'v') },
    });
    expect(tooMany.status).toBe(400);
    const error = (await tooMany.json()) as { error: { message: string; type: string; code: number } };
    expect(error.error).toMatchObject({ type: 'OAuthException', code: 100 });
    expect(error.error.message).toContain('10000');
    expect(partner.metaMembers(id)).toHaveLength(10_002);

    const removed = await postJson(
      partner,
      `/meta/${id}/users`,
      { payload: { schema: 'EXTERN_ID', data: [['id1'], ['u0'], ['nobody']] } },
      'DELETE',
    );
    expect(await removed.json()).toEqual({ audience_id: id, num_received: 3, num_invalid_entries: 0 });
    expect(partner.metaMembers(id)).toHaveLength(10_000);
    expect(partner.metaMembers(id)).not.toContain('id1');
  });

  it('counts invalid entries (empty ids, unhashed values in hashed schemas)', async () => {
    const id = await createAudience('Hashed');
    const hash = 'a'.repeat(64);
    const response = await call(partner, `/meta/${id}/users`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        payload: JSON.stringify({ schema: 'EMAIL_SHA256', data: [[hash], ['someone@example.com'], [''], 7] }),
      }).toString(),
    });
    expect(await response.json()).toEqual({
      audience_id: id,
      num_received: 4,
      num_invalid_entries: 3,
      invalid_entry_samples: {},
    });
    expect(partner.metaMembers(id)).toEqual([hash]);
  });
});

describe('reference partner API: Trade-Desk-like first-party data', () => {
  const ADVERTISER = 'adv123';
  const upload = (items: unknown[], advertiserId: unknown = ADVERTISER) =>
    postJson(partner, '/ttd/data/advertiser', { AdvertiserId: advertiserId, Items: items });

  it('creates segments implicitly by name, applies TTLs by the clock, and removes with TTL 0', async () => {
    const response = await upload([
      { TDID: 'tdid-1', Data: [{ Name: 'Cart & "VIP"', TTLInMinutes: 43200 }] },
      {
        TDID: 'tdid-2',
        Data: [
          { Name: 'Cart & "VIP"', TTLInMinutes: 60 },
          { Name: 'Other', TTLInMinutes: 5 },
        ],
      },
    ]);
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('{"FailedLines":[]}');
    expect(partner.ttdMembers(ADVERTISER, 'Cart & "VIP"')).toEqual(['tdid-1', 'tdid-2']);
    expect(partner.ttdSegments()).toEqual([
      { advertiserId: ADVERTISER, name: 'Cart & "VIP"', members: 2 },
      { advertiserId: ADVERTISER, name: 'Other', members: 1 },
    ]);

    clock = START + 60 * 60_000;
    expect(partner.ttdMembers(ADVERTISER, 'Cart & "VIP"')).toEqual(['tdid-1']);
    expect(partner.ttdMembers(ADVERTISER, 'Other')).toEqual([]);

    await upload([{ TDID: 'tdid-1', Data: [{ Name: 'Cart & "VIP"', TTLInMinutes: 0 }] }]);
    expect(partner.ttdMembers(ADVERTISER, 'Cart & "VIP"')).toEqual([]);
    expect(partner.ttdMembers('other-advertiser', 'Cart & "VIP"')).toEqual([]);
  });

  it('reports malformed lines by index and applies the others', async () => {
    const response = await upload([
      { TDID: 'ok-1', Data: [{ Name: 'S', TTLInMinutes: 10 }] },
      { Data: [{ Name: 'S', TTLInMinutes: 10 }] },
      { TDID: 'bad-ttl', Data: [{ Name: 'S', TTLInMinutes: -1 }] },
      { TDID: 'no-name', Data: [{ TTLInMinutes: 10 }] },
      { TDID: 'no-data', Data: [] },
      'not an object',
      { DAID: 'ok-2', Data: [{ Name: 'S', TTLInMinutes: 10 }] },
    ]);
    expect(response.status).toBe(200);
    const { FailedLines } = (await response.json()) as { FailedLines: { Index: number; Message: string }[] };
    expect(FailedLines.map((line) => line.Index)).toEqual([1, 2, 3, 4, 5]);
    for (const line of FailedLines) expect(line.Message).toEqual(expect.any(String));
    expect(partner.ttdMembers(ADVERTISER, 'S')).toEqual(['ok-1', 'ok-2']);

    expect((await upload([], '')).status).toBe(400);
    expect((await postJson(partner, '/ttd/data/advertiser', { AdvertiserId: 'a' })).status).toBe(400);
    expect((await call(partner, '/ttd/data/advertiser', { method: 'POST', body: '[' })).status).toBe(400);
  });

  it('takes a body of exactly 2.5 MB and refuses one byte more with 413', async () => {
    const items = Array.from({ length: 20_000 }, (_, index) => ({
      TDID: `00000000-0000-0000-0000-${String(index).padStart(12, '0')}`,
      Data: [{ Name: 'Big', TTLInMinutes: 60 }],
    }));
    const json = JSON.stringify({ AdvertiserId: ADVERTISER, Items: items });
    expect(json.length).toBeLessThan(TTD_MAX_BODY_BYTES);
    const exact = json.padEnd(TTD_MAX_BODY_BYTES, ' ');
    const send = (body: string) =>
      call(partner, '/ttd/data/advertiser', {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/json' },
      });

    const tooLarge = await send(`${exact} `);
    expect(tooLarge.status).toBe(413);
    expect(await tooLarge.json()).toEqual({ Message: expect.stringContaining(String(TTD_MAX_BODY_BYTES)) });
    expect(partner.ttdMembers(ADVERTISER, 'Big')).toEqual([]);
    expect(lastRequest(partner)).toMatchObject({ bodyBytes: TTD_MAX_BODY_BYTES + 1, bodyTruncated: true });

    const atLimit = await send(exact);
    expect(atLimit.status).toBe(200);
    expect(await atLimit.json()).toEqual({ FailedLines: [] });
    expect(partner.ttdMembers(ADVERTISER, 'Big')).toHaveLength(20_000);
  });
});

describe('reference partner API: fault switches', () => {
  it('answers 429 with Retry-After without processing, then recovers', async () => {
    const fault = partner.addFault({ status: 429, retryAfter: 7, count: 1 });
    const limited = await call(partner, '/v1/segment?title=Later', { method: 'POST' });
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('7');
    expect(await limited.json()).toEqual({ status: 'ERROR', error: 'too many requests' });
    expect(partner.segments()).toEqual([]);
    expect(lastRequest(partner)).toMatchObject({
      status: 429,
      auth: 'basic',
      fault: { id: fault.id, kinds: ['status'], status: 429, processed: false },
    });

    const retried = await call(partner, '/v1/segment?title=Later', { method: 'POST' });
    expect(await retried.json()).toEqual({ status: 'OK', created: true, segment_id: 12345 });
    expect(lastRequest(partner).fault).toBeUndefined();
    expect(partner.activeFaults()).toEqual([]);
  });

  it('answers a burst of N 500s, then OK', async () => {
    partner.addFault({ status: 500, count: 3 });
    const statuses: number[] = [];
    for (let attempt = 0; attempt < 5; attempt += 1) {
      statuses.push((await call(partner, '/v1/segments')).status);
    }
    expect(statuses).toEqual([500, 500, 500, 200, 200]);
    expect(partner.requests.map((request) => request.fault?.kinds ?? [])).toEqual([
      ['status'],
      ['status'],
      ['status'],
      [],
      [],
    ]);
  });

  it('applies a switch only to its path prefix and method, until cleared when it has no count', async () => {
    const fault = partner.addFault({ status: 503, pathPrefix: '/meta/', method: 'post' });
    expect((await call(partner, '/v1/segments')).status).toBe(200);
    expect((await call(partner, '/meta/act_1/customaudiences')).status).toBe(200);
    for (let attempt = 0; attempt < 3; attempt += 1) {
      expect((await postJson(partner, '/meta/act_1/customaudiences', { name: 'x' })).status).toBe(503);
    }
    expect(partner.activeFaults()).toMatchObject([{ id: fault.id, remaining: null, applied: 3 }]);
    expect(partner.clearFaults(fault.id)).toBe(1);
    expect((await postJson(partner, '/meta/act_1/customaudiences', { name: 'x' })).status).toBe(200);
  });

  it('leaves /sync and /oauth/token alone unless a switch targets /oauth', async () => {
    partner.addFault({ status: 503 });
    const out = 'https://dmp.example/uid?userid=[[USERID]]';
    expect(
      (await fetch(`${partner.url}/sync?out=${encodeURIComponent(out)}`, { redirect: 'manual' })).status,
    ).toBe(302);
    const tokenRequest = () =>
      call(partner, '/oauth/token', {
        method: 'POST',
        authorization: `Basic ${Buffer.from('reference-client:reference-client-secret').toString('base64')}`,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'grant_type=client_credentials',
      });
    expect((await tokenRequest()).status).toBe(200);
    partner.clearFaults();
    partner.addFault({ status: 503, pathPrefix: '/oauth', count: 1 });
    expect((await tokenRequest()).status).toBe(503);
    expect((await tokenRequest()).status).toBe(200);
  });

  it('resets the connection without answering: the client sees ECONNRESET', async () => {
    partner.addFault({ reset: true, count: 1 });
    await expect(rawRequest(partner, '/v1/segment?title=Lost')).rejects.toMatchObject({ code: 'ECONNRESET' });
    expect(partner.segments()).toEqual([]);
    expect(lastRequest(partner)).toMatchObject({
      status: 0,
      fault: { kinds: ['reset'], processed: false },
    });

    // With process: true the partner does the work and then drops the answer.
    partner.addFault({ reset: true, process: true, count: 1 });
    const error = await call(partner, '/v1/segment?title=Done', { method: 'POST' }).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(TypeError);
    expect((error as { cause?: { code?: string } }).cause?.code).toBe('ECONNRESET');
    expect(partner.segments().map((segment) => segment.title)).toEqual(['Done']);
    expect(lastRequest(partner).fault).toMatchObject({ kinds: ['reset'], processed: true });

    // A blind retry of that create makes a second segment: what segment creation must never do.
    expect(await rawRequest(partner, '/v1/segment?title=Done')).toEqual({
      status: 200,
      body: '{"status":"OK","created":true,"segment_id":12346}',
    });
  });

  it('answers 200 with a truncated, non-JSON body after processing', async () => {
    partner.addFault({ malformed: true, count: 1 });
    const response = await call(partner, '/v1/segment?title=Cut', { method: 'POST' });
    expect(response.status).toBe(200);
    const body = await response.text();
    expect(() => JSON.parse(body)).toThrow(SyntaxError);
    expect('{"status":"OK","created":true,"segment_id":12345}'.startsWith(body)).toBe(true);
    expect(partner.segments()).toHaveLength(1);
    expect(lastRequest(partner).fault).toMatchObject({ kinds: ['malformed'], processed: true });

    partner.addFault({ malformed: true, count: 1 });
    // The real answer has no body: the malformed one is a JSON fragment.
    const empty = await call(partner, '/v1/segment?id=12345&userid=u1', { method: 'POST' });
    expect(empty.status).toBe(200);
    const fragment = await empty.text();
    expect(() => JSON.parse(fragment)).toThrow(SyntaxError);
    expect(partner.members(12345)).toEqual(['u1']);
  });

  it('holds a slow answer until the test releases it; the work is already done', async () => {
    partner.addFault({ hold: true, count: 1, pathPrefix: '/v1/segment' });
    const pending = call(partner, '/v1/segment?title=Slow', { method: 'POST' });
    await partner.waitForHeld(1);
    expect(partner.heldCount()).toBe(1);
    expect(partner.segments().map((segment) => segment.title)).toEqual(['Slow']);
    expect(lastRequest(partner).status).toBe(0);

    // Other requests are not held.
    expect((await call(partner, '/v1/segments?title=Slow')).status).toBe(200);

    expect(partner.releaseHeld()).toBe(1);
    const response = await pending;
    expect(await response.json()).toEqual({ status: 'OK', created: true, segment_id: 12345 });
    expect(partner.heldCount()).toBe(0);
    expect(partner.requests[0]).toMatchObject({ status: 200, fault: { kinds: ['hold'], processed: true } });
  });

  it('lets a client give up on a held answer (its timeout) after the segment was made: a retry makes a second', async () => {
    partner.addFault({ hold: true, count: 1 });
    const timeout = new AbortController();
    const pending = call(partner, '/v1/segment?title=Timed%20out', {
      method: 'POST',
      signal: timeout.signal,
    });
    await partner.waitForHeld();
    timeout.abort();
    await expect(pending).rejects.toMatchObject({ name: 'AbortError' });

    const retry = await call(partner, '/v1/segment?title=Timed%20out', { method: 'POST' });
    expect(await retry.json()).toEqual({ status: 'OK', created: true, segment_id: 12346 });
    expect(partner.segments().filter((segment) => segment.title === 'Timed out')).toHaveLength(2);
    expect(partner.releaseHeld()).toBe(1);
  });

  it('gives ids above 2^53 under the bigId fault, as JSON numbers of exact digits, usable afterwards', async () => {
    partner.addFault({ bigId: true, count: 1, pathPrefix: '/v1/segment', method: 'POST' });
    const created = await call(partner, '/v1/segment?title=Huge', { method: 'POST' });
    expect(await created.text()).toBe('{"status":"OK","created":true,"segment_id":90071992547412345}');
    expect(lastRequest(partner).fault).toMatchObject({ kinds: ['bigId'], processed: true });
    expect(partner.segments()[0]?.segment_id).toBe(90071992547412345n);
    // The id works in every later call, sent as text or as a JSON number.
    expect(
      (await call(partner, '/v1/segment?id=90071992547412345&userid=u1', { method: 'POST' })).status,
    ).toBe(200);
    const batch = await call(partner, '/v1/segment', {
      method: 'POST',
      body: '[{"segment":90071992547412345,"userid":"u2"}]',
    });
    expect(await batch.json()).toEqual({ status: 'OK', processed: 1 });
    expect(partner.members('90071992547412345')).toEqual(['u1', 'u2']);
    // A neighbour that a double would round to is another segment.
    expect(
      (await call(partner, '/v1/segment?id=90071992547412344&userid=u3', { method: 'POST' })).status,
    ).toBe(404);
    const lookup = await call(partner, '/v1/segments?title=Huge');
    expect(await lookup.text()).toContain('"segment_id":90071992547412345');
    expect(await createSegment(partner, 'Small again')).toBe(12345);
  });

  it('holds a delayMs answer, which the test may release before the delay', async () => {
    partner.addFault({ delayMs: 600_000, status: 503, count: 2 });
    const first = call(partner, '/v1/segments');
    const second = call(partner, '/v1/segments');
    await partner.waitForHeld(2);
    expect(partner.releaseHeld()).toBe(2);
    expect([(await first).status, (await second).status]).toEqual([503, 503]);
    expect(partner.requests.map((request) => request.fault?.kinds)).toEqual([
      ['status', 'delay'],
      ['status', 'delay'],
    ]);
  });

  it('stops without waiting for held answers', async () => {
    const own = await startReferencePartner({ now });
    own.addFault({ hold: true });
    const pending = call(own, '/v1/segments').then(
      (response) => response.status,
      (error: unknown) => (error as Error).name,
    );
    await own.waitForHeld();
    await own.stop();
    expect(await pending).toBe('TypeError');
    expect(own.heldCount()).toBe(0);
  });

  it('refuses invalid switches', () => {
    expect(() => partner.addFault({})).toThrow(/one of status, reset, malformed, delayMs, hold/);
    expect(() => partner.addFault({ reset: true, status: 500 })).toThrow(/reset/);
    expect(() => partner.addFault({ status: 42 })).toThrow();
    expect(() => partner.addFault({ status: 500, pathPrefix: 'v1' })).toThrow();
    expect(partner.activeFaults()).toEqual([]);
  });

  it('is switched over HTTP too: POST, GET and DELETE /__faults, POST /__faults/release', async () => {
    const added = await fetch(`${partner.url}/__faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify([
        { status: 429, retryAfter: 2, count: 2, pathPrefix: '/v1/' },
        { hold: true, pathPrefix: '/ttd/' },
      ]),
    });
    expect(added.status).toBe(201);
    const { faults } = (await added.json()) as { faults: { id: number }[] };
    expect(faults).toHaveLength(2);

    const listed = await (await fetch(`${partner.url}/__faults`)).json();
    expect(listed).toMatchObject({
      faults: [
        { status: 429, retryAfter: 2, remaining: 2, applied: 0 },
        { hold: true, remaining: null },
      ],
      held: 0,
    });

    expect((await call(partner, '/v1/segments')).status).toBe(429);
    const held = postJson(partner, '/ttd/data/advertiser', { AdvertiserId: 'a', Items: [] });
    await partner.waitForHeld();
    expect(await (await fetch(`${partner.url}/__faults/release`, { method: 'POST' })).json()).toEqual({
      released: 1,
    });
    expect((await held).status).toBe(200);

    const cleared = await fetch(`${partner.url}/__faults`, { method: 'DELETE' });
    expect(await cleared.json()).toEqual({ cleared: 2, released: 0 });
    expect((await call(partner, '/v1/segments')).status).toBe(200);

    const invalid = await fetch(`${partner.url}/__faults`, {
      method: 'POST',
      body: JSON.stringify([{ status: 500 }, { status: 'soon' }]),
    });
    expect(invalid.status).toBe(400);
    expect(partner.activeFaults()).toEqual([]);
    // The control routes are not in the request log.
    expect(partner.requests.map((request) => request.path)).toEqual([
      '/v1/segments',
      '/ttd/data/advertiser',
      '/v1/segments',
    ]);
  });
});

describe('reference partner API: request log and state', () => {
  it('records method, path and query, redacted headers, body, credential, fault and status', async () => {
    const id = await createSegment(partner, 'Logged');
    partner.reset();
    partner.addFault({ status: 503, count: 1, process: true });
    await postJson(partner, '/v1/segment', [{ segment: id, userid: 'u1' }]);
    expect(partner.members(id)).toEqual(['u1']);
    const [record] = partner.requests;
    const body = `[{"segment":${id},"userid":"u1"}]`;
    expect(record).toMatchObject({
      method: 'POST',
      url: '/v1/segment',
      path: '/v1/segment',
      query: {},
      body,
      bodyBytes: Buffer.byteLength(body),
      auth: 'basic',
      status: 503,
      fault: { kinds: ['status'], status: 503, processed: true },
    });
    expect(record!.headers).toMatchObject({
      authorization: '[redacted]',
      'content-type': 'application/json',
    });
    expect(record!.time).toBe(new Date(START).toISOString());

    const served = (await (await fetch(`${partner.url}/__requests`)).json()) as unknown[];
    expect(served).toEqual(JSON.parse(JSON.stringify(partner.requests)));

    expect((await fetch(`${partner.url}/__requests`, { method: 'DELETE' })).status).toBe(204);
    expect(partner.requests).toEqual([]);
  });

  it('serves its state at GET /__state and forgets everything at DELETE /__state', async () => {
    const id = await createSegment(partner, 'Stateful');
    await call(partner, `/v1/segment?id=${id}&userid=u1`, { method: 'POST' });
    const state = await (await fetch(`${partner.url}/__state?members=true`)).json();
    expect(state).toEqual({
      segments: [
        { segment_id: id, title: 'Stateful', kind: null, external_id: null, memberCount: 1, members: ['u1'] },
      ],
      meta: [],
      ttd: [],
    });
    partner.addFault({ status: 500 });
    expect((await fetch(`${partner.url}/__state`, { method: 'DELETE' })).status).toBe(204);
    expect(partner.segments()).toEqual([]);
    expect(partner.activeFaults()).toEqual([]);
    expect(partner.requests).toEqual([]);
    expect(await createSegment(partner, 'Fresh')).toBe(12345);
  });

  it('keeps its segments, members and id counter in its state file across a restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'partner-state-'));
    const stateFile = join(dir, 'reference-partner', 'state.json');
    try {
      const first = await startReferencePartner({ now, stateFile });
      const id = await createSegment(first, 'Kept');
      await call(first, `/v1/segment?id=${id}&userid=u1`, { method: 'POST' });
      first.addFault({ bigId: true, count: 1 });
      await createSegment(first, 'Kept big');
      await first.stop();

      const second = await startReferencePartner({ now, stateFile });
      try {
        expect(second.segments().map((segment) => [segment.segment_id, segment.title])).toEqual([
          [12345, 'Kept'],
          [90071992547412345n, 'Kept big'],
        ]);
        expect(second.members(12345)).toEqual(['u1']);
        // Numbering goes on where it stopped: no id is given twice.
        expect(await createSegment(second, 'Next')).toBe(12346);
      } finally {
        await second.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

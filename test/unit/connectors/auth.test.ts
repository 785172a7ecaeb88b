import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuthSettings } from '../../../src/config/connector.ts';
import {
  AuthConfigurationError,
  createAuthenticator,
  resolveTokenEndpoint,
  verifyPartnerRequestSignature,
} from '../../../src/connectors/auth/index.ts';
import { PartnerCallError, PartnerClient } from '../../../src/connectors/http/client.ts';
import { api, json, privateSend, recordingSleep, startServer, type TestServer } from './http-support.ts';

/**
 * Each static auth mode end to end: a PartnerClient over real HTTP to a server on 127.0.0.1 that
 * checks the credentials the way a partner would.
 */

const NOW = Date.UTC(2026, 0, 1);
const transport = privateSend();
let server: TestServer;

const CREDENTIALS = {
  basic: { username: 'foo', password: 'bar' },
  bearer: { token: 'static-bearer-token-123' },
  apiKey: { apiKey: 'partner-api-key-456' },
  hmac: { keyId: 'dmp-k1', key: 'hmac-shared-key-789-abcdef' },
};

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  await transport.close();
  await server.close();
});

function client(auth: Record<string, unknown>, credentials: Record<string, string>, basePath = '') {
  return new PartnerClient({
    api: api({ baseUrl: `${server.origin}${basePath}`, auth }),
    responses: { retryableStatuses: [408, 425] },
    credentials,
    send: transport.send,
    sleep: recordingSleep().sleep,
    random: () => 0.5,
    now: () => NOW,
  });
}

describe('basic', () => {
  it("sends the seed's curl -u foo:bar as Authorization: Basic, keeping the base URL's path prefix", async () => {
    server.handle((request, res) => {
      const ok = request.headers.authorization === `Basic ${Buffer.from('foo:bar').toString('base64')}`;
      if (!ok) return json(res, 401, { status: 'ERROR' });
      json(res, 200, { status: 'OK', created: true, segment_id: 12345 });
    });
    const answer = await client({ type: 'basic' }, CREDENTIALS.basic, '/partner/').call({
      method: 'post',
      pathAndQuery: '/v1/segment?title=My%20segment',
    });
    expect(answer.status).toBe(200);
    expect(answer.json()).toEqual({ status: 'OK', created: true, segment_id: 12345 });
    expect(server.received.at(-1)).toMatchObject({
      method: 'POST',
      url: '/partner/v1/segment?title=My%20segment',
    });
  });

  it('a wrong password is a permanent 401, not retried and not refreshed', async () => {
    server.handle((_, res) => json(res, 401, { status: 'ERROR', error: 'unauthorized' }));
    const before = server.received.length;
    const error = await client({ type: 'basic' }, { username: 'foo', password: 'wrong' })
      .call({ method: 'POST', pathAndQuery: '/v1/segment' })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PartnerCallError);
    expect(error).toMatchObject({ kind: 'permanent', status: 401, attempts: 1, outcomeUnknown: false });
    expect(server.received.length - before).toBe(1);
  });
});

describe('bearer', () => {
  it('sends Authorization: Bearer <token>', async () => {
    server.handle((request, res) =>
      request.headers.authorization === 'Bearer static-bearer-token-123' ? res.end() : json(res, 401, {}),
    );
    const answer = await client({ type: 'bearer' }, CREDENTIALS.bearer).call({
      method: 'GET',
      pathAndQuery: '/x',
    });
    expect(answer.status).toBe(200);
  });

  it("replaces a template's own Authorization header, whatever its case", async () => {
    server.handle((request, res) => json(res, 200, { authorization: request.headers.authorization }));
    const answer = await client({ type: 'bearer' }, CREDENTIALS.bearer).call({
      method: 'GET',
      pathAndQuery: '/x',
      headers: { AUTHORIZATION: 'Bearer forged' },
    });
    expect(answer.json()).toEqual({ authorization: 'Bearer static-bearer-token-123' });
  });
});

describe('apiKey', () => {
  it('sends the key in the configured header (default x-api-key)', async () => {
    server.handle((request, res) =>
      json(res, 200, { key: request.headers['x-partner-key'] ?? request.headers['x-api-key'] }),
    );
    const custom = await client({ type: 'apiKey', header: 'X-Partner-Key' }, CREDENTIALS.apiKey).call({
      method: 'GET',
      pathAndQuery: '/x',
    });
    expect(custom.json()).toEqual({ key: 'partner-api-key-456' });
    expect(server.received.at(-1)?.headers['x-api-key']).toBeUndefined();
    const fallback = await client({ type: 'apiKey' }, CREDENTIALS.apiKey).call({
      method: 'GET',
      pathAndQuery: '/x',
    });
    expect(fallback.json()).toEqual({ key: 'partner-api-key-456' });
  });
});

describe('none', () => {
  it('adds no credentials', async () => {
    server.handle((request, res) => json(res, 200, { authorization: request.headers.authorization ?? null }));
    const answer = await client({ type: 'none' }, {}).call({ method: 'GET', pathAndQuery: '/x' });
    expect(answer.json()).toEqual({ authorization: null });
  });
});

describe('hmac', () => {
  it('signs the exact bytes sent: the prefixed request target and a binary body, verified by the partner', async () => {
    const verdicts: unknown[] = [];
    server.handle((request, res) => {
      const verdict = verifyPartnerRequestSignature({
        method: request.method,
        pathAndQuery: request.url,
        body: request.body,
        headers: request.headers,
        keys: { 'dmp-k1': CREDENTIALS.hmac.key },
        algorithm: 'sha1',
        nowSeconds: NOW / 1000 + 30,
      });
      verdicts.push(verdict);
      json(res, verdict.valid ? 200 : 401, verdict);
    });
    const body = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0xc3, 0x28, 0xff, 0x00, 0x0d, 0x0a]);
    const answer = await client({ type: 'hmac', algorithm: 'sha1' }, CREDENTIALS.hmac, '/api/v2').call({
      method: 'PUT',
      pathAndQuery: '/v1/segment?id=12345&userid=a%20b',
      headers: { 'content-type': 'application/octet-stream' },
      body,
    });
    expect(verdicts).toEqual([{ valid: true, keyId: 'dmp-k1' }]);
    expect(answer.status).toBe(200);
    const received = server.received.at(-1)!;
    expect(received.url).toBe('/api/v2/v1/segment?id=12345&userid=a%20b');
    expect(received.body).toEqual(body);
    expect(received.headers['x-dmp-timestamp']).toBe(String(NOW / 1000));
  });

  it('signs a request without a body, with the default sha256', async () => {
    server.handle((request, res) => {
      const verdict = verifyPartnerRequestSignature({
        method: request.method,
        pathAndQuery: request.url,
        body: request.body,
        headers: request.headers,
        keys: { 'dmp-k1': CREDENTIALS.hmac.key },
        algorithm: 'sha256',
        nowSeconds: NOW / 1000,
      });
      json(res, verdict.valid ? 200 : 401, verdict);
    });
    const answer = await client({ type: 'hmac' }, CREDENTIALS.hmac).call({
      method: 'DELETE',
      pathAndQuery: '/v1/segment?id=12345&userid=abcdef123',
    });
    expect(answer.json()).toEqual({ valid: true, keyId: 'dmp-k1' });
  });
});

describe('configuration errors', () => {
  const deps = { baseUrl: 'https://api.partner.example', send: transport.send, now: () => NOW };

  it.each([
    [{ type: 'basic' }, { username: 'user-value-1' }, 'password'],
    [{ type: 'basic' }, { password: 'password-value-1' }, 'username'],
    [{ type: 'bearer' }, { other: 'other-value-1' }, 'token'],
    [{ type: 'apiKey', header: 'x-api-key' }, { apiKey: '' }, 'apiKey'],
    [
      {
        type: 'oauth2ClientCredentials',
        tokenUrl: '/oauth/token',
        clientAuthentication: 'basic',
        refreshBeforeExpirySeconds: 60,
      },
      { clientId: 'client-value-1' },
      'clientSecret',
    ],
    [{ type: 'hmac', algorithm: 'sha256' }, { key: 'key-value-1' }, 'keyId'],
  ] as const)('%j with %j names the missing field %s, never a value', (settings, credentials, field) => {
    let error: unknown;
    try {
      createAuthenticator(settings as AuthSettings, credentials, deps);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(AuthConfigurationError);
    const message = (error as Error).message;
    expect(message).toContain(field);
    for (const value of Object.values(credentials)) if (value) expect(message).not.toContain(value);
  });

  it('names every missing field at once', () => {
    expect(() => createAuthenticator({ type: 'hmac', algorithm: 'sha256' }, {}, deps)).toThrow(
      "auth type hmac needs keyId, key in the platform's API secret",
    );
  });

  it('refuses line breaks in a credential (header injection), naming the field only', () => {
    expect(() => createAuthenticator({ type: 'bearer' }, { token: 'abc\r\nx-evil: 1' }, deps)).toThrow(
      /API secret field token contains CR, LF or NUL/,
    );
  });

  it('refuses a basic username with a colon (RFC 7617)', () => {
    expect(() => createAuthenticator({ type: 'basic' }, { username: 'a:b', password: 'c' }, deps)).toThrow(
      AuthConfigurationError,
    );
  });

  it('surfaces from the PartnerClient constructor', () => {
    expect(
      () =>
        new PartnerClient({
          api: api({ baseUrl: 'https://api.partner.example', auth: { type: 'bearer' } }),
          responses: { retryableStatuses: [] },
          credentials: {},
        }),
    ).toThrow(AuthConfigurationError);
  });
});

describe('resolveTokenEndpoint', () => {
  it.each([
    ['/oauth/token', 'https://api.x.com', { origin: 'https://api.x.com', path: '/oauth/token' }],
    ['/oauth/token', 'https://api.x.com/v2/', { origin: 'https://api.x.com', path: '/v2/oauth/token' }],
    [
      'https://auth.x.com/token?realm=a',
      'https://api.x.com/v2',
      { origin: 'https://auth.x.com', path: '/token?realm=a' },
    ],
    ['http://127.0.0.1:8080/token', 'https://api.x.com', { origin: 'http://127.0.0.1:8080', path: '/token' }],
  ])('%s on %s', (tokenUrl, baseUrl, expected) => {
    expect(resolveTokenEndpoint(tokenUrl, baseUrl)).toEqual(expected);
  });

  it.each([
    ['http://auth.x.com/token'],
    ['oauth/token'],
    ['ftp://auth.x.com/token'],
    ['https://u:p@auth.x.com/t'],
  ])('refuses %s', (tokenUrl) => {
    expect(() => resolveTokenEndpoint(tokenUrl, 'https://api.x.com')).toThrow(AuthConfigurationError);
  });
});

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PartnerCallError, PartnerClient } from '../../../src/connectors/http/client.ts';
import {
  api,
  json,
  manualClock,
  privateSend,
  type Received,
  recordingSleep,
  startServer,
  type TestServer,
} from './http-support.ts';

const CLIENT_ID = 'dmp-client';
const CLIENT_SECRET = 'cl!ent s3cret+/=';
const transport = privateSend();
let server: TestServer;

/** The partner: a token endpoint that issues tok-1, tok-2, ... and an API that takes the valid ones. */
const partner = {
  issued: 0,
  expiresIn: 3600 as number | undefined,
  valid: new Set<string>(),
  tokenRequests: [] as Received[],
  /** Answers the token endpoint gives before issuing (status, body). */
  tokenFailures: [] as { status: number; body: unknown; headers?: Record<string, string> }[],
  /** The API refuses every token. */
  acceptNothing: false,
  /** The API answers 403 echoing the Authorization header it got. */
  echoForbidden: false,
  reset() {
    this.acceptNothing = false;
    this.echoForbidden = false;
    this.issued = 0;
    this.expiresIn = 3600;
    this.valid.clear();
    this.tokenRequests = [];
    this.tokenFailures = [];
  },
};

function clientAuthOf(request: Received): { id: string; secret: string } | undefined {
  const form = new URLSearchParams(request.body.toString('utf8'));
  const authorization = request.headers.authorization;
  if (authorization?.startsWith('Basic ')) {
    const [id, secret] = Buffer.from(authorization.slice(6), 'base64').toString('utf8').split(':');
    // A form decoder, as RFC 6749 2.3.1 asks.
    const decode = (value = '') => new URLSearchParams(`v=${value}`).get('v') ?? '';
    return { id: decode(id), secret: decode(secret) };
  }
  if (form.has('client_id'))
    return { id: form.get('client_id') ?? '', secret: form.get('client_secret') ?? '' };
  return undefined;
}

beforeAll(async () => {
  server = await startServer((request, res) => {
    if (request.url.endsWith('/oauth/token')) {
      partner.tokenRequests.push(request);
      const failure = partner.tokenFailures.shift();
      if (failure) return json(res, failure.status, failure.body, failure.headers);
      const form = new URLSearchParams(request.body.toString('utf8'));
      const client = clientAuthOf(request);
      if (request.method !== 'POST' || form.get('grant_type') !== 'client_credentials') {
        return json(res, 400, { error: 'unsupported_grant_type' });
      }
      if (client?.id !== CLIENT_ID || client.secret !== CLIENT_SECRET) {
        return json(res, 401, { error: 'invalid_client' });
      }
      const token = `tok-${++partner.issued}`;
      partner.valid.add(token);
      return json(res, 200, {
        access_token: token,
        token_type: 'bearer',
        ...(partner.expiresIn === undefined ? {} : { expires_in: partner.expiresIn }),
      });
    }
    if (partner.echoForbidden)
      return json(res, 403, { error: 'forbidden', sent: request.headers.authorization });
    const token = request.headers.authorization?.replace(/^Bearer /, '') ?? '';
    if (partner.acceptNothing || !partner.valid.has(token)) return json(res, 401, { error: 'invalid_token' });
    json(res, 200, { token });
  });
});

afterEach(() => partner.reset());

afterAll(async () => {
  await transport.close();
  await server.close();
});

function client(
  auth: Record<string, unknown> = {},
  options: { now?: () => number; basePath?: string; retry?: Record<string, number> } = {},
) {
  const recorder = recordingSleep();
  const instance = new PartnerClient({
    api: api({
      baseUrl: `${server.origin}${options.basePath ?? ''}`,
      auth: { type: 'oauth2ClientCredentials', tokenUrl: '/oauth/token', ...auth },
      ...(options.retry ? { retry: options.retry } : {}),
    }),
    responses: { retryableStatuses: [408, 425] },
    credentials: { clientId: CLIENT_ID, clientSecret: CLIENT_SECRET },
    send: transport.send,
    sleep: recorder.sleep,
    random: () => 0.5,
    now: options.now ?? manualClock().now,
  });
  return Object.assign(instance, { delays: recorder.delays });
}

const CALL = { method: 'POST', pathAndQuery: '/v1/segment?title=x' } as const;

describe('oauth2 client credentials', () => {
  it('gets a token with client_secret_basic (RFC 6749 encoding), scope and audience, and uses it', async () => {
    const answer = await client({ scope: 'segments:write', audience: 'https://api.partner' }).call(CALL);
    expect(answer.json()).toEqual({ token: 'tok-1' });
    const [tokenRequest] = partner.tokenRequests;
    expect(tokenRequest?.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect(Object.fromEntries(new URLSearchParams(tokenRequest!.body.toString()))).toEqual({
      grant_type: 'client_credentials',
      scope: 'segments:write',
      audience: 'https://api.partner',
    });
    expect(tokenRequest?.headers.authorization).toBe(
      `Basic ${Buffer.from(`${encodeURIComponent(CLIENT_ID)}:${encodeURIComponent(CLIENT_SECRET)}`).toString('base64')}`,
    );
  });

  it('sends client_id and client_secret in the body when so configured, and keeps the path prefix', async () => {
    const answer = await client({ clientAuthentication: 'body' }, { basePath: '/api' }).call(CALL);
    expect(answer.status).toBe(200);
    const [tokenRequest] = partner.tokenRequests;
    expect(tokenRequest?.url).toBe('/api/oauth/token');
    expect(tokenRequest?.headers.authorization).toBeUndefined();
    expect(new URLSearchParams(tokenRequest!.body.toString()).get('client_secret')).toBe(CLIENT_SECRET);
  });

  it('takes an absolute tokenUrl', async () => {
    const answer = await client(
      { tokenUrl: `${server.origin}/elsewhere/oauth/token` },
      { basePath: '/api' },
    ).call(CALL);
    expect(answer.status).toBe(200);
    expect(partner.tokenRequests[0]?.url).toBe('/elsewhere/oauth/token');
  });

  it('reuses the cached token across calls', async () => {
    const c = client();
    for (let i = 0; i < 4; i++) expect((await c.call(CALL)).json()).toEqual({ token: 'tok-1' });
    expect(partner.tokenRequests).toHaveLength(1);
  });

  it('refreshes refreshBeforeExpirySeconds before expiry, by the injected clock', async () => {
    const clock = manualClock();
    const c = client({ refreshBeforeExpirySeconds: 60 }, { now: clock.now });
    expect((await c.call(CALL)).json()).toEqual({ token: 'tok-1' });
    clock.advance((3600 - 60 - 1) * 1000);
    expect((await c.call(CALL)).json()).toEqual({ token: 'tok-1' });
    clock.advance(2000);
    expect((await c.call(CALL)).json()).toEqual({ token: 'tok-2' });
    expect(partner.tokenRequests).toHaveLength(2);
  });

  it('keeps a short-lived token for at least half its lifetime', async () => {
    partner.expiresIn = 40;
    const clock = manualClock();
    const c = client({ refreshBeforeExpirySeconds: 60 }, { now: clock.now });
    await c.call(CALL);
    clock.advance(19_000);
    expect((await c.call(CALL)).json()).toEqual({ token: 'tok-1' });
    clock.advance(2000);
    expect((await c.call(CALL)).json()).toEqual({ token: 'tok-2' });
  });

  it('assumes a 300 s lifetime when the endpoint gives no expires_in', async () => {
    partner.expiresIn = undefined;
    const clock = manualClock();
    const c = client({ refreshBeforeExpirySeconds: 60 }, { now: clock.now });
    await c.call(CALL);
    clock.advance(239_000);
    expect((await c.call(CALL)).json()).toEqual({ token: 'tok-1' });
    clock.advance(2000);
    expect((await c.call(CALL)).json()).toEqual({ token: 'tok-2' });
  });

  it('on a 401 from the partner, refreshes once and retries (not counted as a retry, no sleep)', async () => {
    const c = client({}, { retry: { maxAttempts: 1 } });
    await c.call(CALL);
    partner.valid.clear(); // the partner revokes tok-1
    const answer = await c.call(CALL);
    expect(answer.json()).toEqual({ token: 'tok-2' });
    expect(answer.attempts).toBe(2);
    expect(partner.tokenRequests).toHaveLength(2);
    expect(c.delays).toEqual([]);
  });

  it('refreshes only once per call: a second 401 is permanent', async () => {
    const c = client();
    await c.call(CALL);
    partner.acceptNothing = true;
    const error = await c.call(CALL).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PartnerCallError);
    expect(error).toMatchObject({ kind: 'permanent', status: 401, attempts: 2, outcomeUnknown: false });
    expect(partner.tokenRequests).toHaveLength(2);
  });

  it('concurrent callers share one token request', async () => {
    const c = client();
    const answers = await Promise.all(Array.from({ length: 8 }, () => c.call(CALL)));
    expect(answers.map((a) => a.json())).toEqual(Array.from({ length: 8 }, () => ({ token: 'tok-1' })));
    expect(partner.tokenRequests).toHaveLength(1);
  });

  it('concurrent 401s on the same revoked token lead to one new token', async () => {
    const c = client();
    await c.call(CALL);
    partner.valid.clear();
    const answers = await Promise.all(Array.from({ length: 6 }, () => c.call(CALL)));
    expect(new Set(answers.map((a) => JSON.stringify(a.json())))).toEqual(new Set(['{"token":"tok-2"}']));
    expect(partner.tokenRequests).toHaveLength(2);
  });

  it('a token endpoint 400 is a clear permanent error with no secret in it, and the API is not called', async () => {
    partner.tokenFailures.push({
      status: 400,
      body: {
        error: 'invalid_client',
        error_description: `unknown client ${CLIENT_ID} with secret ${CLIENT_SECRET} (${encodeURIComponent(CLIENT_SECRET)})`,
      },
    });
    const before = server.received.length;
    const error = (await client()
      .call(CALL)
      .catch((e: unknown) => e)) as PartnerCallError;
    expect(error).toBeInstanceOf(PartnerCallError);
    expect(error).toMatchObject({
      kind: 'permanent',
      step: 'token',
      status: 400,
      attempts: 1,
      outcomeUnknown: false,
    });
    expect(error.message).toContain('OAuth token endpoint answered 400: invalid_client');
    const everything = `${error.message} ${error.stack} ${JSON.stringify(error)}`;
    expect(everything).not.toContain(CLIENT_SECRET);
    expect(everything).not.toContain(encodeURIComponent(CLIENT_SECRET));
    expect(everything).not.toContain(CLIENT_ID);
    expect(server.received.length - before).toBe(1);
  });

  it('retries a token endpoint 503 with backoff, honouring its Retry-After', async () => {
    partner.tokenFailures.push({
      status: 503,
      body: { error: 'temporarily_unavailable' },
      headers: { 'retry-after': '2' },
    });
    const c = client();
    const answer = await c.call(CALL);
    expect(answer.json()).toEqual({ token: 'tok-1' });
    expect(answer.attempts).toBe(2);
    expect(c.delays).toEqual([2000]);
  });

  it('refuses a token of another type than Bearer', async () => {
    partner.tokenFailures.push({
      status: 200,
      body: { access_token: 'mac-token', token_type: 'mac', expires_in: 60 },
    });
    const error = await client()
      .call(CALL)
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ kind: 'permanent', step: 'token' });
    expect((error as Error).message).toContain('token_type must be Bearer');
  });

  it('a partner echoing the access token in an error body does not leak it', async () => {
    const c = client();
    await c.call(CALL);
    partner.echoForbidden = true;
    const error = (await c.call(CALL).catch((e: unknown) => e)) as PartnerCallError;
    expect(error).toMatchObject({ kind: 'permanent', status: 403 });
    expect(error.bodySnippet).toBe('{"error":"forbidden","sent":"Bearer ***"}');
    expect(error.message).not.toContain('tok-1');
  });
});

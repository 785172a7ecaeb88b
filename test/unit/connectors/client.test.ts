import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isIdempotent, PartnerCallError, PartnerClient } from '../../../src/connectors/http/client.ts';
import type { HttpSend } from '../../../src/connectors/http/send.ts';
import {
  api,
  json,
  manualClock,
  privateSend,
  recordingSleep,
  startServer,
  startSilentServer,
  type TestServer,
} from './http-support.ts';

const transport = privateSend(64 * 1024);
let server: TestServer;

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  await transport.close();
  await server.close();
});

/** Answers in turn from a script; the last one repeats. */
function script(...steps: ((res: Parameters<Parameters<TestServer['handle']>[0]>[1]) => void)[]) {
  let i = 0;
  server.handle((_, res, raw) => {
    const step = steps[Math.min(i++, steps.length - 1)]!;
    if (step.length === 0) raw.socket.destroy();
    else step(res);
  });
}
const reset = () => {};
/** Reads the request and never answers. */
const hold = (_res: Parameters<typeof json>[0]) => {};
const status =
  (code: number, body: unknown = { status: code }, headers: Record<string, string> = {}) =>
  (res: Parameters<typeof json>[0]) =>
    json(res, code, body, headers);

function client(options: {
  retry?: Record<string, number>;
  send?: HttpSend;
  retryableStatuses?: number[];
  now?: () => number;
  auth?: Record<string, unknown>;
  credentials?: Record<string, string>;
  timeoutMs?: number;
}) {
  const recorder = recordingSleep();
  const instance = new PartnerClient({
    api: api({
      baseUrl: server.origin,
      auth: options.auth ?? { type: 'basic' },
      timeoutMs: options.timeoutMs ?? 1000,
      ...(options.retry ? { retry: options.retry } : {}),
    }),
    responses: { retryableStatuses: options.retryableStatuses ?? [408, 425] },
    credentials: options.credentials ?? { username: 'foo', password: 'bar' },
    send: options.send ?? transport.send,
    sleep: recorder.sleep,
    random: () => 0.5,
    now: options.now ?? manualClock().now,
  });
  return Object.assign(instance, { delays: recorder.delays });
}

/** Adding users to a segment: a POST whose repetition is harmless, so it declares itself idempotent. */
const CALL = {
  method: 'POST',
  pathAndQuery: '/v1/segment',
  body: Buffer.from('[{"segment":1,"userid":"u"}]'),
  idempotent: true,
};
/** Creating a segment: a POST that must not be repeated blindly. */
const CREATE = { method: 'POST', pathAndQuery: '/v1/segment?title=x' };

async function failure(promise: Promise<unknown>): Promise<PartnerCallError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(PartnerCallError);
  return error as PartnerCallError;
}

describe('PartnerClient retries', () => {
  it('500 then 200: one success, attempts 2, one jittered backoff', async () => {
    script(status(500), status(200, { ok: true }));
    const c = client({});
    const answer = await c.call(CALL);
    expect(answer).toMatchObject({ status: 200, attempts: 2 });
    expect(answer.json()).toEqual({ ok: true });
    expect(c.delays).toEqual([100]); // 0.5 * 200 ms
  });

  it('sends the same body bytes on every attempt', async () => {
    script(status(503), status(502), status(201));
    const before = server.received.length;
    await client({}).call(CALL);
    const bodies = server.received.slice(before).map((r) => r.body.toString());
    expect(bodies).toEqual([CALL.body.toString(), CALL.body.toString(), CALL.body.toString()]);
  });

  it('429 with Retry-After in seconds: sleeps what the partner asked', async () => {
    script(status(429, {}, { 'retry-after': '3' }), status(200));
    const c = client({});
    expect((await c.call(CALL)).attempts).toBe(2);
    expect(c.delays).toEqual([3000]);
  });

  it('429 with Retry-After as an HTTP-date, read with the injected clock', async () => {
    const clock = manualClock(Date.UTC(2026, 0, 1, 12, 0, 0));
    script(status(429, {}, { 'retry-after': 'Thu, 01 Jan 2026 12:00:08 GMT' }), status(200));
    const c = client({ now: clock.now });
    await c.call(CALL);
    expect(c.delays).toEqual([8000]);
  });

  it('a Retry-After beyond maxDelayMs gives up at once: retryable, with the wait, nothing slept', async () => {
    script(status(429, { error: 'slow down' }, { 'retry-after': '120' }));
    const c = client({ retry: { maxDelayMs: 10_000 } });
    const error = await failure(c.call(CALL));
    expect(error).toMatchObject({
      kind: 'retries_exhausted',
      status: 429,
      attempts: 1,
      outcomeUnknown: false,
      retryAfterMs: 120_000,
    });
    expect(error.message).toContain('Retry-After 120000 ms exceeds maxDelayMs 10000');
    expect(c.delays).toEqual([]);
  });

  it('400 is permanent: no retry, the body snippet kept', async () => {
    script(status(400, { error: 'bad segment name' }));
    const before = server.received.length;
    const c = client({});
    const error = await failure(c.call(CALL));
    expect(error).toMatchObject({
      kind: 'permanent',
      status: 400,
      attempts: 1,
      outcomeUnknown: false,
      bodySnippet: '{"error":"bad segment name"}',
    });
    expect(error.message).toBe('POST /v1/segment answered 400 (permanent) after 1 attempt');
    expect(server.received.length - before).toBe(1);
    expect(c.delays).toEqual([]);
  });

  it("retries the connector's own retryable 4xx", async () => {
    script(status(409), status(200));
    expect((await client({ retryableStatuses: [409] }).call(CALL)).attempts).toBe(2);
  });

  it('3xx is permanent (redirects are not followed)', async () => {
    script(status(302, {}, { location: '/elsewhere' }));
    expect(await failure(client({}).call(CALL))).toMatchObject({ kind: 'permanent', status: 302 });
  });

  it('5xx on every attempt: retries_exhausted after maxAttempts, outcome unknown, growing delays', async () => {
    script(status(503, { error: 'down' }));
    const c = client({ retry: { maxAttempts: 4, baseDelayMs: 200, maxDelayMs: 10_000 } });
    const error = await failure(c.call(CALL));
    expect(error).toMatchObject({
      kind: 'retries_exhausted',
      status: 503,
      attempts: 4,
      outcomeUnknown: true,
    });
    expect(c.delays).toEqual([100, 200, 400]);
  });

  it('429 on every attempt: retries_exhausted, outcome known (not processed)', async () => {
    script(status(429));
    const error = await failure(client({ retry: { maxAttempts: 3 } }).call(CALL));
    expect(error).toMatchObject({
      kind: 'retries_exhausted',
      status: 429,
      attempts: 3,
      outcomeUnknown: false,
    });
  });

  it('a connection reset is retried', async () => {
    script(reset, status(200, { ok: 1 }));
    const c = client({});
    const answer = await c.call(CALL);
    expect(answer).toMatchObject({ status: 200, attempts: 2 });
    expect(c.delays).toHaveLength(1);
  });

  it('resets on every attempt: retries_exhausted, outcome unknown, with the code', async () => {
    script(reset);
    const error = await failure(client({ retry: { maxAttempts: 2 } }).call(CALL));
    expect(error).toMatchObject({
      kind: 'retries_exhausted',
      attempts: 2,
      outcomeUnknown: true,
      code: 'ECONNRESET',
    });
    expect(error.status).toBeUndefined();
  });

  it('timeouts are retried, then retries_exhausted with outcome unknown', async () => {
    script(hold);
    const calls: number[] = [];
    const recording: HttpSend = (request) => {
      calls.push(request.timeoutMs ?? -1);
      return transport.send(request);
    };
    const before = server.received.length;
    const c = client({
      send: recording,
      timeoutMs: 100,
      retry: { maxAttempts: 3, baseDelayMs: 100, maxDelayMs: 1000 },
    });
    const error = await failure(c.call(CALL));
    expect(error).toMatchObject({
      kind: 'retries_exhausted',
      attempts: 3,
      outcomeUnknown: true,
      code: 'DMP_HEADERS_TIMEOUT',
    });
    expect(server.received.length - before).toBe(3); // each try reached the partner
    expect(calls).toEqual([100, 100, 100]); // api.timeoutMs on every attempt
    expect(c.delays).toEqual([50, 100]);
  });

  it('a timeout then a success is one success', async () => {
    script(hold, status(200));
    expect((await client({ timeoutMs: 100 }).call(CALL)).attempts).toBe(2);
  });

  it('connection refused is retried, and exhausted with outcome known', async () => {
    const closed = await startServer();
    const origin = closed.origin;
    await closed.close();
    const c = new PartnerClient({
      api: api({ baseUrl: origin, auth: { type: 'none' }, retry: { maxAttempts: 2 } }),
      responses: { retryableStatuses: [] },
      credentials: {},
      send: transport.send,
      sleep: async () => {},
      random: () => 0,
    });
    const error = await failure(c.call(CALL));
    expect(error).toMatchObject({
      kind: 'retries_exhausted',
      attempts: 2,
      outcomeUnknown: false,
      code: 'ECONNREFUSED',
    });
  });

  describe('a request that is not idempotent (a POST that creates)', () => {
    it.each([
      ['a 500', () => script(status(500), status(200, { segment_id: 1 })), { status: 500 }],
      [
        'a reset after it was sent',
        () => script(reset, status(200, { segment_id: 1 })),
        { code: 'ECONNRESET' },
      ],
    ])('is not repeated after %s: unknown_outcome, one try', async (_, arrange, detail) => {
      arrange();
      const before = server.received.length;
      const c = client({});
      const error = await failure(c.call(CREATE));
      expect(error).toMatchObject({ kind: 'unknown_outcome', attempts: 1, outcomeUnknown: true, ...detail });
      expect(error.message).toContain('not repeated: the request is not idempotent');
      expect(server.received.length - before).toBe(1);
      expect(c.delays).toEqual([]);
    });

    it('is not repeated after a timeout', async () => {
      script(hold, status(200, { segment_id: 1 }));
      const before = server.received.length;
      const error = await failure(client({ timeoutMs: 100 }).call(CREATE));
      expect(error).toMatchObject({ kind: 'unknown_outcome', code: 'DMP_HEADERS_TIMEOUT' });
      expect(server.received.length - before).toBe(1);
    });

    it('is repeated where the partner cannot have processed it: 429, connection refused', async () => {
      script(status(429, {}, { 'retry-after': '1' }), status(200, { segment_id: 7 }));
      const answer = await client({}).call(CREATE);
      expect(answer).toMatchObject({ status: 200, attempts: 2 });
    });

    it('is repeated when its connection never came up (connect timeout): never sent, so safe', async () => {
      const silent = await startSilentServer(); // accepts TCP, never completes the TLS handshake
      const pool = privateSend(undefined, { connectTimeoutMs: 50 });
      try {
        const c = new PartnerClient({
          api: api({
            baseUrl: `https://127.0.0.1:${silent.port}`,
            auth: { type: 'none' },
            retry: { maxAttempts: 3 },
          }),
          responses: { retryableStatuses: [] },
          credentials: {},
          send: pool.send,
          sleep: async () => {},
          random: () => 0,
        });
        const error = await failure(c.call(CREATE));
        expect(error).toMatchObject({
          kind: 'retries_exhausted',
          attempts: 3,
          outcomeUnknown: false,
          code: 'DMP_CONNECT_TIMEOUT',
        });
      } finally {
        await pool.close();
        await silent.close();
      }
    });

    it('is repeated after a 500 when the caller declares it idempotent (an idempotency key)', async () => {
      script(status(500), status(200, { segment_id: 7 }));
      const answer = await client({}).call({ ...CREATE, idempotent: true });
      expect(answer.attempts).toBe(2);
    });

    it('GET, PUT and DELETE are idempotent by default; POST and PATCH are not', () => {
      expect(
        ['GET', 'put', 'DELETE', 'HEAD', 'POST', 'patch'].map((method) => isIdempotent({ method })),
      ).toEqual([true, true, true, true, false, false]);
    });
  });

  it('keeps an id beyond 2^53 exact: a bigint with the digits sent', async () => {
    server.handle((_, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"status":"OK","segment_id":90071992547412345,"n":12}');
    });
    const body = (await client({}).call(CREATE)).json() as Record<string, unknown>;
    expect(body['segment_id']).toBe(90071992547412345n);
    expect(String(body['segment_id'])).toBe('90071992547412345');
    expect(body['n']).toBe(12);
  });

  it('an unknown outcome earlier in the call is not forgotten by a later, known one', async () => {
    script(status(504), status(409, { error: 'exists' }));
    const error = await failure(client({}).call(CALL));
    expect(error).toMatchObject({ kind: 'permanent', status: 409, attempts: 2, outcomeUnknown: true });
  });

  it('an answer above the size cap is a network error, not retried', async () => {
    const small = privateSend(16);
    try {
      script(status(200, { a: 'x'.repeat(100) }));
      const error = await failure(client({ send: small.send }).call(CALL));
      expect(error).toMatchObject({
        kind: 'network',
        attempts: 1,
        outcomeUnknown: true,
        code: 'DMP_RESPONSE_TOO_LARGE',
      });
    } finally {
      await small.close();
    }
  });

  it('stops when the caller aborts during the backoff', async () => {
    script(status(503));
    const controller = new AbortController();
    const c = new PartnerClient({
      api: api({ baseUrl: server.origin, auth: { type: 'none' } }),
      responses: { retryableStatuses: [] },
      credentials: {},
      send: transport.send,
      sleep: async (_, signal) => {
        controller.abort();
        signal?.throwIfAborted();
      },
      random: () => 0,
    });
    const error = await failure(c.call(CALL, { signal: controller.signal }));
    expect(error).toMatchObject({ kind: 'network', code: 'ABORTED', attempts: 1, outcomeUnknown: true });
  });

  it('does not start when the signal is already aborted', async () => {
    const before = server.received.length;
    const error = await failure(client({}).call(CALL, { signal: AbortSignal.abort() }));
    expect(error).toMatchObject({ kind: 'network', attempts: 0, outcomeUnknown: false });
    expect(server.received.length).toBe(before);
  });
});

describe('PartnerClient requests', () => {
  it('joins the base URL path prefix and the path, upper-cases the method, parses JSON lazily', async () => {
    server.handle((request, res) => json(res, 200, { url: request.url, method: request.method }));
    const c = new PartnerClient({
      api: api({ baseUrl: `${server.origin}/partner/api/`, auth: { type: 'none' } }),
      responses: { retryableStatuses: [] },
      credentials: {},
      send: transport.send,
    });
    const answer = await c.call({ method: 'delete', pathAndQuery: '/v1/segment?id=12345&userid=abc%2F1' });
    expect(answer.json()).toEqual({
      url: '/partner/api/v1/segment?id=12345&userid=abc%2F1',
      method: 'DELETE',
    });
  });

  it('json() is undefined for an empty or non-JSON body', async () => {
    server.handle((_, res) => res.end('OK'));
    const c = client({});
    expect((await c.call(CALL)).json()).toBeUndefined();
    server.handle((_, res) => res.end());
    expect((await c.call(CALL)).json()).toBeUndefined();
  });

  it.each([['v1/segment'], ['/v1/segment?title=Mein Segment'], ['/v1/ségment'], ['/a\nb']])(
    'refuses a path that would not go on the request line as is: %j',
    async (pathAndQuery) => {
      await expect(client({}).call({ method: 'GET', pathAndQuery })).rejects.toThrow(TypeError);
    },
  );

  it('reuses one keep-alive connection across calls', async () => {
    const own = await startServer((_, res) => json(res, 200, { ok: true }));
    const pool = privateSend();
    try {
      const c = new PartnerClient({
        api: api({ baseUrl: own.origin, auth: { type: 'bearer' } }),
        responses: { retryableStatuses: [] },
        credentials: { token: 'token-value-123' },
        send: pool.send,
      });
      for (let i = 0; i < 5; i++)
        await c.call({ method: 'POST', pathAndQuery: `/v1/segment?n=${i}`, body: CALL.body });
      expect(own.received).toHaveLength(5);
      expect(own.connections).toBe(1);
    } finally {
      await pool.close();
      await own.close();
    }
  });
});

describe('redaction', () => {
  const PASSWORD = 'pa$$w0rd-"quoted"/+';
  const USERNAME = 'dmp-user-42';

  it('a partner echoing the credentials in its error body leaves none in the error', async () => {
    server.handle((request, res) => {
      const echoed = {
        error: 'invalid credentials',
        authorization: request.headers.authorization,
        decoded: Buffer.from((request.headers.authorization ?? '').slice(6), 'base64').toString(),
        password: PASSWORD,
        username: USERNAME,
        urlEncoded: encodeURIComponent(PASSWORD),
        base64: Buffer.from(PASSWORD).toString('base64'),
      };
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(`${JSON.stringify(echoed)} raw: ${PASSWORD} ${USERNAME}:${PASSWORD}`);
    });
    const error = await failure(
      client({ credentials: { username: USERNAME, password: PASSWORD } }).call(CALL),
    );
    const everything = [
      error.message,
      error.bodySnippet,
      error.stack,
      JSON.stringify(error),
      String(error),
    ].join('\n');
    for (const secret of [
      PASSWORD,
      USERNAME,
      JSON.stringify(PASSWORD).slice(1, -1),
      encodeURIComponent(PASSWORD),
      Buffer.from(PASSWORD).toString('base64'),
      Buffer.from(`${USERNAME}:${PASSWORD}`).toString('base64'),
    ]) {
      expect(everything).not.toContain(secret);
    }
    expect(error.bodySnippet).toContain('"authorization":"***"');
    expect(error.bodySnippet).toContain('"error":"invalid credentials"');
  });

  it('hides an API key and an HMAC key the same way, and cuts the snippet after redacting', async () => {
    const KEY = 'k'.repeat(600);
    server.handle((_, res) => json(res, 500, { note: `${'x'.repeat(500)}${KEY}` }));
    const c = client({ auth: { type: 'apiKey' }, credentials: { apiKey: KEY }, retry: { maxAttempts: 1 } });
    const error = await failure(c.call(CALL));
    expect(error.bodySnippet).toHaveLength(512);
    expect(error.bodySnippet).not.toMatch(/kkkk/);
    expect(c.redact(`x-api-key: ${KEY}`)).toBe('x-api-key: ***');
    const h = client({
      auth: { type: 'hmac' },
      credentials: { keyId: 'key-id-1', key: 'hmac-secret-value' },
    });
    expect(h.redact('key hmac-secret-value, id key-id-1')).toBe('key ***, id ***');
  });
});

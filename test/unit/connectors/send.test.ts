import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { type AddressInfo, createServer as createNetServer, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classifyTransportError } from '../../../src/connectors/http/errors.ts';
import {
  createAgents,
  createHttpSend,
  type HttpRequest,
  ResponseTooLargeError,
  sharedAgents,
} from '../../../src/connectors/http/send.ts';
import {
  privateSend,
  startFullBacklog,
  startServer,
  startSilentServer,
  type TestServer,
} from './http-support.ts';

let server: TestServer;
const transport = privateSend(1024);
/** Server-side sockets, to see which ones the client dropped. */
const sockets: Socket[] = [];
/** Answers the tests hold open, ended in afterAll. */
const held: Array<() => void> = [];

beforeAll(async () => {
  server = await startServer((request, res, raw) => {
    sockets.push(raw.socket);
    if (request.url === '/big-declared') {
      // Declares more than the cap and holds the rest: only the client can close this connection.
      res.writeHead(200, { 'content-length': String(2 * 1024 * 1024) });
      res.write(Buffer.alloc(100, 0x61));
      held.push(() => res.destroy());
    } else if (request.url === '/big-streamed') {
      res.writeHead(200, { 'content-type': 'text/plain' }); // chunked: no content-length
      res.write(Buffer.alloc(600, 0x61));
      res.write(Buffer.alloc(600, 0x62));
      held.push(() => res.destroy());
    } else if (request.url === '/no-headers') {
      held.push(() => res.destroy());
    } else if (request.url === '/headers-only') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.flushHeaders();
      held.push(() => res.destroy());
    } else if (request.url === '/stalled-body') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first part');
      held.push(() => res.destroy());
    } else if (request.url === '/reset') {
      raw.socket.destroy();
    } else if (request.url === '/reset-mid-body') {
      res.writeHead(200, { 'content-length': '500' });
      res.write('the first 20 bytes..', () => raw.socket.destroy());
    } else if (request.url === '/redirect') {
      res.writeHead(302, { location: '/elsewhere' });
      res.end();
    } else if (request.url === '/cookies') {
      res.writeHead(200, [
        ['set-cookie', 'a=1'],
        ['set-cookie', 'b=2'],
        ['x-one', 'one'],
      ]);
      res.end();
    } else {
      res.writeHead(201, { 'x-echo': request.headers['x-test'] ?? '' });
      res.end(Buffer.concat([Buffer.from(`${request.method} ${request.url} `), request.body]));
    }
  });
});

afterAll(async () => {
  for (const end of held) end();
  await transport.close();
  await server.close();
});

function get(path: string, extra: Partial<HttpRequest> = {}): HttpRequest {
  return { method: 'GET', origin: server.origin, path, headers: {}, ...extra };
}

async function failure(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a failure');
    },
    (error: unknown) => error,
  );
}

async function closed(socket: Socket): Promise<void> {
  if (!socket.destroyed) await once(socket, 'close');
}

describe('createHttpSend: the exchange', () => {
  it('sends the path and body exactly, and returns status, headers and body bytes', async () => {
    const body = Buffer.from([0x00, 0xff, 0x0a]);
    const answer = await transport.send({
      method: 'POST',
      origin: server.origin,
      path: '/v1/segment?title=My%20segment',
      headers: { 'x-test': 'yes', authorization: 'Bearer abc' },
      body,
      timeoutMs: 1000,
    });
    expect(answer.status).toBe(201);
    expect(answer.headers['x-echo']).toBe('yes');
    expect(answer.body).toEqual(Buffer.concat([Buffer.from('POST /v1/segment?title=My%20segment '), body]));
    const received = server.received.at(-1);
    expect(received?.body).toEqual(body);
    expect(received?.headers).toMatchObject({
      'x-test': 'yes',
      authorization: 'Bearer abc',
      'content-length': '3',
      host: server.origin.slice('http://'.length),
    });
  });

  it.each(['DELETE', 'GET', 'PUT'])('frames the body of a %s by its length', async (method) => {
    const body = Buffer.from('[{"segment":1,"userid":"u"}]');
    const answer = await transport.send({ ...get('/v1/segment'), method, body });
    expect(answer.status).toBe(201);
    expect(server.received.at(-1)).toMatchObject({ method, body });
    expect(server.received.at(-1)?.headers['content-length']).toBe(String(body.length));
  });

  it('puts the request target on the request line as given: no dot segments resolved, no re-escaping', async () => {
    await transport.send(get('/a/../b/%2e%2E/c?x=%2F&y=a%20b'));
    expect(server.received.at(-1)?.url).toBe('/a/../b/%2e%2E/c?x=%2F&y=a%20b');
  });

  it('reaches an IPv6 origin ([::1]) and names it in the host header', async () => {
    const v6 = createHttpServer((req, res) => res.end(req.headers.host));
    await new Promise<void>((resolve) => v6.listen(0, '::1', resolve));
    try {
      const { port } = v6.address() as AddressInfo;
      const answer = await transport.send({ ...get('/v6'), origin: `http://[::1]:${port}` });
      expect(answer.body.toString()).toBe(`[::1]:${port}`);
    } finally {
      v6.closeAllConnections();
      await new Promise<void>((resolve) => v6.close(() => resolve()));
    }
  });

  it('returns a redirect as it is, without following it', async () => {
    const answer = await transport.send(get('/redirect'));
    expect(answer).toMatchObject({ status: 302, headers: { location: '/elsewhere' } });
    expect(server.received.at(-1)?.url).toBe('/redirect');
  });

  it('returns repeated set-cookie headers as a list', async () => {
    const answer = await transport.send(get('/cookies'));
    expect(answer.headers['set-cookie']).toEqual(['a=1', 'b=2']);
    expect(answer.headers['x-one']).toBe('one');
  });

  it.each([
    [
      'a header value with a line break',
      '/x',
      { headers: { 'x-bad': 'a\r\nx-injected: 1' } },
      'ERR_INVALID_CHAR',
    ],
    ['a header name with a space', '/x', { headers: { 'x bad': '1' } }, 'ERR_INVALID_HTTP_TOKEN'],
    ['a method that is not a token', '/x', { method: 'GE T' }, 'ERR_INVALID_HTTP_TOKEN'],
    ['a path with a space', '/a b', {}, 'ERR_UNESCAPED_CHARACTERS'],
    ['an origin that is not http(s)', '/x', { origin: 'ftp://127.0.0.1' }, 'ERR_INVALID_PROTOCOL'],
    ['an origin that is not a URL', '/x', { origin: 'not a url' }, 'ERR_INVALID_URL'],
  ] as const)('refuses %s before sending: not retryable, never sent', async (_, path, extra, code) => {
    const before = server.received.length;
    const error = await failure(transport.send(get(path, extra)));
    expect(classifyTransportError(error)).toMatchObject({ code, retryable: false, outcomeUnknown: false });
    expect(server.received.length).toBe(before);
  });
});

describe('createHttpSend: the connection pool', () => {
  it('reuses one keep-alive connection for successive requests', async () => {
    const own = await startServer((_, res) => res.end('ok'));
    try {
      for (let i = 0; i < 5; i++) await transport.send({ ...get(`/n/${i}`), origin: own.origin });
      expect(own.received).toHaveLength(5);
      expect(own.connections).toBe(1);
    } finally {
      await own.close();
    }
  });

  it('opens at most 64 connections to one origin; more requests wait for a free one', async () => {
    const waiting: Array<() => void> = [];
    const own = await startServer((_, res) => {
      // Holds the first 64 requests and answers them together: 64 connections open at once.
      // Fewer and this never answers; more and the count below is off.
      waiting.push(() => res.end('ok'));
      if (waiting.length === 64 || own.received.length > 64) for (const answer of waiting.splice(0)) answer();
    });
    const pool = privateSend();
    try {
      const answers = await Promise.all(
        Array.from({ length: 70 }, (_, i) => pool.send({ ...get(`/n/${i}`), origin: own.origin })),
      );
      expect(answers.every((answer) => answer.status === 200)).toBe(true);
      expect(own.received).toHaveLength(70);
      expect(own.connections).toBe(64);
    } finally {
      await pool.close();
      await own.close();
    }
  });

  it('closes a connection that stayed unused for the idle timeout', async () => {
    let socket: Socket | undefined;
    const own = await startServer((_, res, raw) => {
      socket = raw.socket;
      res.end('ok');
    });
    own.http.keepAliveTimeout = 600_000; // the server would keep it: a close is the client's doing
    const agents = createAgents({ idleTimeoutMs: 50 });
    try {
      await createHttpSend({ agents })({ ...get('/idle'), origin: own.origin });
      await closed(socket as Socket);
      expect(own.connections).toBe(1);
    } finally {
      agents.http.destroy();
      await own.close();
    }
  });

  it('does not cut an answer that is slower than the idle timeout but within its own', async () => {
    let answer: (() => void) | undefined;
    const own = await startServer((_, res) => {
      answer = () => res.end('late');
    });
    const agents = createAgents({ idleTimeoutMs: 20 });
    try {
      const pending = createHttpSend({ agents })({
        ...get('/slow', { timeoutMs: 60_000 }),
        origin: own.origin,
      });
      while (own.received.length === 0) await new Promise((resolve) => setImmediate(resolve));
      const [socket] = Object.values(agents.http.sockets).flat();
      await once(socket as Socket, 'timeout'); // the agent's idle timer fired on the busy socket
      answer?.();
      expect((await pending).body.toString()).toBe('late');
    } finally {
      agents.http.destroy();
      await own.close();
    }
  });

  it('shares one pair of keep-alive agents per process by default', async () => {
    expect(sharedAgents()).toBe(sharedAgents());
    for (const agent of Object.values(sharedAgents())) {
      // `options` is what the agent was built with (Node keeps it; @types/node does not list it).
      expect((agent as unknown as { options: object }).options).toMatchObject({
        keepAlive: true,
        maxSockets: 64,
        timeout: 10_000,
        scheduling: 'lifo',
      });
      expect((agent as unknown as { options: object }).options).not.toHaveProperty('rejectUnauthorized');
    }
    const answer = await createHttpSend()(get('/shared'));
    expect(answer.status).toBe(201);
  });
});

describe('createHttpSend: the size cap', () => {
  it('refuses an answer whose declared length is above the cap at once, and drops the connection', async () => {
    const error = await failure(transport.send(get('/big-declared')));
    expect(error).toBeInstanceOf(ResponseTooLargeError);
    await closed(sockets.at(-1) as Socket);
    expect(classifyTransportError(error)).toMatchObject({
      code: 'DMP_RESPONSE_TOO_LARGE',
      retryable: false,
      outcomeUnknown: true,
    });
  });

  it('refuses a streamed answer once it grows past the cap, and drops the connection', async () => {
    const error = await failure(transport.send(get('/big-streamed')));
    expect(error).toMatchObject({ code: 'DMP_RESPONSE_TOO_LARGE', maxBytes: 1024, status: 200 });
    await closed(sockets.at(-1) as Socket);
  });
});

describe('createHttpSend: failures, and what they say about the request', () => {
  it('no answer headers within the timeout: retryable, outcome unknown (it was received)', async () => {
    const before = server.received.length;
    const error = await failure(transport.send(get('/no-headers', { timeoutMs: 50 })));
    expect(classifyTransportError(error)).toMatchObject({
      code: 'DMP_HEADERS_TIMEOUT',
      retryable: true,
      outcomeUnknown: true,
      aborted: false,
    });
    expect(server.received.length).toBe(before + 1);
    await closed(sockets.at(-1) as Socket);
  });

  it('on a kept-alive connection the wait is for the headers, not for a connect', async () => {
    const pool = privateSend(1024, { connectTimeoutMs: 60_000 });
    try {
      await pool.send(get('/warm-up'));
      const error = await failure(pool.send(get('/no-headers', { timeoutMs: 50 })));
      expect(error).toMatchObject({ code: 'DMP_HEADERS_TIMEOUT' });
    } finally {
      await pool.close();
    }
  });

  it.each([
    ['before its first byte', '/headers-only'],
    ['after a first part', '/stalled-body'],
  ])('a gap in the body (%s) longer than the timeout: retryable, outcome unknown', async (_, path) => {
    const error = await failure(transport.send(get(path, { timeoutMs: 50 })));
    expect(classifyTransportError(error)).toMatchObject({
      code: 'DMP_BODY_TIMEOUT',
      retryable: true,
      outcomeUnknown: true,
    });
    await closed(sockets.at(-1) as Socket);
  });

  it('a reset after the request was received: retryable, outcome unknown', async () => {
    const error = await failure(transport.send(get('/reset')));
    expect(classifyTransportError(error)).toMatchObject({
      code: 'ECONNRESET',
      retryable: true,
      outcomeUnknown: true,
      aborted: false,
    });
  });

  it('a connection lost in the middle of the body: retryable, outcome unknown', async () => {
    const error = await failure(transport.send(get('/reset-mid-body')));
    expect(classifyTransportError(error)).toMatchObject({
      code: 'ECONNRESET',
      retryable: true,
      outcomeUnknown: true,
    });
  });

  it('stops when the caller aborts a request in flight: aborted, never retried', async () => {
    const controller = new AbortController();
    const before = server.received.length;
    const pending = transport.send(get('/no-headers', { timeoutMs: 60_000, signal: controller.signal }));
    // Aborts once the partner holds the request, so the abort is of a request in flight.
    while (server.received.length === before) await new Promise((resolve) => setImmediate(resolve));
    controller.abort();
    const error = await failure(pending);
    expect(classifyTransportError(error)).toMatchObject({
      code: 'ABORT_ERR',
      aborted: true,
      retryable: false,
    });
    await closed(sockets.at(-1) as Socket);
  });

  it('sends nothing when the signal is already aborted', async () => {
    const before = server.received.length;
    const error = await failure(transport.send(get('/x', { signal: AbortSignal.abort() })));
    expect(classifyTransportError(error)).toMatchObject({ aborted: true });
    expect(server.received.length).toBe(before);
  });

  it('connection refused: retryable, never sent', async () => {
    const gone = await startServer();
    const origin = gone.origin;
    await gone.close();
    const error = await failure(transport.send({ ...get('/x'), origin }));
    expect(classifyTransportError(error)).toMatchObject({
      code: 'ECONNREFUSED',
      retryable: true,
      outcomeUnknown: false,
    });
  });

  it('a TLS handshake that never completes is a connect timeout: retryable, never sent', async () => {
    const silent = await startSilentServer();
    const pool = privateSend(1024, { connectTimeoutMs: 50 });
    try {
      const origin = `https://127.0.0.1:${silent.port}`;
      const error = await failure(pool.send({ ...get('/x', { timeoutMs: 60_000 }), origin }));
      expect(classifyTransportError(error)).toMatchObject({
        code: 'DMP_CONNECT_TIMEOUT',
        retryable: true,
        outcomeUnknown: false,
      });
      // Only the TLS ClientHello (a handshake record, 0x16) arrived: no request.
      expect(silent.bytes()[0]).toBe(0x16);
      expect(silent.bytes().includes('GET /x')).toBe(false);
    } finally {
      await pool.close();
      await silent.close();
    }
  });

  it.runIf(process.platform === 'linux')(
    'a TCP connect that never completes is a connect timeout: retryable, never sent',
    async () => {
      const backlog = await startFullBacklog();
      const pool = privateSend(1024, { connectTimeoutMs: 50 });
      try {
        const origin = `http://127.0.0.1:${backlog.port}`;
        const error = await failure(pool.send({ ...get('/x', { timeoutMs: 60_000 }), origin }));
        expect(classifyTransportError(error)).toMatchObject({
          code: 'DMP_CONNECT_TIMEOUT',
          retryable: true,
          outcomeUnknown: false,
        });
      } finally {
        await pool.close();
        await backlog.close();
      }
    },
  );

  it('a connection dropped during the TLS handshake: retryable, never sent', async () => {
    const dropping = createNetServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => dropping.listen(0, '127.0.0.1', resolve));
    try {
      const origin = `https://127.0.0.1:${(dropping.address() as AddressInfo).port}`;
      const error = await failure(transport.send({ ...get('/x'), origin }));
      expect(classifyTransportError(error)).toMatchObject({
        code: 'ECONNRESET',
        retryable: true,
        outcomeUnknown: false,
      });
    } finally {
      await new Promise<void>((resolve) => dropping.close(() => resolve()));
    }
  });
});

describe('createHttpSend over TLS', () => {
  const key = readFileSync(new URL('fixtures/tls-127.0.0.1-key.pem', import.meta.url));
  const cert = readFileSync(new URL('fixtures/tls-127.0.0.1-cert.pem', import.meta.url));
  let reached = 0;
  let origin = '';
  const tls = createHttpsServer({ key, cert }, (_, res) => {
    reached++;
    res.end('secure');
  });

  beforeAll(async () => {
    await new Promise<void>((resolve) => tls.listen(0, '127.0.0.1', resolve));
    origin = `https://127.0.0.1:${(tls.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    tls.closeAllConnections();
    await new Promise<void>((resolve) => tls.close(() => resolve()));
  });

  it('verifies the certificate: an untrusted one is refused before sending, not retryable', async () => {
    const error = await failure(transport.send({ ...get('/x'), origin }));
    expect(classifyTransportError(error)).toMatchObject({
      code: 'DEPTH_ZERO_SELF_SIGNED_CERT',
      retryable: false,
      outcomeUnknown: false,
    });
    expect(reached).toBe(0);
  });

  it('talks to a server whose certificate it trusts, over one kept-alive connection', async () => {
    const agents = createAgents({ ca: cert });
    let connections = 0;
    const count = () => connections++;
    tls.on('secureConnection', count);
    try {
      const send = createHttpSend({ agents });
      for (let i = 0; i < 3; i++) {
        const answer = await send({ ...get(`/n/${i}`), origin });
        expect(answer.body.toString()).toBe('secure');
      }
      expect(reached).toBe(3);
      expect(connections).toBe(1);
    } finally {
      tls.off('secureConnection', count);
      agents.https.destroy();
    }
  });
});

import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

/**
 * The one HTTP primitive every partner call goes through: Node's own `node:http` / `node:https`
 * (part of the runtime, so 0 bytes in a Lambda bundle) over keep-alive pools shared by the whole
 * process (a Lambda container reuses its connections across invocations), with a connect
 * timeout, the connector's timeout for the answer and a cap on the answer's size.
 *
 * The connect timeout is separate on purpose: a request whose connection never came up never
 * reached the partner, so `classifyTransportError` can say "not sent" and a create that must not
 * be repeated blindly can still be retried at once.
 */

export interface HttpRequest {
  readonly method: string;
  /** `https://api.partner.com` (scheme, host and port only). */
  readonly origin: string;
  /** The request target exactly as it goes on the request line: `/prefix/v1/segment?id=1`. */
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: Buffer | undefined;
  /** Bounds the wait for the answer's headers once connected, and then each gap in its body. */
  readonly timeoutMs?: number | undefined;
  readonly signal?: AbortSignal | undefined;
}

export interface HttpResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: Buffer;
}

export type HttpSend = (request: HttpRequest) => Promise<HttpResponse>;

export const DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 5000;
const DEFAULT_CONNECT_TIMEOUT_MS = 5000;

/** The answer was larger than the cap: it is not read further and the connection is dropped. */
export class ResponseTooLargeError extends Error {
  override readonly name = 'ResponseTooLargeError';
  readonly code = 'DMP_RESPONSE_TOO_LARGE';
  constructor(
    readonly status: number,
    readonly maxBytes: number,
  ) {
    super(`response body exceeds ${maxBytes} bytes (status ${status})`);
  }
}

export type HttpTimeoutCode = 'DMP_CONNECT_TIMEOUT' | 'DMP_HEADERS_TIMEOUT' | 'DMP_BODY_TIMEOUT';

const TIMEOUT_WAITS: Record<HttpTimeoutCode, string> = {
  DMP_CONNECT_TIMEOUT: 'no connection (TCP and TLS) within',
  DMP_HEADERS_TIMEOUT: 'no answer headers within',
  DMP_BODY_TIMEOUT: 'the answer body paused for more than',
};

/** One of the three waits ran out; the code says which (and so whether the request left). */
export class HttpTimeoutError extends Error {
  override readonly name = 'HttpTimeoutError';
  constructor(
    readonly code: HttpTimeoutCode,
    readonly timeoutMs: number,
  ) {
    super(`${TIMEOUT_WAITS[code]} ${timeoutMs} ms`);
  }
}

/**
 * A failure before the connection was up (TCP connected and, for https, TLS established): the
 * request was still in Node's buffer, so the partner cannot have seen it. The cause keeps the
 * system's code (`ECONNRESET` during the TLS handshake, `ECONNREFUSED`, a certificate error).
 */
export class NotConnectedError extends Error {
  override readonly name = 'NotConnectedError';
  readonly code = 'DMP_NOT_CONNECTED';
  constructor(cause: unknown) {
    super(`before the connection was up: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause,
    });
  }
}

/** The caller's signal aborted the exchange; `cause` is the signal's reason. */
export class HttpAbortError extends Error {
  override readonly name = 'AbortError';
  readonly code = 'ABORT_ERR';
  constructor(reason: unknown) {
    super('the request was aborted by the caller', { cause: reason });
  }
}

export interface Agents {
  readonly http: HttpAgent;
  readonly https: HttpsAgent;
}

export interface AgentSettings {
  /** How long an unused keep-alive connection is kept (default 10 s, less if the server says so). */
  readonly idleTimeoutMs?: number;
  /** Extra trusted certificate authorities for https (tests, a partner on a private CA). */
  readonly ca?: string | Buffer;
}

/**
 * Keep-alive pools, one per origin inside each agent: at most 64 connections to a partner (more
 * requests wait for one), an idle connection closed after 10 s (Node also honours a shorter
 * `Keep-Alive: timeout=` from the server, closing 1 s before it does). 'lifo' hands out the most
 * recently used connection: the fewest connections stay warm and the others age out, and the one
 * reused is the least likely to be closed by the server at that moment. TLS certificates are
 * always verified (Node's default; nothing here or in the options can turn it off).
 */
export function createAgents(settings: AgentSettings = {}): Agents {
  const pool = {
    keepAlive: true,
    maxSockets: 64,
    timeout: settings.idleTimeoutMs ?? 10_000,
    scheduling: 'lifo',
  } as const;
  return {
    http: new HttpAgent(pool),
    https: new HttpsAgent(settings.ca === undefined ? pool : { ...pool, ca: settings.ca }),
  };
}

let shared: Agents | undefined;

/** The process's connection pools, created on the first partner call. */
export function sharedAgents(): Agents {
  shared ??= createAgents();
  return shared;
}

export interface HttpSendOptions {
  /** Defaults to the process-wide {@link sharedAgents}. */
  readonly agents?: Agents;
  /** Answers larger than this are refused (default 1 MiB). */
  readonly maxResponseBytes?: number;
  /** Bounds the wait for a new connection, TLS included (default 5 s). */
  readonly connectTimeoutMs?: number;
}

/**
 * The headers with the body's length when the caller did not give it. Node only adds one by
 * itself for methods that usually carry a body (POST, PUT, PATCH); for a DELETE or GET with a
 * body it would send the bytes unframed, and the partner would read them as the next request.
 */
function framed(request: HttpRequest): Record<string, string> {
  const headers = { ...request.headers };
  const given = Object.keys(headers).some((name) => name.toLowerCase() === 'content-length');
  if (request.body !== undefined && !given) headers['content-length'] = String(request.body.length);
  return headers;
}

export function createHttpSend(options: HttpSendOptions = {}): HttpSend {
  const settings = {
    maxBytes: options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES,
    connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
  };
  // async: what `exchange` throws (bad input, an aborted signal) becomes a rejection.
  return async (request) => exchange(request, options.agents ?? sharedAgents(), settings);
}

function exchange(
  request: HttpRequest,
  agents: Agents,
  settings: { maxBytes: number; connectTimeoutMs: number },
): Promise<HttpResponse> {
  const { signal } = request;
  if (signal?.aborted) throw new HttpAbortError(signal.reason);
  const timeoutMs = request.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const origin = new URL(request.origin);
  const secure = origin.protocol === 'https:';
  if (!secure && origin.protocol !== 'http:') {
    const error = new TypeError(`unsupported protocol ${origin.protocol} in ${request.origin}`);
    throw Object.assign(error, { code: 'ERR_INVALID_PROTOCOL' });
  }
  // Node checks the method, header names and values and the path here, and throws at once
  // (ERR_INVALID_HTTP_TOKEN, ERR_INVALID_CHAR, ERR_UNESCAPED_CHARACTERS, ...): nothing is sent.
  const req = (secure ? httpsRequest : httpRequest)({
    agent: secure ? agents.https : agents.http,
    hostname: origin.hostname.replace(/^\[(.*)\]$/, '$1'), // [::1] -> ::1
    port: origin.port || undefined,
    method: request.method,
    // Sent as is: no dot-segment removal or re-escaping, so a signed path is the path sent.
    path: request.path,
    headers: framed(request),
  });
  return new Promise((resolve, reject) => {
    let settled = false;
    let connected = false;
    let timer: NodeJS.Timeout | undefined;
    const arm = (code: HttpTimeoutCode, ms: number) => {
      if (settled) return;
      clearTimeout(timer);
      timer = setTimeout(() => fail(new HttpTimeoutError(code, ms)), ms);
    };
    const done = () => {
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    };
    /** Ends the exchange and destroys its connection: a half-done exchange cannot be reused. */
    const fail = (error: Error) => {
      if (settled) return;
      done();
      req.destroy();
      reject(error);
    };
    const onAbort = () => fail(new HttpAbortError(signal?.reason));
    signal?.addEventListener('abort', onAbort, { once: true });

    const onConnected = () => {
      connected = true;
      arm('DMP_HEADERS_TIMEOUT', timeoutMs);
    };
    // Errors keep arriving after `fail` (a destroyed request reports "socket hang up"): the
    // listener stays, and `fail` ignores them once settled.
    req.on('error', (error) => fail(connected ? error : new NotConnectedError(error)));
    req.on('socket', (socket) => {
      // A kept-alive connection is up already. A new one cannot have connected yet: 'socket' is
      // emitted on the next tick after the agent creates it, before any I/O can complete.
      if (req.reusedSocket) return onConnected();
      arm('DMP_CONNECT_TIMEOUT', settings.connectTimeoutMs);
      socket.once(secure ? 'secureConnect' : 'connect', onConnected);
    });
    req.on('response', (res: IncomingMessage) => {
      const status = res.statusCode ?? 0;
      res.on('error', fail);
      const declared = Number(res.headers['content-length']);
      if (Number.isFinite(declared) && declared > settings.maxBytes) {
        return fail(new ResponseTooLargeError(status, settings.maxBytes));
      }
      const chunks: Buffer[] = [];
      let size = 0;
      arm('DMP_BODY_TIMEOUT', timeoutMs);
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > settings.maxBytes) return fail(new ResponseTooLargeError(status, settings.maxBytes));
        chunks.push(chunk);
        arm('DMP_BODY_TIMEOUT', timeoutMs);
      });
      res.on('end', () => {
        if (settled) return;
        done();
        resolve({ status, headers: res.headers, body: Buffer.concat(chunks, size) });
      });
      // Node reports a connection lost mid-body as an 'error' (ECONNRESET, "aborted") before
      // 'close'; this covers a close without one.
      res.on('close', () => {
        if (!res.complete) fail(Object.assign(new Error('the answer ended early'), { code: 'ECONNRESET' }));
      });
    });
    req.end(request.body);
  });
}

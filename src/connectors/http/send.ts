import type { Agent, Dispatcher } from 'undici';

/**
 * The one HTTP primitive every partner call goes through: an undici request over a keep-alive
 * connection pool shared by the whole process (a Lambda container reuses its connections across
 * invocations), with the connector's timeout and a cap on the size of the answer.
 */

export interface HttpRequest {
  readonly method: string;
  /** `https://api.partner.com` (scheme, host and port only). */
  readonly origin: string;
  /** The request target exactly as it goes on the request line: `/prefix/v1/segment?id=1`. */
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: Buffer | undefined;
  /** Bounds the wait for the answer's headers, and then each gap while its body arrives. */
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

/** Drops an unread answer and its connection; the abort it raises is expected, not an error. */
function discard(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => {});
  body.destroy();
}

let shared: Promise<Agent> | undefined;

/**
 * The process's connection pool: keep-alive, one pool per partner origin. undici is loaded on the
 * first partner call, not at import: it is half of a bundle that makes partner calls and is left
 * out of the bundles that never make one (esbuild drops an unreached dynamic import).
 */
export function sharedAgent(): Promise<Agent> {
  shared ??= import('undici').then(
    ({ Agent }) =>
      new Agent({
        keepAliveTimeout: 10_000,
        keepAliveMaxTimeout: 60_000,
        connectTimeout: 5_000,
        connections: 64,
      }),
  );
  return shared;
}

export interface HttpSendOptions {
  /** Defaults to the process-wide {@link sharedAgent}. */
  readonly dispatcher?: Pick<Dispatcher, 'request'>;
  /** Answers larger than this are refused (default 1 MiB). */
  readonly maxResponseBytes?: number;
}

export function createHttpSend(options: HttpSendOptions = {}): HttpSend {
  const maxBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
  return async (request) => {
    const dispatcher = options.dispatcher ?? (await sharedAgent());
    const timeout = request.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const response = await dispatcher.request({
      origin: request.origin,
      path: request.path,
      method: request.method as Dispatcher.HttpMethod,
      headers: { ...request.headers },
      body: request.body ?? null,
      headersTimeout: timeout,
      bodyTimeout: timeout,
      signal: request.signal ?? null,
    });
    const declared = Number(response.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxBytes) {
      discard(response.body);
      throw new ResponseTooLargeError(response.statusCode, maxBytes);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of response.body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > maxBytes) {
        discard(response.body);
        throw new ResponseTooLargeError(response.statusCode, maxBytes);
      }
      chunks.push(chunk);
    }
    // undici hands the connection back to its pool just after the body's end; without this turn
    // of the event loop, a request sent at once would find it busy and open another one.
    await new Promise<void>((resolve) => setImmediate(resolve));
    return { status: response.statusCode, headers: response.headers, body: Buffer.concat(chunks, size) };
  };
}

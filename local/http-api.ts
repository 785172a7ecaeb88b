import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import type { FunctionKey, RouteDefinition } from '../src/infra/resources.ts';
import { close, listen, originOf, PayloadTooLargeError, readBody } from './http-util.ts';
import { LOCAL_ACCOUNT_ID, type LocalFunction } from './lambda.ts';

/**
 * A local API Gateway HTTP API: serves the shared ROUTES over node:http and invokes the route's
 * function with a payload format 2.0 event, then maps the function's result back to HTTP by the
 * same rules as API Gateway. See docs/local-stack.md for what is and is not emulated.
 */

/** API Gateway's payload limit. */
const MAX_BODY_BYTES = 10 * 1024 * 1024;

/** Content types API Gateway hands to Lambda as text; every other body (or none) is base64. */
const TEXT_MEDIA_TYPES = new Set(['application/json', 'application/xml', 'application/javascript']);

export const LOCAL_API_ID = 'local';

export interface HttpApiOptions {
  readonly routes: readonly RouteDefinition[];
  readonly functions: ReadonlyMap<FunctionKey, LocalFunction>;
  /** 0 (default) picks a free port. */
  readonly port?: number;
  /** One line per request and handler errors; silent when absent. */
  readonly log?: (line: string) => void;
}

export interface HttpApi {
  readonly url: string;
  readonly port: number;
  readonly server: Server;
  stop(): Promise<void>;
}

/** What the adapter needs to know about one received request. */
export interface ReceivedRequest {
  readonly method: string;
  /** Request target as received: path and optional query string. */
  readonly url: string;
  /** Header name/value pairs in the order received (node's `rawHeaders`, flattened). */
  readonly rawHeaders: readonly string[];
  readonly body: Buffer;
  readonly sourceIp: string;
  readonly localPort: number;
  readonly httpVersion: string;
}

export interface EventIds {
  readonly requestId: string;
  readonly traceId: string;
  readonly timeEpoch: number;
}

export function routeKeyOf(route: Pick<RouteDefinition, 'method' | 'path'>): string {
  return `${route.method} ${route.path}`;
}

export async function startHttpApi(options: HttpApiOptions): Promise<HttpApi> {
  const routes = new Map(options.routes.map((route) => [routeKeyOf(route), route]));
  for (const route of options.routes) {
    if (!options.functions.has(route.function)) {
      throw new Error(`route ${routeKeyOf(route)}: function ${route.function} is not loaded`);
    }
  }
  const log = options.log ?? (() => {});
  let port = 0;

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      log(`http-api: unexpected error: ${(error as Error).stack ?? String(error)}`);
      if (!response.headersSent) writeGatewayError(response, 500, 'Internal Server Error', randomRequestId());
      else response.destroy();
    });
  });

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const started = Date.now();
    const requestId = randomRequestId();
    const target = request.url ?? '/';
    const path = splitTarget(target).rawPath;
    const route = routes.get(`${request.method} ${path}`);
    if (!route) {
      // API Gateway answers unmatched routes itself, without reading the body.
      request.resume();
      writeGatewayError(response, 404, 'Not Found', requestId);
      log(`${request.method} ${path} -> 404 (no route)`);
      return;
    }
    if (route.auth === 'iam' && !hasSigV4Signature(request.headers)) {
      // API Gateway's IAM authorizer: an unsigned call never reaches the function.
      request.resume();
      writeGatewayError(response, 403, 'Forbidden', requestId);
      log(`${request.method} ${target} -> 403 (no SigV4 signature)`);
      return;
    }
    let body: Buffer;
    try {
      body = await readBody(request, MAX_BODY_BYTES);
    } catch (error) {
      if (!(error instanceof PayloadTooLargeError)) throw error;
      writeGatewayError(response, 413, 'Request Entity Too Large', requestId);
      request.destroy();
      return;
    }
    const event = buildHttpApiEvent(
      {
        method: request.method ?? 'GET',
        url: target,
        rawHeaders: request.rawHeaders,
        body,
        sourceIp: normalizeIp(request.socket.remoteAddress),
        localPort: port,
        httpVersion: request.httpVersion,
      },
      routeKeyOf(route),
      { requestId, traceId: newTraceId(), timeEpoch: started },
    );
    const fn = options.functions.get(route.function)!;
    let mapped: MappedResponse;
    try {
      const result = await fn.invoke(event);
      mapped = mapHttpApiResult(result);
      if (mapped.problem)
        log(`${fn.functionName}: malformed response (${mapped.problem}); API Gateway answers 500`);
    } catch (error) {
      log(`${fn.functionName} ${requestId} ERROR ${(error as Error).stack ?? String(error)}`);
      mapped = gatewayError(500, 'Internal Server Error');
    }
    writeMapped(response, mapped, requestId);
    // As the deployed function logs: route, status, time; never the query (partner ids, tokens).
    log(`${request.method} ${path} -> ${mapped.statusCode} ${route.function} (${Date.now() - started} ms)`);
  }

  port = await listen(server, options.port ?? 0);
  return {
    url: originOf(port),
    port,
    server,
    stop: () => close(server),
  };
}

function splitTarget(target: string): { rawPath: string; rawQueryString: string } {
  const hash = target.indexOf('#');
  const withoutHash = hash === -1 ? target : target.slice(0, hash);
  const question = withoutHash.indexOf('?');
  if (question === -1) return { rawPath: withoutHash, rawQueryString: '' };
  return { rawPath: withoutHash.slice(0, question), rawQueryString: withoutHash.slice(question + 1) };
}

function normalizeIp(address: string | undefined): string {
  if (!address) return '127.0.0.1';
  return address.startsWith('::ffff:') ? address.slice('::ffff:'.length) : address;
}

function randomRequestId(): string {
  // API Gateway request ids look like "Ab1CdEfGhIjKlMn=": 16 base64 characters.
  return `${randomBytes(12).toString('base64').replaceAll('/', 'A').replaceAll('+', 'B').slice(0, 15)}=`;
}

function newTraceId(): string {
  return `Root=1-${Math.floor(Date.now() / 1000).toString(16)}-${randomBytes(12).toString('hex')}`;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** `12/Mar/2020:19:03:58 +0000`, as in requestContext.time. */
export function formatRequestTime(epochMs: number): string {
  const d = new Date(epochMs);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${pad(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${pad(d.getUTCHours())}:${pad(
    d.getUTCMinutes(),
  )}:${pad(d.getUTCSeconds())} +0000`;
}

function isTextContentType(contentType: string | undefined): boolean {
  if (!contentType) return false;
  const mediaType = contentType.split(';', 1)[0]!.trim().toLowerCase();
  return mediaType.startsWith('text/') || TEXT_MEDIA_TYPES.has(mediaType);
}

/** Builds the payload format 2.0 event for one request, as API Gateway does. */
export function buildHttpApiEvent(
  request: ReceivedRequest,
  routeKey: string,
  ids: EventIds,
): APIGatewayProxyEventV2 {
  const { rawPath, rawQueryString } = splitTarget(request.url);

  // Headers: lower-cased, duplicates joined with commas; Cookie headers become `cookies`.
  const headers: Record<string, string> = {};
  const cookies: string[] = [];
  for (let index = 0; index + 1 < request.rawHeaders.length; index += 2) {
    const name = request.rawHeaders[index]!.toLowerCase();
    const value = request.rawHeaders[index + 1]!;
    if (name === 'cookie') {
      cookies.push(...value.split('; ').filter((cookie) => cookie.length > 0));
      continue;
    }
    headers[name] = name in headers ? `${headers[name]},${value}` : value;
  }
  // What API Gateway adds (in AWS x-forwarded-proto is https and x-forwarded-port 443).
  headers['x-forwarded-for'] = headers['x-forwarded-for']
    ? `${headers['x-forwarded-for']}, ${request.sourceIp}`
    : request.sourceIp;
  headers['x-forwarded-proto'] = 'http';
  headers['x-forwarded-port'] = String(request.localPort);
  headers['x-amzn-trace-id'] ??= ids.traceId;

  // Query string: decoded, duplicate keys joined with commas.
  const queryStringParameters: Record<string, string> = {};
  for (const [key, value] of new URLSearchParams(rawQueryString)) {
    queryStringParameters[key] =
      key in queryStringParameters ? `${queryStringParameters[key]},${value}` : value;
  }

  // API Gateway reports the domain it served the request on, never an arbitrary Host header: a
  // loopback Host is kept (the browser tests use 127.0.0.1 and localhost), any other becomes ours.
  const host = headers['host'];
  const domainName =
    host !== undefined && /^(127\.0\.0\.1|localhost|\[::1\])(:\d{1,5})?$/i.test(host)
      ? host
      : `127.0.0.1:${request.localPort}`;
  const method = request.method.toUpperCase();
  const event: APIGatewayProxyEventV2 = {
    version: '2.0',
    routeKey,
    rawPath,
    rawQueryString,
    ...(cookies.length > 0 ? { cookies } : {}),
    headers,
    ...(Object.keys(queryStringParameters).length > 0 ? { queryStringParameters } : {}),
    requestContext: {
      accountId: LOCAL_ACCOUNT_ID,
      apiId: LOCAL_API_ID,
      domainName,
      domainPrefix: domainName.split('.', 1)[0]!,
      http: {
        method,
        path: rawPath,
        protocol: `HTTP/${request.httpVersion}`,
        sourceIp: request.sourceIp,
        userAgent: headers['user-agent'] ?? '',
      },
      requestId: ids.requestId,
      routeKey,
      stage: '$default',
      time: formatRequestTime(ids.timeEpoch),
      timeEpoch: ids.timeEpoch,
    },
    isBase64Encoded: false,
  };
  if (request.body.length > 0) {
    const asText = isTextContentType(headers['content-type']);
    event.body = asText ? request.body.toString('utf8') : request.body.toString('base64');
    event.isBase64Encoded = !asText;
  }
  return event;
}

export interface MappedResponse {
  readonly statusCode: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly cookies: readonly string[];
  readonly body: Buffer;
  /** Why the result was rejected as malformed (the response is then API Gateway's 500). */
  readonly problem?: string;
}

function gatewayError(statusCode: number, message: string, problem?: string): MappedResponse {
  return {
    statusCode,
    headers: { 'content-type': 'application/json' },
    cookies: [],
    body: Buffer.from(JSON.stringify({ message })),
    ...(problem ? { problem } : {}),
  };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Maps a function's (JSON) result to an HTTP response by the payload 2.0 rules: a result with a
 * `statusCode` is a structured response; anything else is a 200 `application/json` whose body is
 * the result (a string as is, other values as JSON).
 */
export function mapHttpApiResult(result: unknown): MappedResponse {
  if (!isRecord(result) || !('statusCode' in result)) {
    const body = typeof result === 'string' ? result : JSON.stringify(result);
    return {
      statusCode: 200,
      headers: { 'content-type': 'application/json' },
      cookies: [],
      body: Buffer.from(body),
    };
  }
  const { statusCode, headers = {}, cookies = [], body, isBase64Encoded = false } = result;
  if (
    typeof statusCode !== 'number' ||
    !Number.isInteger(statusCode) ||
    statusCode < 100 ||
    statusCode > 599
  ) {
    return gatewayError(
      500,
      'Internal Server Error',
      `statusCode ${JSON.stringify(statusCode)} is not an HTTP status`,
    );
  }
  if (!isRecord(headers)) return gatewayError(500, 'Internal Server Error', 'headers is not an object');
  if (!Array.isArray(cookies) || cookies.some((cookie) => typeof cookie !== 'string')) {
    return gatewayError(500, 'Internal Server Error', 'cookies is not an array of strings');
  }
  if (body !== undefined && body !== null && typeof body !== 'string') {
    return gatewayError(500, 'Internal Server Error', 'body is not a string');
  }
  if (typeof isBase64Encoded !== 'boolean') {
    return gatewayError(500, 'Internal Server Error', 'isBase64Encoded is not a boolean');
  }
  const outHeaders: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!['string', 'number', 'boolean'].includes(typeof value)) {
      return gatewayError(500, 'Internal Server Error', `header ${name} is not a string, number or boolean`);
    }
    outHeaders[name.toLowerCase()] = String(value);
  }
  const text = typeof body === 'string' ? body : '';
  return {
    statusCode,
    headers: outHeaders,
    cookies: cookies as string[],
    body: isBase64Encoded ? Buffer.from(text, 'base64') : Buffer.from(text, 'utf8'),
  };
}

function writeMapped(response: ServerResponse, mapped: MappedResponse, requestId: string): void {
  const headers: Record<string, string | string[]> = { ...mapped.headers };
  const setCookies = [...(headers['set-cookie'] ? [headers['set-cookie'] as string] : []), ...mapped.cookies];
  delete headers['set-cookie'];
  if (setCookies.length > 0) headers['set-cookie'] = setCookies;
  headers['apigw-requestid'] = requestId;
  headers['content-length'] = String(mapped.body.length);
  response.writeHead(mapped.statusCode, headers);
  response.end(mapped.body);
}

function writeGatewayError(
  response: ServerResponse,
  statusCode: number,
  message: string,
  requestId: string,
): void {
  writeMapped(response, gatewayError(statusCode, message), requestId);
}

const SIGV4_AUTHORIZATION =
  /^AWS4-HMAC-SHA256 Credential=[^/\s]+\/\d{8}\/[a-z0-9-]+\/execute-api\/aws4_request, ?SignedHeaders=[a-z0-9;-]+, ?Signature=[0-9a-f]{64}$/;

/**
 * Whether a request carries a SigV4 signature for execute-api (the shape, and its date header).
 * The local stack checks presence only: there are no IAM policies to evaluate locally, and the
 * local credentials are public.
 */
export function hasSigV4Signature(headers: IncomingMessage['headers']): boolean {
  const authorization = headers['authorization'];
  return (
    typeof authorization === 'string' &&
    SIGV4_AUTHORIZATION.test(authorization) &&
    typeof headers['x-amz-date'] === 'string'
  );
}

/** Generates API Gateway-like request ids for callers outside a request (tests). */
export function newEventIds(): EventIds {
  return { requestId: randomRequestId(), traceId: newTraceId(), timeEpoch: Date.now() };
}

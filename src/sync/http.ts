import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { parseCookies } from './cookies.ts';
import { TRANSPARENT_GIF } from './pixel.ts';
import type { SyncRequest, SyncResponse } from './service.ts';

/**
 * Translation between API Gateway HTTP API (payload 2.0) and the sync domain. The query is read
 * from `rawQueryString`, not from `queryStringParameters`, because API Gateway joins repeated
 * names with commas there, which would let `userid=a&userid=b` pass as the id `a,b`.
 */
export function toSyncRequest(event: APIGatewayProxyEventV2): SyncRequest & { readonly debug: boolean } {
  // No prototype: names like `__proto__` or `constructor` are plain parameters here.
  const query: Record<string, string> = Object.create(null);
  const duplicates = new Set<string>();
  for (const [name, value] of new URLSearchParams(event.rawQueryString ?? '')) {
    if (Object.hasOwn(query, name)) duplicates.add(name);
    else query[name] = value;
  }
  const headers: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(event.headers ?? {})) headers[name.toLowerCase()] = value;
  return {
    query,
    duplicateParams: [...duplicates],
    cookies: parseCookies(event.cookies),
    headers,
    domainName: event.requestContext.domainName,
    debug: query['debug'] === '1',
  };
}

const COMMON_HEADERS = {
  'cache-control': 'no-store, max-age=0',
  // The /uid URL carries a partner's user id: never pass it on as a Referer to the next partner.
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
};

export function toHttpResult(response: SyncResponse, debug: boolean): APIGatewayProxyStructuredResultV2 {
  const reasonHeader: Record<string, string> = response.reason ? { 'x-dmp-reason': response.reason } : {};
  if (debug) {
    return {
      statusCode: 200,
      headers: { ...COMMON_HEADERS, ...reasonHeader, 'content-type': 'application/json' },
      cookies: [...response.setCookies],
      body: JSON.stringify({
        status: response.status,
        outcome: response.outcome,
        reason: response.reason,
        platformId: response.platformId,
        location: response.location,
        trace: response.trace,
      }),
    };
  }
  if (response.status === 302 && response.location) {
    return {
      statusCode: 302,
      headers: { ...COMMON_HEADERS, location: response.location },
      cookies: [...response.setCookies],
      body: '',
    };
  }
  const retry: Record<string, string> = response.status === 503 ? { 'retry-after': '60' } : {};
  return pixel(response.status, [...response.setCookies], { ...reasonHeader, ...retry });
}

export function pixel(
  statusCode: number,
  cookies: string[] = [],
  extraHeaders: Record<string, string> = {},
): APIGatewayProxyStructuredResultV2 {
  return {
    statusCode,
    headers: { ...COMMON_HEADERS, ...extraHeaders, 'content-type': 'image/gif' },
    cookies,
    body: TRANSPARENT_GIF.toString('base64'),
    isBase64Encoded: true,
  };
}

export class DeadlineExceededError extends Error {
  override readonly name = 'DeadlineExceededError';
}

/** Time kept back to build and return the 503 pixel once the work gave up. */
export const ANSWER_RESERVE_MS = 500;

/** How long the work may take, given what Lambda says is left; never less than 100 ms. */
export function answerDeadlineMs(remainingMs: number): number {
  return Math.max(100, remainingMs - ANSWER_RESERVE_MS);
}

/** The work's result, or DeadlineExceededError after `ms` (the work itself keeps running). */
export function withDeadline<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineExceededError(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

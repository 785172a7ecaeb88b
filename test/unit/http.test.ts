import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { describe, expect, it, vi } from 'vitest';
import {
  answerDeadlineMs,
  DeadlineExceededError,
  pixel,
  toHttpResult,
  toSyncRequest,
  withDeadline,
} from '../../src/sync/http.ts';
import type { SyncResponse } from '../../src/sync/service.ts';

const DOMAIN = 'abc123.execute-api.eu-west-1.amazonaws.com';

function event(overrides: Partial<APIGatewayProxyEventV2> = {}): APIGatewayProxyEventV2 {
  return {
    version: '2.0',
    routeKey: 'GET /uid',
    rawPath: '/uid',
    rawQueryString: '',
    headers: {},
    isBase64Encoded: false,
    requestContext: {
      accountId: '123456789012',
      apiId: 'abc123',
      domainName: DOMAIN,
      domainPrefix: 'abc123',
      http: {
        method: 'GET',
        path: '/uid',
        protocol: 'HTTP/1.1',
        sourceIp: '198.51.100.7',
        userAgent: 'test',
      },
      requestId: 'req-1',
      routeKey: 'GET /uid',
      stage: '$default',
      time: '01/Jan/2026:00:00:00 +0000',
      timeEpoch: 1_767_225_600_000,
    },
    ...overrides,
  };
}

function response(overrides: Partial<SyncResponse> = {}): SyncResponse {
  return { status: 200, outcome: 'stored', setCookies: [], trace: [], counts: [], ...overrides };
}

/** A 1x1 GIF whose only pixel is transparent: what a browser shows as nothing. */
function expectTransparentPixel(gif: Buffer): void {
  expect(gif.length).toBeLessThanOrEqual(43);
  expect(gif.subarray(0, 6).toString('latin1')).toBe('GIF89a');
  expect(gif.readUInt16LE(6)).toBe(1);
  expect(gif.readUInt16LE(8)).toBe(1);
  const paletteBytes = gif[10]! & 0x80 ? 3 * 2 ** ((gif[10]! & 0x07) + 1) : 0;
  const extension = 13 + paletteBytes;
  // Graphic Control Extension with the transparency flag, naming the colour the pixel uses.
  expect([...gif.subarray(extension, extension + 3)]).toEqual([0x21, 0xf9, 0x04]);
  expect(gif[extension + 3]! & 0x01).toBe(1);
  expect(gif.at(-1)).toBe(0x3b);
}

function headerValue(result: ReturnType<typeof toHttpResult>, name: string): unknown {
  return result.headers?.[name];
}

describe('toSyncRequest', () => {
  it('decodes the seed callback query', () => {
    const request = toSyncRequest(event({ rawQueryString: 'userid=abcdef123&pl=99999&plsec=verysecure' }));
    expect(request.query).toEqual({ userid: 'abcdef123', pl: '99999', plsec: 'verysecure' });
    expect(request.duplicateParams).toEqual([]);
    expect(request.domainName).toBe(DOMAIN);
    expect(request.debug).toBe(false);
  });

  it('percent-decodes values once', () => {
    const request = toSyncRequest(event({ rawQueryString: 'userid=q83vEjRWeJA%2B%2Fw%3D%3D&gpp_sid=2%2C7' }));
    expect(request.query['userid']).toBe('q83vEjRWeJA+/w==');
    expect(request.query['gpp_sid']).toBe('2,7');
  });

  it('detects a repeated parameter from rawQueryString and keeps the first value', () => {
    const request = toSyncRequest(
      event({
        rawQueryString: 'userid=a&pl=99999&userid=b&plsec=x&pl=88888',
        // API Gateway joins repeated names with commas here; it must not be read.
        queryStringParameters: { userid: 'a,b', pl: '99999,88888', plsec: 'x' },
      }),
    );
    expect(request.query['userid']).toBe('a');
    expect(request.query['pl']).toBe('99999');
    expect([...request.duplicateParams].sort()).toEqual(['pl', 'userid']);
  });

  it('reads an empty or absent query as no parameters', () => {
    expect(toSyncRequest(event({ rawQueryString: '' })).query).toEqual({});
    const noQuery = { ...event() } as Partial<APIGatewayProxyEventV2>;
    delete noQuery.rawQueryString;
    expect(toSyncRequest(noQuery as APIGatewayProxyEventV2).query).toEqual({});
  });

  it('parses the cookies array', () => {
    const request = toSyncRequest(
      event({ cookies: ['dmp_uid=Qm9iQm9iQm9iQm9iQm9iQg', 'dmp_sa=1:abc; x=y'] }),
    );
    expect(request.cookies.get('dmp_uid')).toBe('Qm9iQm9iQm9iQm9iQm9iQg');
    expect(request.cookies.get('dmp_sa')).toBe('1:abc');
    expect(request.cookies.get('x')).toBe('y');
    expect(toSyncRequest(event()).cookies.size).toBe(0);
  });

  it('lower-cases header names', () => {
    const request = toSyncRequest(event({ headers: { 'Sec-GPC': '1', 'X-Forwarded-Proto': 'https' } }));
    expect(request.headers['sec-gpc']).toBe('1');
    expect(request.headers['x-forwarded-proto']).toBe('https');
    expect(request.headers['Sec-GPC']).toBeUndefined();
  });

  it('turns on debug only for debug=1', () => {
    expect(toSyncRequest(event({ rawQueryString: 'debug=1' })).debug).toBe(true);
    expect(toSyncRequest(event({ rawQueryString: 'debug=true' })).debug).toBe(false);
    expect(toSyncRequest(event({ rawQueryString: 'debug=0' })).debug).toBe(false);
  });

  it('does not let a parameter named like an Object member misbehave', () => {
    const request = toSyncRequest(event({ rawQueryString: '__proto__=x&constructor=y&hasOwnProperty=z' }));
    expect(request.duplicateParams).toEqual([]);
    expect(Object.hasOwn(request.query, 'constructor')).toBe(true);
    expect(request.query['constructor']).toBe('y');
  });
});

describe('toHttpResult', () => {
  const location = 'https://api.third-party.com/sync?out=https%3A%2F%2Fgo.flx1.com%2Fuid';

  it('redirects with 302, the location, no caching and no referrer', () => {
    const result = toHttpResult(
      response({ status: 302, outcome: 'redirected', location, setCookies: ['dmp_uid=abc; Secure'] }),
      false,
    );
    expect(result.statusCode).toBe(302);
    expect(headerValue(result, 'location')).toBe(location);
    expect(headerValue(result, 'cache-control')).toMatch(/no-store/);
    expect(headerValue(result, 'referrer-policy')).toBe('no-referrer');
    expect(result.cookies).toEqual(['dmp_uid=abc; Secure']);
    expect(result.body).toBe('');
  });

  it('answers a refusal with the 1x1 transparent GIF, its status and the reason', () => {
    const result = toHttpResult(
      response({ status: 403, outcome: 'rejected', reason: 'token_mismatch' }),
      false,
    );
    expect(result.statusCode).toBe(403);
    expect(result.isBase64Encoded).toBe(true);
    expect(headerValue(result, 'content-type')).toBe('image/gif');
    expect(headerValue(result, 'x-dmp-reason')).toBe('token_mismatch');
    expect(headerValue(result, 'cache-control')).toMatch(/no-store/);
    expect(headerValue(result, 'referrer-policy')).toBe('no-referrer');
    expect(headerValue(result, 'location')).toBeUndefined();
    expectTransparentPixel(Buffer.from(result.body ?? '', 'base64'));
  });

  it('answers a stored mapping with the 200 pixel and the cookies, without a reason header', () => {
    const result = toHttpResult(response({ setCookies: ['dmp_uid=abc'] }), false);
    expect(result.statusCode).toBe(200);
    expect(headerValue(result, 'content-type')).toBe('image/gif');
    expect(headerValue(result, 'x-dmp-reason')).toBeUndefined();
    expect(result.cookies).toEqual(['dmp_uid=abc']);
  });

  it('explains itself as JSON with debug=1, never redirecting', () => {
    const trace = [{ step: 'consent', detail: 'tcf_v2', platformId: 99999 }];
    const result = toHttpResult(
      response({
        status: 302,
        outcome: 'redirected',
        location,
        platformId: 99999,
        trace,
        setCookies: ['a=b'],
      }),
      true,
    );
    expect(result.statusCode).toBe(200);
    expect(headerValue(result, 'content-type')).toBe('application/json');
    expect(headerValue(result, 'location')).toBeUndefined();
    expect(headerValue(result, 'cache-control')).toMatch(/no-store/);
    expect(result.cookies).toEqual(['a=b']);
    expect(JSON.parse(result.body ?? '')).toEqual({
      status: 302,
      outcome: 'redirected',
      platformId: 99999,
      location,
      trace,
    });
  });

  it('includes the reason in the debug JSON and header', () => {
    const result = toHttpResult(response({ status: 451, outcome: 'rejected', reason: 'consent_gpc' }), true);
    expect(headerValue(result, 'x-dmp-reason')).toBe('consent_gpc');
    expect(JSON.parse(result.body ?? '')).toMatchObject({ status: 451, reason: 'consent_gpc' });
  });
});

describe('pixel', () => {
  it('is the same GIF for every status', () => {
    expect(pixel(400).body).toBe(pixel(200).body);
    expect(pixel(400).statusCode).toBe(400);
    expect(pixel(400).cookies).toEqual([]);
  });
});

describe('the answer deadline', () => {
  it('keeps 500 ms of what Lambda has left to answer the 503 pixel, never less than 100 ms', () => {
    expect(answerDeadlineMs(5000)).toBe(4500);
    expect(answerDeadlineMs(300)).toBe(100);
  });

  it('gives the work its result, or DeadlineExceededError when the deadline comes first', async () => {
    await expect(withDeadline(Promise.resolve('done'), 1000)).resolves.toBe('done');
    vi.useFakeTimers();
    try {
      const never = new Promise<string>(() => {});
      const raced = withDeadline(never, 4500);
      const settled = expect(raced).rejects.toBeInstanceOf(DeadlineExceededError);
      await vi.advanceTimersByTimeAsync(4500);
      await settled;
    } finally {
      vi.useRealTimers();
    }
  });

  it('a 503 answer carries Retry-After and the cookies it sets', () => {
    const result = toHttpResult(
      response({ status: 503, reason: 'optout_incomplete', setCookies: ['dmp_optout=1'] }),
      false,
    );
    expect(result.statusCode).toBe(503);
    expect(result.headers).toMatchObject({ 'retry-after': '60', 'x-dmp-reason': 'optout_incomplete' });
    expect(result.cookies).toEqual(['dmp_optout=1']);
  });
});

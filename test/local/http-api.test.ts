import { request as httpRequest } from 'node:http';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mapHttpApiResult } from '../../local/http-api.ts';
import type { LocalStack } from '../../local/stack.ts';
import { embeddedEnvironment } from '../../src/config/embedded.ts';
import { FUNCTIONS, MAPPING_TABLE, ROUTES } from '../../src/infra/resources.ts';
import { startEchoStack } from '../support/local-stack.ts';

interface Echo {
  readonly event: APIGatewayProxyEventV2;
  readonly invocations: number;
  readonly coldStartEnv: Record<string, string | undefined>;
  readonly context: Record<string, unknown>;
}

interface RawResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
}

/** node:http rather than fetch: exact request targets, repeated headers, every Set-Cookie. */
function send(
  url: string,
  options: { method?: string; headers?: [string, string][]; body?: Buffer | string } = {},
): Promise<RawResponse> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const request = httpRequest(
      {
        host: target.hostname,
        port: target.port,
        path: `${target.pathname}${target.search}`,
        method: options.method ?? 'GET',
        // Raw header pairs keep repeats; node then adds no Host header of its own.
        headers: [['Host', target.host], ...(options.headers ?? [])].flat(),
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            body: Buffer.concat(chunks),
          }),
        );
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    request.end(options.body);
  });
}

async function echo(url: string, options?: Parameters<typeof send>[1]): Promise<Echo> {
  const response = await send(url, options);
  expect(response.status).toBe(200);
  return JSON.parse(response.body.toString('utf8')) as Echo;
}

/** A query parameter telling the echo handler to return `result` verbatim. */
function respondWith(result: unknown): string {
  return Buffer.from(JSON.stringify(result)).toString('base64url');
}

describe('local HTTP API (payload format 2.0)', () => {
  let stack: LocalStack;

  beforeAll(async () => {
    stack = await startEchoStack();
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('builds the event like API Gateway: route, raw and decoded query, headers, request context', async () => {
    const started = Date.now();
    const { event } = await echo(
      `${stack.apiUrl}/sync?pl=99999&a=1&a=2&b=x+y%20z&c=%5B%5BUSERID%5D%5D&empty`,
      {
        headers: [
          ['User-Agent', 'test-agent/1.0'],
          ['X-Custom', 'one'],
          ['x-custom', 'two'],
          ['X-Forwarded-For', '203.0.113.9'],
        ],
      },
    );
    expect(event.version).toBe('2.0');
    expect(event.routeKey).toBe('GET /sync');
    expect(event.rawPath).toBe('/sync');
    expect(event.rawQueryString).toBe('pl=99999&a=1&a=2&b=x+y%20z&c=%5B%5BUSERID%5D%5D&empty');
    expect(event.queryStringParameters).toEqual({
      pl: '99999',
      a: '1,2',
      b: 'x y z',
      c: '[[USERID]]',
      empty: '',
    });
    expect(event.headers['x-custom']).toBe('one,two');
    expect(event.headers['user-agent']).toBe('test-agent/1.0');
    expect(event.headers['x-forwarded-for']).toBe('203.0.113.9, 127.0.0.1');
    expect(event.headers['x-forwarded-proto']).toBe('http');
    expect(event.headers['x-forwarded-port']).toBe(new URL(stack.apiUrl).port);
    expect(event.headers['x-amzn-trace-id']).toMatch(/^Root=1-[0-9a-f]{8}-[0-9a-f]{24}$/);
    expect(Object.keys(event.headers).every((name) => name === name.toLowerCase())).toBe(true);
    expect(event.cookies).toBeUndefined();
    expect(event.body).toBeUndefined();
    expect(event.isBase64Encoded).toBe(false);

    const context = event.requestContext;
    expect(context.routeKey).toBe('GET /sync');
    expect(context.stage).toBe('$default');
    expect(context.domainName).toBe(new URL(stack.apiUrl).host);
    expect(context.domainPrefix).toBe('127');
    expect(context.http).toEqual({
      method: 'GET',
      path: '/sync',
      protocol: 'HTTP/1.1',
      sourceIp: '127.0.0.1',
      userAgent: 'test-agent/1.0',
    });
    expect(context.accountId).toMatch(/^\d{12}$/);
    expect(context.requestId).toMatch(/^[A-Za-z0-9]{15}=$/);
    expect(context.timeEpoch).toBeGreaterThanOrEqual(started);
    expect(context.time).toMatch(/^\d{2}\/[A-Z][a-z]{2}\/\d{4}:\d{2}:\d{2}:\d{2} \+0000$/);
  });

  it('omits queryStringParameters when there is no query', async () => {
    const { event } = await echo(`${stack.apiUrl}/uid`);
    expect(event.routeKey).toBe('GET /uid');
    expect(event.rawQueryString).toBe('');
    expect(event.queryStringParameters).toBeUndefined();
  });

  it('moves Cookie headers into the cookies array', async () => {
    const { event } = await echo(`${stack.apiUrl}/sync`, {
      headers: [
        ['Cookie', 'dmp_uid=abc123; dmp_sync=99999.1700000000'],
        ['Cookie', 'other=x'],
      ],
    });
    expect(event.cookies).toEqual(['dmp_uid=abc123', 'dmp_sync=99999.1700000000', 'other=x']);
    expect(event.headers['cookie']).toBeUndefined();
  });

  it('passes text bodies as text and everything else base64-encoded', async () => {
    const form = await echo(`${stack.apiUrl}/optout`, {
      method: 'POST',
      headers: [['Content-Type', 'application/x-www-form-urlencoded']],
      body: 'optout=1&return=%2F',
    });
    expect(form.event.routeKey).toBe('POST /optout');
    expect(form.event.isBase64Encoded).toBe(true);
    expect(Buffer.from(form.event.body!, 'base64').toString('utf8')).toBe('optout=1&return=%2F');

    const binary = Buffer.from([0, 1, 2, 250, 255]);
    const octets = await echo(`${stack.apiUrl}/optout`, { method: 'POST', body: binary });
    expect(octets.event.isBase64Encoded).toBe(true);
    expect(Buffer.from(octets.event.body!, 'base64')).toEqual(binary);

    const json = await echo(`${stack.apiUrl}/optout`, {
      method: 'POST',
      headers: [['Content-Type', 'application/json; charset=utf-8']],
      body: '{"optout":true}',
    });
    expect(json.event.isBase64Encoded).toBe(false);
    expect(json.event.body).toBe('{"optout":true}');
  });

  it('gives the handler a Lambda-like context and the Lambda environment', async () => {
    const { context, coldStartEnv } = await echo(`${stack.apiUrl}/sync`);
    const definition = FUNCTIONS.userSync;
    expect(context['functionName']).toBe(`DmpActivation-local-${definition.id}`);
    expect(context['functionVersion']).toBe('$LATEST');
    expect(context['invokedFunctionArn']).toBe(
      `arn:aws:lambda:eu-west-1:000000000000:function:DmpActivation-local-${definition.id}`,
    );
    expect(context['memoryLimitInMB']).toBe(String(definition.memorySizeMb));
    expect(context['awsRequestId']).toMatch(/^[0-9a-f-]{36}$/);
    expect(context['remainingTimeInMillis']).toBeGreaterThan(0);
    expect(context['remainingTimeInMillis']).toBeLessThanOrEqual(definition.timeoutSeconds * 1000);
    // Module-level code ran after the environment was set (cold start).
    expect(coldStartEnv).toEqual({ POWERTOOLS_SERVICE_NAME: 'user-sync', DMP_ENVIRONMENT: 'local' });

    expect(process.env['AWS_REGION']).toBe('eu-west-1');
    expect(process.env[MAPPING_TABLE.envVar]).toBe(MAPPING_TABLE.localName);
    expect(process.env['AWS_ENDPOINT_URL_DYNAMODB']).toBe(stack.dynamodbEndpoint);
    expect(process.env['AWS_ENDPOINT_URL_SQS']).toBe(
      `http://sqs.eu-west-1.localhost:${new URL(stack.sqsEndpoint).port}`,
    );
    expect(process.env['AWS_ENDPOINT_URL_S3']).toBe(stack.s3Endpoint);
    expect(process.env['AWS_ENDPOINT_URL_SECRETS_MANAGER']).toBe(stack.secretsEndpoint);
    expect(process.env['POWERTOOLS_METRICS_NAMESPACE']).toBe('DmpActivation');
    expect(stack.env['DMP_ENVIRONMENT']).toBe('local');
  });

  it('hands the handlers the local configuration with the reference partner at its real origin', () => {
    const config = embeddedEnvironment(process.env);
    expect(config.name).toBe('local');
    const templates = config.platforms.map((platform) => platform.sync?.urlTemplate ?? '');
    expect(templates.length).toBeGreaterThan(0);
    for (const template of templates) {
      expect(template.startsWith(`${stack.partnerUrl}/sync?`)).toBe(true);
    }
  });

  it('maps structured results: status, headers, cookies as separate Set-Cookie headers, base64 bodies', async () => {
    const gif = Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64');
    const response = await send(
      `${stack.apiUrl}/sync?respond=${respondWith({
        statusCode: 200,
        headers: { 'Content-Type': 'image/gif', 'Cache-Control': 'no-store', 'X-Count': 3 },
        cookies: ['dmp_uid=abc; Path=/; HttpOnly', 'dmp_sync=1; Path=/; Max-Age=60'],
        body: gif.toString('base64'),
        isBase64Encoded: true,
      })}`,
    );
    expect(response.status).toBe(200);
    expect(response.headers['content-type']).toBe('image/gif');
    expect(response.headers['cache-control']).toBe('no-store');
    expect(response.headers['x-count']).toBe('3');
    expect(response.headers['set-cookie']).toEqual([
      'dmp_uid=abc; Path=/; HttpOnly',
      'dmp_sync=1; Path=/; Max-Age=60',
    ]);
    expect(response.headers['apigw-requestid']).toBeDefined();
    expect(response.body).toEqual(gif);

    const redirect = await send(
      `${stack.apiUrl}/sync?respond=${respondWith({ statusCode: 302, headers: { Location: 'https://partner.example/sync' } })}`,
    );
    expect(redirect.status).toBe(302);
    expect(redirect.headers['location']).toBe('https://partner.example/sync');
    expect(redirect.body.length).toBe(0);
  });

  it('infers a 200 application/json response from a result without statusCode', async () => {
    const object = await send(
      `${stack.apiUrl}/sync?respond=${respondWith({ message: 'Hello from Lambda!' })}`,
    );
    expect(object.status).toBe(200);
    expect(object.headers['content-type']).toBe('application/json');
    expect(JSON.parse(object.body.toString('utf8'))).toEqual({ message: 'Hello from Lambda!' });

    const text = await send(`${stack.apiUrl}/sync?respond=${respondWith('Hello from Lambda!')}`);
    expect(text.status).toBe(200);
    expect(text.headers['content-type']).toBe('application/json');
    expect(text.body.toString('utf8')).toBe('Hello from Lambda!');
  });

  it('answers 500 like API Gateway when the handler throws or returns a malformed response', async () => {
    const thrown = await send(`${stack.apiUrl}/sync?throw=1`);
    expect(thrown.status).toBe(500);
    expect(thrown.headers['content-type']).toBe('application/json');
    expect(JSON.parse(thrown.body.toString('utf8'))).toEqual({ message: 'Internal Server Error' });

    const malformed = await send(
      `${stack.apiUrl}/sync?respond=${respondWith({ statusCode: 200, body: { a: 1 } })}`,
    );
    expect(malformed.status).toBe(500);
    expect(JSON.parse(malformed.body.toString('utf8'))).toEqual({ message: 'Internal Server Error' });
  });

  it('answers 404 {"message":"Not Found"} for unknown routes and methods', async () => {
    for (const [method, path] of [
      ['GET', '/nope'],
      ['POST', '/sync'],
      ['GET', '/sync/'],
    ] as const) {
      const response = await send(`${stack.apiUrl}${path}`, { method });
      expect(response.status, `${method} ${path}`).toBe(404);
      expect(JSON.parse(response.body.toString('utf8'))).toEqual({ message: 'Not Found' });
    }
  });

  it('serves every shared route and imports the function once (warm invocations)', async () => {
    const counts: number[] = [];
    for (const route of ROUTES) {
      const response = await send(`${stack.apiUrl}${route.path}`, { method: route.method });
      if (route.auth === 'iam') {
        // Unsigned: refused before the function (signed calls: test/integration/privacy.test.ts).
        expect(response.status, `${route.method} ${route.path}`).toBe(403);
        expect(JSON.parse(response.body.toString('utf8'))).toEqual({ message: 'Forbidden' });
        continue;
      }
      expect(response.status, `${route.method} ${route.path}`).toBe(200);
      counts.push((JSON.parse(response.body.toString('utf8')) as Echo).invocations);
    }
    expect(counts).toEqual([...counts].sort((a, b) => a - b));
    expect(new Set(counts).size).toBe(counts.length);
  });
});

describe('mapHttpApiResult', () => {
  it('rejects results API Gateway would refuse', () => {
    expect(mapHttpApiResult({ statusCode: '200' }).statusCode).toBe(500);
    expect(mapHttpApiResult({ statusCode: 200, cookies: 'a=b' }).statusCode).toBe(500);
    expect(mapHttpApiResult({ statusCode: 200, headers: { a: { b: 1 } } }).statusCode).toBe(500);
    expect(mapHttpApiResult({ statusCode: 204 })).toMatchObject({ statusCode: 204, cookies: [] });
  });

  it('turns null and arrays into JSON bodies', () => {
    expect(mapHttpApiResult(null).body.toString()).toBe('null');
    expect(mapHttpApiResult([1, 2]).body.toString()).toBe('[1,2]');
  });
});

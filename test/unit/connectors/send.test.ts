import type { Dispatcher } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHttpSend, ResponseTooLargeError, sharedAgent } from '../../../src/connectors/http/send.ts';
import { privateSend, startServer, type TestServer } from './http-support.ts';

let server: TestServer;
const transport = privateSend(1024);

beforeAll(async () => {
  server = await startServer((request, res) => {
    if (request.url === '/big-declared') {
      res.writeHead(200, { 'content-length': '2048' });
      res.end(Buffer.alloc(2048, 0x61));
    } else if (request.url === '/big-streamed') {
      res.writeHead(200, { 'content-type': 'text/plain' }); // chunked: no content-length
      res.write(Buffer.alloc(600, 0x61));
      res.end(Buffer.alloc(600, 0x62));
    } else {
      res.writeHead(201, { 'x-echo': request.headers['x-test'] ?? '' });
      res.end(Buffer.concat([Buffer.from(`${request.method} ${request.url} `), request.body]));
    }
  });
});

afterAll(async () => {
  await transport.close();
  await server.close();
});

describe('createHttpSend', () => {
  it('sends the path and body exactly, and returns status, headers and body bytes', async () => {
    const body = Buffer.from([0x00, 0xff, 0x0a]);
    const answer = await transport.send({
      method: 'POST',
      origin: server.origin,
      path: '/v1/segment?title=My%20segment',
      headers: { 'x-test': 'yes' },
      body,
      timeoutMs: 1000,
    });
    expect(answer.status).toBe(201);
    expect(answer.headers['x-echo']).toBe('yes');
    expect(answer.body).toEqual(Buffer.concat([Buffer.from('POST /v1/segment?title=My%20segment '), body]));
    expect(server.received.at(-1)?.body).toEqual(body);
  });

  it('refuses an answer whose declared length is above the cap', async () => {
    await expect(
      transport.send({ method: 'GET', origin: server.origin, path: '/big-declared', headers: {} }),
    ).rejects.toBeInstanceOf(ResponseTooLargeError);
  });

  it('refuses a streamed answer once it grows past the cap', async () => {
    await expect(
      transport.send({ method: 'GET', origin: server.origin, path: '/big-streamed', headers: {} }),
    ).rejects.toMatchObject({ code: 'DMP_RESPONSE_TOO_LARGE', maxBytes: 1024 });
  });

  it('passes the timeout as headersTimeout and bodyTimeout, and the caller signal', async () => {
    const seen: Dispatcher.RequestOptions[] = [];
    const fake = {
      request: async (options: Dispatcher.RequestOptions) => {
        seen.push(options);
        return { statusCode: 204, headers: {}, body: (async function* () {})() };
      },
    } as unknown as Pick<Dispatcher, 'request'>;
    const signal = new AbortController().signal;
    const send = createHttpSend({ dispatcher: fake });
    const answer = await send({
      method: 'GET',
      origin: 'https://api.example',
      path: '/x',
      headers: {},
      timeoutMs: 1234,
      signal,
    });
    expect(answer).toEqual({ status: 204, headers: {}, body: Buffer.alloc(0) });
    expect(seen[0]).toMatchObject({
      origin: 'https://api.example',
      path: '/x',
      method: 'GET',
      headersTimeout: 1234,
      bodyTimeout: 1234,
      signal,
    });
  });

  it('shares one keep-alive agent per process by default', async () => {
    expect(await sharedAgent()).toBe(await sharedAgent());
    const send = createHttpSend();
    const answer = await send({ method: 'GET', origin: server.origin, path: '/shared', headers: {} });
    expect(answer.status).toBe(201);
  });
});

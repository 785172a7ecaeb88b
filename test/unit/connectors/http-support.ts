import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent } from 'undici';
import { ApiSchema, type ApiSettings } from '../../../src/config/connector.ts';
import { createHttpSend, type HttpSend } from '../../../src/connectors/http/send.ts';

export interface Received {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: Buffer;
}

export type Handler = (request: Received, response: ServerResponse, raw: IncomingMessage) => void;

export interface TestServer {
  readonly origin: string;
  readonly received: Received[];
  /** TCP connections accepted so far. */
  connections: number;
  handle(handler: Handler): void;
  close(): Promise<void>;
}

/** A small HTTP server on 127.0.0.1, port 0, that records what it receives. */
export async function startServer(handler: Handler = (_, res) => res.end('ok')): Promise<TestServer> {
  let current = handler;
  const received: Received[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const request = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks),
      };
      received.push(request);
      current(request, res, req);
    });
  });
  const state: TestServer = {
    origin: '',
    received,
    connections: 0,
    handle(next) {
      current = next;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  server.on('connection', () => {
    state.connections++;
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(state, { origin: `http://127.0.0.1:${port}` });
}

export function json(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

/** A send over a private keep-alive agent, closed by `close()`. */
export function privateSend(maxResponseBytes?: number): {
  send: HttpSend;
  agent: Agent;
  close(): Promise<void>;
} {
  const agent = new Agent({ keepAliveTimeout: 10_000 });
  return {
    agent,
    send: createHttpSend({ dispatcher: agent, ...(maxResponseBytes ? { maxResponseBytes } : {}) }),
    close: () => agent.close(),
  };
}

export function api(input: Record<string, unknown>): ApiSettings {
  return ApiSchema.parse(input);
}

/** A sleep that records the delays it was asked for and returns at once. */
export function recordingSleep(): { sleep: (ms: number) => Promise<void>; delays: number[] } {
  const delays: number[] = [];
  return {
    delays,
    sleep: async (ms: number) => {
      delays.push(ms);
    },
  };
}

/** A clock the test moves by hand. */
export function manualClock(startMs = Date.UTC(2026, 0, 1)): {
  now: () => number;
  advance(ms: number): void;
} {
  let current = startMs;
  return {
    now: () => current,
    advance(ms) {
      current += ms;
    },
  };
}

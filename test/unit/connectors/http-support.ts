import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo, connect, createServer as createNetServer, type Socket } from 'node:net';
import { Worker } from 'node:worker_threads';
import { ApiSchema, type ApiSettings } from '../../../src/config/connector.ts';
import {
  type Agents,
  createAgents,
  createHttpSend,
  type HttpSend,
  type HttpSendOptions,
} from '../../../src/connectors/http/send.ts';

export interface Received {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: Buffer;
}

export type Handler = (request: Received, response: ServerResponse, raw: IncomingMessage) => void;

export interface TestServer {
  readonly origin: string;
  readonly http: Server;
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
    http: server,
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

/**
 * A send over private keep-alive pools (the shared ones' settings), so that a test sees only
 * its own connections; `close()` destroys them.
 */
export function privateSend(
  maxResponseBytes?: number,
  options: Omit<HttpSendOptions, 'agents' | 'maxResponseBytes'> = {},
): {
  send: HttpSend;
  agents: Agents;
  close(): Promise<void>;
} {
  const agents = createAgents();
  return {
    agents,
    send: createHttpSend({ agents, ...options, ...(maxResponseBytes ? { maxResponseBytes } : {}) }),
    close: async () => {
      agents.http.destroy();
      agents.https.destroy();
    },
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

/**
 * A TCP server on 127.0.0.1 that accepts connections and never says a word: an https client's
 * TLS handshake never completes (its connection never comes up), an http client's request is
 * received and never answered. `bytes` is everything it received.
 */
export async function startSilentServer(): Promise<{
  readonly port: number;
  readonly bytes: () => Buffer;
  close(): Promise<void>;
}> {
  const chunks: Buffer[] = [];
  const sockets = new Set<Socket>();
  const server = createNetServer((socket) => {
    sockets.add(socket);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    bytes: () => Buffer.concat(chunks),
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * A port on 127.0.0.1 where a TCP connect stays pending: a listening socket whose accept queue is
 * full. The listener lives in a worker whose event loop is blocked (so nothing is ever accepted),
 * with a backlog of 1; Linux queues backlog + 1 connections (`sk_acceptq_is_full` is
 * `ack_backlog > max_ack_backlog`) and then drops further SYNs, so the client keeps retrying its
 * SYN and its connect neither succeeds nor fails. The two fillers are awaited, not timed.
 */
export async function startFullBacklog(): Promise<{ readonly port: number; close(): Promise<void> }> {
  const release = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(
    `const { workerData, parentPort } = require('node:worker_threads');
     const server = require('node:net').createServer();
     server.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
       parentPort.postMessage(server.address().port);
       Atomics.wait(workerData, 0, 0);
       server.close();
     });`,
    { eval: true, workerData: release },
  );
  const port = await new Promise<number>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  const fillers = [connect(port, '127.0.0.1'), connect(port, '127.0.0.1')];
  for (const filler of fillers) {
    filler.on('error', () => {});
    await once(filler, 'connect');
  }
  return {
    port,
    async close() {
      for (const filler of fillers) filler.destroy();
      Atomics.store(release, 0, 1);
      Atomics.notify(release, 0);
      await once(worker, 'exit');
    },
  };
}

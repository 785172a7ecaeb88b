import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Server } from 'node:net';
import { join } from 'node:path';
import { type FauxqsServer, interceptLocalhostDns, startFauxqs } from 'fauxqs';
import { LOOPBACK } from './http-util.ts';

/**
 * SQS and S3 on fauxqs, in this process, on one endpoint. fauxqs 2.4 always listens on 0.0.0.0;
 * a local stack must not expose queues and buckets to the network, so while fauxqs starts its
 * listen() on 0.0.0.0 is redirected to 127.0.0.1 (checked afterwards).
 */

export interface LocalFauxqs {
  /** http://127.0.0.1:<port>: SQS (with an explicit client endpoint) and S3 (path-style). */
  readonly url: string;
  /**
   * http://sqs.<region>.localhost:<port>: the origin of the queue URLs fauxqs hands out. As the SQS
   * endpoint it matches them, as in AWS; otherwise the SDK warns on every call and sends to the
   * queue URL's host anyway. Resolves in this process through `resolveLocalhostSubdomains`.
   */
  readonly sqsUrl: string;
  readonly port: number;
  readonly server: FauxqsServer;
  stop(): Promise<void>;
}

type Listen = (this: Server, ...args: unknown[]) => Server;

async function onLoopback<T>(start: () => Promise<T>): Promise<T> {
  const prototype = Server.prototype as unknown as { listen: Listen };
  const original = prototype.listen;
  prototype.listen = function (this: Server, ...args: unknown[]) {
    const [first] = args;
    if (typeof first === 'object' && first !== null && (first as { host?: unknown }).host === '0.0.0.0') {
      args[0] = { ...(first as object), host: LOOPBACK };
    }
    return original.apply(this, args);
  };
  try {
    return await start();
  } finally {
    prototype.listen = original;
  }
}

export async function startLocalFauxqs(options: {
  readonly region: string;
  readonly dataDir?: string;
  readonly port?: number;
}): Promise<LocalFauxqs> {
  // Persisted queues keep the URL (host and port) they were created with, and GetQueueUrl returns
  // it: a restart over the same data must listen on the same port again.
  const portFile = options.dataDir ? join(options.dataDir, 'port') : undefined;
  let port = options.port ?? 0;
  if (options.dataDir) mkdirSync(options.dataDir, { recursive: true });
  if (portFile && port === 0 && existsSync(portFile))
    port = Number(readFileSync(portFile, 'utf8').trim()) || 0;
  const server = await onLoopback(() =>
    startFauxqs({
      port,
      logger: false,
      defaultRegion: options.region,
      messageSpies: true,
      ...(options.dataDir ? { dataDir: options.dataDir } : {}),
    }),
  ).catch((error: unknown) => {
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE' && portFile && port !== 0) {
      throw new Error(
        `SQS/S3 data in ${options.dataDir} has queue URLs on port ${port}, which is in use: free it, ` +
          'or start fresh (npm start -- --fresh)',
        { cause: error },
      );
    }
    throw error;
  });
  if (portFile) writeFileSync(portFile, `${server.port}\n`);
  const bound = new URL(server.address).hostname;
  if (bound !== LOOPBACK) {
    await server.stop();
    throw new Error(`fauxqs listened on ${bound} instead of ${LOOPBACK}; refusing to expose it`);
  }
  return {
    url: `http://${LOOPBACK}:${server.port}`,
    sqsUrl: `http://sqs.${options.region}.localhost:${server.port}`,
    port: server.port,
    server,
    stop: () => server.stop(),
  };
}

/**
 * Makes `*.localhost` resolve to 127.0.0.1 in this process (RFC 6761 reserves the name for
 * loopback; browsers and systemd-resolved do the same, glibc does not). Returns the undo.
 */
export function resolveLocalhostSubdomains(): () => void {
  return interceptLocalhostDns('localhost');
}

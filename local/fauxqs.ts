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

/**
 * fauxqs 2.4.1 with persisted data (`dataDir`, SQLite) loses a message whose visibility is set to
 * 0 (ChangeMessageVisibility, or its batch form, with VisibilityTimeout 0: "receive it again now"):
 * its statement writes NULL into the NOT NULL receive count, so the call fails after the message
 * was taken out of flight and before it was put back, and the message is gone until a restart.
 * The statement is replaced by one that clears only the receipt handle and the deadline (what the
 * in-memory store does). Idempotent; the in-memory mode is untouched.
 */
async function fixVisibilityResetOnPersistedQueues(): Promise<void> {
  // The package exports only its entry: the module is found beside it.
  const module = (await import(new URL('./persistence.js', import.meta.resolve('fauxqs')).href)) as {
    PersistenceManager?: { prototype: Record<string, unknown> };
  };
  const prototype = module.PersistenceManager?.prototype;
  if (!prototype || typeof prototype['updateMessageReady'] !== 'function')
    throw new Error('fauxqs changed: PersistenceManager.updateMessageReady is gone; review local/fauxqs.ts');
  if (prototype['__dmpFixed']) return;
  prototype['updateMessageReady'] = function (
    this: { db: { prepare(sql: string): { run(...values: unknown[]): unknown } } },
    messageId: string,
  ) {
    this.db
      .prepare(
        'UPDATE sqs_messages SET receipt_handle = NULL, visibility_deadline = NULL WHERE message_id = ?',
      )
      .run(messageId);
  };
  prototype['__dmpFixed'] = true;
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
  if (options.dataDir) {
    mkdirSync(options.dataDir, { recursive: true });
    await fixVisibilityResetOnPersistedQueues();
  }
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

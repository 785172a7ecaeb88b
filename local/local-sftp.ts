import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import type { EnvironmentConfig } from '../src/config/schema.ts';
import { platformApiSecretName } from '../src/config/secrets.ts';
import { persistentSshKey, startEmbeddedSftpServer } from './sftp-server.ts';

/**
 * The embedded SFTP server of `npm start`: a platform of the local config whose SFTP destination
 * pins EMBEDDED_SFTP_HOST_KEY (a marker, not a key) is served by an SFTP server on ssh2's server
 * API that the local stack starts. Its host key and the client key are generated once into
 * `<data>/sftp/` (a temporary directory with --memory) and stay pinned across restarts; the
 * platform's destination is pointed at the server (its port, its host key's fingerprint) and the
 * client key is put into the platform's API secret, as an operator would for a real partner. Files
 * land under `<data>/sftp/root/` (remote `/` is that directory). Any other SFTP destination is
 * left as configured (a real server named in a platform file).
 */

/** What a local platform file pins to be served by the embedded server. */
export const EMBEDDED_SFTP_HOST_KEY = 'SHA256:LocalStackEmbeddedSftpServerPinsItsOwnKey00';
export const EMBEDDED_SFTP_USER = 'dmp-local';

export interface LocalSftp {
  readonly host: string;
  readonly port: number;
  readonly username: string;
  readonly hostKeySha256: string;
  /** Remote `/` on this machine. */
  readonly root: string;
  /** The client's private key file: `sftp -i <file> -P <port> dmp-local@127.0.0.1`. */
  readonly clientKeyFile: string;
  /** Platforms it serves. */
  readonly platformIds: readonly number[];
}

export interface StartedLocalSftp {
  readonly sftp: LocalSftp | undefined;
  readonly config: EnvironmentConfig;
  /** Secret values with the client key added to each served platform's API secret. */
  readonly secrets: Record<string, unknown>;
  stop(): Promise<void>;
}

export async function startLocalSftp(
  config: EnvironmentConfig,
  secrets: Record<string, unknown>,
  options: { dataDir?: string | undefined; port?: number | undefined },
): Promise<StartedLocalSftp> {
  const served = config.platforms.filter((platform) => {
    const destination = platform.connector?.files?.destination;
    return destination?.type === 'sftp' && destination.hostKeySha256.includes(EMBEDDED_SFTP_HOST_KEY);
  });
  if (served.length === 0) return { sftp: undefined, config, secrets, stop: async () => {} };

  const dir = options.dataDir
    ? join(options.dataDir, 'sftp')
    : mkdtempSync(join(tmpdir(), 'dmp-local-sftp-'));
  const root = join(dir, 'root');
  mkdirSync(root, { recursive: true });
  // Written 0600: sftp and ssh refuse a key file others can read.
  const clientKeyFile = join(dir, 'client_key');
  const clientKey = persistentSshKey(clientKeyFile);
  const server = await startEmbeddedSftpServer({
    root,
    hostKey: persistentSshKey(join(dir, 'host_key')),
    username: EMBEDDED_SFTP_USER,
    clientKey,
    port: options.port ?? 0,
  });
  const ids = new Set(served.map((platform) => platform.id));
  const rewritten: EnvironmentConfig = {
    ...config,
    platforms: config.platforms.map((platform) => {
      const connector = platform.connector;
      const files = connector?.files;
      if (!ids.has(platform.id) || !connector || !files || files.destination.type !== 'sftp') return platform;
      mkdirSync(join(root, posix.normalize(`/${files.destination.directory}`)), { recursive: true });
      return {
        ...platform,
        connector: {
          ...connector,
          files: {
            ...files,
            destination: {
              ...files.destination,
              host: server.host,
              port: server.port,
              hostKeySha256: [server.hostKeySha256],
            },
          },
        },
      };
    }),
  };
  const withKeys = { ...secrets };
  for (const id of ids) {
    const name = platformApiSecretName(config.name, id);
    withKeys[name] = {
      ...((secrets[name] as Record<string, unknown> | undefined) ?? {}),
      sftpUsername: EMBEDDED_SFTP_USER,
      sftpPrivateKey: clientKey,
    };
  }
  return {
    sftp: {
      host: server.host,
      port: server.port,
      username: EMBEDDED_SFTP_USER,
      hostKeySha256: server.hostKeySha256,
      root,
      clientKeyFile,
      platformIds: [...ids],
    },
    config: rewritten,
    secrets: withKeys,
    async stop() {
      await server.stop();
      if (!options.dataDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

import { createHash, timingSafeEqual } from 'node:crypto';
import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import SftpClient from 'ssh2-sftp-client';
import { type ApiCredentials, ApiCredentialsSchema } from '../../config/api-credentials.ts';
import { platformApiSecretName } from '../../config/secret-names.ts';
import type { FileTarget, TargetSession } from '../exporter.ts';
import { temporaryNameOf } from '../naming.ts';
import type { FilePlatform } from '../platforms.ts';

/**
 * An SFTP file drop, with `ssh2-sftp-client` (pure JavaScript ssh2; its optional native crypto
 * bindings are left out of the Lambda bundle, see docs/files.md).
 *
 * - The server's host key must match one of the pinned SHA-256 fingerprints (OpenSSH's
 *   `SHA256:<base64>` form); any other key, including a changed one, is refused before
 *   authentication, so no credential is ever sent to an impostor.
 * - A file is written as `<name>.part` and renamed to its name once complete: the partner never
 *   sees a partial file, even when the connection is cut mid-upload.
 */

export interface SftpSettings {
  readonly host: string;
  readonly port: number;
  readonly directory: string;
  readonly hostKeySha256: readonly string[];
  readonly timeoutMs: number;
}

export interface SftpCredentials {
  readonly username: string;
  readonly privateKey?: string | undefined;
  readonly passphrase?: string | undefined;
  readonly password?: string | undefined;
}

export class HostKeyRejectedError extends Error {
  override readonly name = 'HostKeyRejectedError';
}

/** OpenSSH's fingerprint of a raw public key blob: `SHA256:` and unpadded base64. */
export function hostKeyFingerprint(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}

function pinned(fingerprint: string, allowed: readonly string[]): boolean {
  const presented = Buffer.from(fingerprint);
  let match = false;
  for (const candidate of allowed) {
    const expected = Buffer.from(candidate);
    if (expected.length === presented.length && timingSafeEqual(expected, presented)) match = true;
  }
  return match;
}

export class SftpTarget implements FileTarget {
  readonly description: string;

  constructor(
    private readonly settings: SftpSettings,
    private readonly credentials: () => Promise<SftpCredentials>,
  ) {
    this.description = `sftp://${settings.host}:${settings.port}${posix.join('/', settings.directory)}`;
  }

  async open(): Promise<TargetSession> {
    const { settings } = this;
    const credentials = await this.credentials();
    const client = new SftpClient('dmp-export-files');
    let presented: string | undefined;
    try {
      await client.connect({
        host: settings.host,
        port: settings.port,
        username: credentials.username,
        ...(credentials.privateKey
          ? { privateKey: credentials.privateKey, passphrase: credentials.passphrase }
          : { password: credentials.password }),
        readyTimeout: settings.timeoutMs,
        timeout: settings.timeoutMs,
        keepaliveInterval: 10_000,
        hostVerifier: (key: Buffer) => {
          presented = hostKeyFingerprint(key);
          return pinned(presented, settings.hostKeySha256);
        },
        // ssh2-sftp-client retries connects by itself; our retry is the next scheduled run.
        retries: 0,
      });
    } catch (error) {
      await client.end().catch(() => {});
      if (presented && !pinned(presented, settings.hostKeySha256)) {
        throw new HostKeyRejectedError(
          `host key of ${settings.host}:${settings.port} is ${presented}, which is not pinned ` +
            `(connector.files.destination.hostKeySha256: ${settings.hostKeySha256.join(', ')}): refused, ` +
            'nothing sent. If the partner changed its key, verify the new fingerprint with the partner and pin it.',
        );
      }
      throw new Error(
        `SFTP connection to ${settings.host}:${settings.port} failed: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    const path = (name: string) => posix.join(settings.directory, name);
    return {
      async upload(name: string, body: Readable) {
        const temporary = path(temporaryNameOf(name));
        let sent = 0;
        body.on('data', (chunk: Buffer) => {
          sent += chunk.length;
        });
        await client.put(body, temporary, { writeStreamOptions: { flags: 'w', mode: 0o644 } });
        // A write stream closed by a dropped connection may look like a finished upload: make sure
        // every byte was produced and is on the server before the file may be renamed.
        if (!body.readableEnded) {
          const error = new Error(`upload of ${name} stopped before the end of the file`);
          body.destroy(error);
          throw error;
        }
        const stored = (await client.stat(temporary)).size;
        if (stored !== sent)
          throw new Error(`upload of ${name} incomplete: ${stored} of ${sent} bytes on the server`);
      },
      async commit(name: string) {
        await client.rename(path(temporaryNameOf(name)), path(name));
      },
      async committed(name: string) {
        return (await client.exists(path(temporaryNameOf(name)))) === false;
      },
      async visible(name: string) {
        return (await client.exists(path(name))) !== false;
      },
      async close() {
        await client.end();
      },
    };
  }
}

/** The SFTP credentials in the platform's API secret. */
export function sftpCredentialsOf(
  secret: ApiCredentials | undefined,
  secretName: string,
  auth: 'key' | 'password',
): SftpCredentials {
  const username = secret?.['sftpUsername'];
  const privateKey = secret?.['sftpPrivateKey'];
  const password = secret?.['sftpPassword'];
  if (!username) throw new Error(`secret ${secretName} has no sftpUsername`);
  if (auth === 'key' && !privateKey)
    throw new Error(`secret ${secretName} has no sftpPrivateKey (auth: key)`);
  if (auth === 'password' && !password)
    throw new Error(`secret ${secretName} has no sftpPassword (auth: password)`);
  return auth === 'key'
    ? { username, privateKey, passphrase: secret?.['sftpPassphrase'] }
    : { username, password };
}

/** Reads a JSON secret (JsonSecrets.read). */
export type ReadSecret = (
  name: string,
  schema: typeof ApiCredentialsSchema,
) => Promise<ApiCredentials | undefined>;

/** The SFTP target of a platform; its credentials are read from its API secret on each session. */
export function sftpTargetFor(
  platform: FilePlatform,
  environment: string,
  readSecret: ReadSecret,
): FileTarget {
  const destination = platform.files.destination;
  if (destination.type !== 'sftp')
    throw new Error(`platform ${platform.platformId} delivers files by ${destination.type}, not sftp`);
  const secretName = platformApiSecretName(environment, platform.platformId);
  return new SftpTarget(destination, async () =>
    sftpCredentialsOf(await readSecret(secretName, ApiCredentialsSchema), secretName, destination.auth),
  );
}

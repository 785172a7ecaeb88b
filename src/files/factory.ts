import type { S3Client } from '@aws-sdk/client-s3';
import { type ApiCredentials, ApiCredentialsSchema, platformApiSecretName } from '../config/secrets.ts';
import { FILE_OUTBOX_BUCKET } from '../infra/resources.ts';
import type { FileTarget } from './exporter.ts';
import type { FilePlatform } from './platforms.ts';
import { S3Target } from './targets/s3.ts';
import { type SftpCredentials, SftpTarget } from './targets/sftp.ts';

/**
 * Wiring of file delivery from a function's environment, shared by the exporter and the CLI. The
 * staging side (what the population route step uses) lives in staging-store.ts, apart from the
 * S3 and SFTP targets, so that the route's bundle carries neither.
 */
export { fileStagingFromEnv, fileStore } from './staging-store.ts';

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

export interface TargetDeps {
  readonly environment: string;
  readonly s3: S3Client;
  /** Reads a JSON secret (JsonSecrets.read). */
  readonly readSecret: (
    name: string,
    schema: typeof ApiCredentialsSchema,
  ) => Promise<ApiCredentials | undefined>;
  readonly env?: NodeJS.ProcessEnv;
}

export function targetFor(platform: FilePlatform, deps: TargetDeps): FileTarget {
  const destination = platform.files.destination;
  if (destination.type === 's3') {
    const bucket = destination.bucket ?? (deps.env ?? process.env)[FILE_OUTBOX_BUCKET.envVar];
    if (!bucket)
      throw new Error(
        `${FILE_OUTBOX_BUCKET.envVar} is not set (platform ${platform.platformId} uses the outbox)`,
      );
    const options = {
      bucket,
      prefix: destination.prefix,
      externalId: destination.externalId,
      kmsKeyArn: destination.kmsKeyArn,
    };
    return destination.roleArn
      ? S3Target.withRole(deps.s3, { ...options, roleArn: destination.roleArn })
      : new S3Target(deps.s3, options);
  }
  const secretName = platformApiSecretName(deps.environment, platform.platformId);
  return new SftpTarget(destination, async () =>
    sftpCredentialsOf(await deps.readSecret(secretName, ApiCredentialsSchema), secretName, destination.auth),
  );
}

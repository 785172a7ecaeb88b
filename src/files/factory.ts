import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import type { EnvironmentConfig } from '../config/schema.ts';
import { type ApiCredentials, ApiCredentialsSchema, platformApiSecretName } from '../config/secrets.ts';
import { FILE_OUTBOX_BUCKET, FILE_STAGING_TABLE, fileExportGraceMs } from '../infra/resources.ts';
import { DynamoFileStore } from './dynamo-store.ts';
import type { FileTarget } from './exporter.ts';
import { type FilePlatform, filePlatforms } from './platforms.ts';
import { S3Target } from './targets/s3.ts';
import { type SftpCredentials, SftpTarget } from './targets/sftp.ts';

/**
 * Wiring of file delivery from a function's environment, shared by the exporter, the population
 * route step and the CLI.
 *
 * The route step (population) stages memberships of file-mode platforms with:
 *
 *   const staging = fileStagingFromEnv(config, dynamoDbClient());   // at cold start
 *   await staging.stage(memberships);                                // per batch
 *
 * Its function needs FILE_STAGING_TABLE (readWrite) in its FunctionDefinition.tables, which gives
 * it the table name in FILE_STAGING_TABLE_NAME.
 */

export function fileStore(
  config: EnvironmentConfig,
  client: DynamoDBClient,
  tableName: string,
  options: { now?: () => number; graceMs?: number } = {},
): DynamoFileStore {
  const settings = new Map(filePlatforms(config).map((platform) => [platform.platformId, platform.files]));
  return new DynamoFileStore(client, tableName, {
    settings: (platformId) => settings.get(platformId),
    ...options,
  });
}

/** The FileStaging (and export store) of this function, from FILE_STAGING_TABLE_NAME. */
export function fileStagingFromEnv(
  config: EnvironmentConfig,
  client: DynamoDBClient,
  env: NodeJS.ProcessEnv = process.env,
): DynamoFileStore {
  const tableName = env[FILE_STAGING_TABLE.envVar];
  if (!tableName) throw new Error(`${FILE_STAGING_TABLE.envVar} is not set`);
  return fileStore(config, client, tableName, { graceMs: fileExportGraceMs(env) });
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

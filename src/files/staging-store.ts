import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { EnvironmentConfig } from '../config/schema.ts';
import { FILE_STAGING_TABLE, fileExportGraceMs } from '../infra/resources.ts';
import { DynamoFileStore } from './dynamo-store.ts';
import { filePlatforms } from './platforms.ts';

/**
 * The staging of file-mode platforms' memberships from a function's environment, shared by the
 * exporter, the population route and release steps and the CLI (no S3 or SFTP code here).
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

import { CfnOutput, Stack, type StackProps, Tags } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type { Construct } from 'constructs';
import type { EnvironmentConfig } from '../src/config/schema.ts';
import {
  FILE_OUTBOX_BUCKET,
  FILE_STAGING_TABLE,
  FUNCTIONS,
  type FunctionDefinition,
  type FunctionKey,
  MAPPING_TABLE,
  POPULATION_TABLE,
  ROUTES,
  runtimeOf,
  SEGMENT_TABLE,
  STACK_OUTPUTS,
  stackName,
  TABLES,
  type TableDefinition,
} from '../src/infra/resources.ts';

type TableAccess = FunctionDefinition['tables'][number]['access'];

import { filePlatforms } from '../src/files/platforms.ts';
import { deliveryPlatforms, expiringPlatforms } from '../src/infra/population.ts';
import { createDataTable } from './constructs/data-table.ts';
import { deliveryWidgets } from './constructs/delivery-dashboard.ts';
import { FileDelivery } from './constructs/file-delivery.ts';
import { Monitoring } from './constructs/monitoring.ts';
import { Population } from './constructs/population.ts';
import { ServiceFunction } from './constructs/service-function.ts';
import { ServiceSecrets } from './constructs/service-secrets.ts';
import { SyncDomain } from './constructs/sync-domain.ts';
import { UserSyncApi } from './constructs/user-sync-api.ts';
import { reservedConcurrency } from './deployment.ts';

export interface DmpActivationStackProps extends StackProps {
  /** The validated configuration of the environment (config/environments/<name>.json). */
  readonly config: EnvironmentConfig;
}

/**
 * Whether an environment needs a function: the file exporter only where a platform delivers
 * files, the expiry sweep only where a partner takes removal calls but no lifetime.
 */
export function functionIsBuilt(definition: FunctionDefinition, config: EnvironmentConfig): boolean {
  const schedule = definition.schedule;
  if (schedule?.perPlatformMode === 'file')
    return filePlatforms(config).some((platform) => platform.files.destination.type === schedule.destination);
  if (definition === FUNCTIONS.expireMemberships) return expiringPlatforms(config).length > 0;
  return true;
}

/**
 * DynamoDB actions per access level of a function on a table (FunctionDefinition.tables): item-level
 * reads and writes only, spelled out rather than grantReadWriteData (which adds Scan and
 * DescribeTable). No Scan, no table administration.
 */
export const TABLE_ACTIONS: Record<TableAccess, readonly string[]> = {
  read: ['dynamodb:GetItem', 'dynamodb:BatchGetItem', 'dynamodb:Query'],
  readWrite: [
    'dynamodb:GetItem',
    'dynamodb:BatchGetItem',
    'dynamodb:PutItem',
    'dynamodb:UpdateItem',
    'dynamodb:DeleteItem',
    'dynamodb:Query',
    'dynamodb:BatchWriteItem',
    'dynamodb:ConditionCheckItem',
  ],
};

/** One environment of the service: `DmpActivation-<name>`. */
export class DmpActivationStack extends Stack {
  readonly config: EnvironmentConfig;
  readonly mappingTable: dynamodb.TableV2;
  readonly secrets: ServiceSecrets;
  readonly userSync: ServiceFunction;
  readonly api: UserSyncApi;
  readonly domain: SyncDomain | undefined;
  readonly monitoring: Monitoring;
  readonly population: Population;
  /** Present when the environment has file-mode platforms. */
  readonly files?: FileDelivery;

  static idFor(config: EnvironmentConfig): string {
    return stackName(config.name);
  }

  constructor(scope: Construct, id: string, props: DmpActivationStackProps) {
    const { config, ...stackProps } = props;
    super(scope, id, {
      description: `DMP activation: user sync and audience activation (${config.name})`,
      ...stackProps,
    });
    this.config = config;
    // Every taggable resource (a test walks the template): the environment's own tags first, so
    // that neither can replace `project` or `environment`.
    for (const [key, value] of Object.entries(config.tags)) Tags.of(this).add(key, value);
    Tags.of(this).add('project', 'dmp-activation');
    Tags.of(this).add('environment', config.name);

    // Every table and function comes from the shared definitions in src/infra/resources.ts.
    const tables = new Map<TableDefinition, dynamodb.TableV2>(
      TABLES.map((definition) => [definition, createDataTable(this, definition, config)]),
    );
    this.mappingTable = tables.get(MAPPING_TABLE)!;
    this.secrets = new ServiceSecrets(this, 'Secrets', { config });

    // File delivery exists only where a platform delivers files.
    if (filePlatforms(config).length > 0) this.files = new FileDelivery(this, 'FileDelivery', { config });

    const functions = {} as Partial<Record<FunctionKey, ServiceFunction>>;
    for (const [key, definition] of Object.entries(FUNCTIONS) as [FunctionKey, FunctionDefinition][]) {
      if (!functionIsBuilt(definition, config)) continue;
      const environment: Record<string, string> = {};
      for (const { table } of definition.tables) environment[table.envVar] = tables.get(table)!.tableName;
      for (const bucket of definition.buckets ?? []) {
        if (bucket === FILE_OUTBOX_BUCKET && this.files)
          environment[bucket.envVar] = this.files.outbox.bucketName;
      }
      // The function behind the public API (not the IAM-authorized privacy route) gets reserved concurrency sized to the API throttle: it
      // can neither starve other functions of the account nor be starved by them.
      const servesApi = ROUTES.some((route) => route.function === key && !route.auth);
      const fn = new ServiceFunction(this, definition.id, {
        definition,
        config,
        environment,
        reservedConcurrency: servesApi ? reservedConcurrency(config) : undefined,
      });
      for (const { table, access } of definition.tables) {
        fn.role.addToPrincipalPolicy(
          new iam.PolicyStatement({
            actions: [...TABLE_ACTIONS[access]],
            // Queries of the table's indexes (the expiry sweep's `byExpiry`, the exporter's `byWindow`).
            resources: [
              tables.get(table)!.tableArn,
              ...(table.globalIndexes ?? []).map(
                (index) => `${tables.get(table)!.tableArn}/index/${index.name}`,
              ),
            ],
          }),
        );
      }
      if (definition.secrets === 'platforms+syncTokenKey') this.secrets.grantGetValue(fn.role);
      if (definition.privacyKey) this.secrets.grantPrivacyKey(fn.role);
      // The population functions read the API credentials of the platforms they call, never those
      // of file platforms (SFTP keys: the exporter's own grant, FileDelivery.attachExporter).
      if (definition.secrets === 'platformApi' && !definition.schedule) {
        this.secrets.grantApiSecrets(
          fn.role,
          deliveryPlatforms(config.platforms).map((platform) => platform.id),
        );
      }
      functions[key] = fn;
    }
    this.userSync = functions.userSync!;

    this.domain = config.domain ? new SyncDomain(this, 'SyncDomain', { domain: config.domain }) : undefined;
    this.api = new UserSyncApi(this, 'UserSyncApi', {
      config,
      domainName: this.domain?.domainName,
      routes: ROUTES,
      functions: Object.fromEntries(Object.entries(functions).map(([key, fn]) => [key, fn.function])),
    });

    this.monitoring = new Monitoring(this, 'Monitoring', {
      config,
      api: this.api.api,
      functions: Object.fromEntries(Object.values(functions).map((fn) => [fn.node.id, fn.function])),
      syncLogGroup:
        functions.userSync && runtimeOf(FUNCTIONS.userSync).metrics === 'logMetricFilters'
          ? functions.userSync.logGroup
          : undefined,
    });
    this.files?.attachExporters(
      { s3: functions.exportFiles, sftp: functions.exportFilesSftp },
      this.secrets.apiSecrets,
      this.monitoring,
    );

    this.population = new Population(this, 'Population', {
      config,
      functions: Object.fromEntries(
        Object.entries(functions).map(([key, fn]) => [key, fn.function]),
      ) as Record<FunctionKey, lambda.Function>,
      tables,
      monitoring: this.monitoring,
    });
    if (functions.deliver)
      this.monitoring.dashboard.addWidgets(...deliveryWidgets(config, functions.deliver.logGroup));
    new CfnOutput(this, STACK_OUTPUTS.audienceQueueUrl, {
      value: this.population.audienceEvents.queue.queueUrl,
      description: 'SQS queue the DMP producers send audience events to (docs/population.md)',
    });
    new CfnOutput(this, STACK_OUTPUTS.populationTableName, {
      value: tables.get(POPULATION_TABLE)!.tableName,
      description: 'DynamoDB table of population state, pending users, counts and rejections',
    });

    new CfnOutput(this, STACK_OUTPUTS.apiUrl, {
      value: this.api.url,
      description: 'Base URL of the user-sync HTTP API',
    });
    new CfnOutput(this, STACK_OUTPUTS.mappingTableName, {
      value: this.mappingTable.tableName,
      description: 'DynamoDB table of the (DMP user, platform) -> partner user id mappings',
    });
    new CfnOutput(this, STACK_OUTPUTS.segmentTableName, {
      value: tables.get(SEGMENT_TABLE)!.tableName,
      description: 'DynamoDB table of the (platform, audience) -> partner segment ids',
    });
    new CfnOutput(this, STACK_OUTPUTS.fileStagingTableName, {
      value: tables.get(FILE_STAGING_TABLE)!.tableName,
      description: 'DynamoDB table of staged file memberships and published file records',
    });
    if (this.files) {
      new CfnOutput(this, STACK_OUTPUTS.fileOutboxBucketName, {
        value: this.files.outbox.bucketName,
        description: 'S3 outbox of file-mode platforms without a bucket of their own',
      });
    }
    const publicUrl = config.domain ? `https://${config.domain.name}` : this.api.url;
    new CfnOutput(this, STACK_OUTPUTS.syncPixelUrl, {
      value: `${publicUrl}/sync`,
      description: 'URL of the sync pixel to embed in pages',
    });
    if (this.domain && !config.domain?.hostedZone) {
      new CfnOutput(this, 'SyncDomainTarget', {
        value: this.domain.domainName.regionalDomainName,
        description: `Point ${config.domain?.name} here (CNAME) in your DNS`,
      });
    }
  }
}

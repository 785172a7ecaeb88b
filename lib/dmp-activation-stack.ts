import { CfnOutput, Stack, type StackProps, Tags } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type { Construct } from 'constructs';
import type { EnvironmentConfig } from '../src/config/schema.ts';
import {
  FUNCTIONS,
  type FunctionDefinition,
  type FunctionKey,
  MAPPING_TABLE,
  POPULATION_TABLE,
  ROUTES,
  SEGMENT_TABLE,
  STACK_OUTPUTS,
  stackName,
  TABLES,
  type TableDefinition,
} from '../src/infra/resources.ts';

type TableAccess = FunctionDefinition['tables'][number]['access'];

import { createDataTable } from './constructs/data-table.ts';
import { Monitoring } from './constructs/monitoring.ts';
import { Population } from './constructs/population.ts';
import { ServiceFunction } from './constructs/service-function.ts';
import { ServiceSecrets } from './constructs/service-secrets.ts';
import { UserSyncApi } from './constructs/user-sync-api.ts';

export interface DmpActivationStackProps extends StackProps {
  /** The validated configuration of the environment (config/environments/<name>.json). */
  readonly config: EnvironmentConfig;
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
  readonly monitoring: Monitoring;
  readonly population: Population;

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
    Tags.of(this).add('project', 'dmp-activation');
    Tags.of(this).add('environment', config.name);

    // Every table and function comes from the shared definitions in src/infra/resources.ts.
    const tables = new Map<TableDefinition, dynamodb.TableV2>(
      TABLES.map((definition) => [definition, createDataTable(this, definition, config)]),
    );
    this.mappingTable = tables.get(MAPPING_TABLE)!;
    this.secrets = new ServiceSecrets(this, 'Secrets', { config });

    const functions = {} as Record<FunctionKey, ServiceFunction>;
    for (const [key, definition] of Object.entries(FUNCTIONS) as [FunctionKey, FunctionDefinition][]) {
      const environment: Record<string, string> = {};
      for (const { table } of definition.tables) environment[table.envVar] = tables.get(table)!.tableName;
      const fn = new ServiceFunction(this, definition.id, { definition, config, environment });
      for (const { table, access } of definition.tables) {
        fn.role.addToPrincipalPolicy(
          new iam.PolicyStatement({
            actions: [...TABLE_ACTIONS[access]],
            resources: [tables.get(table)!.tableArn],
          }),
        );
      }
      if (definition.secrets === 'platforms+syncTokenKey') this.secrets.grantGetValue(fn.role);
      if (definition.secrets === 'platformApi') this.secrets.grantApiSecrets(fn.role);
      functions[key] = fn;
    }
    this.userSync = functions.userSync;

    this.api = new UserSyncApi(this, 'UserSyncApi', {
      config,
      routes: ROUTES,
      functions: Object.fromEntries(Object.entries(functions).map(([key, fn]) => [key, fn.function])),
    });

    this.monitoring = new Monitoring(this, 'Monitoring', {
      config,
      api: this.api.api,
      functions: Object.fromEntries(Object.values(functions).map((fn) => [fn.node.id, fn.function])),
    });

    this.population = new Population(this, 'Population', {
      config,
      functions: Object.fromEntries(
        Object.entries(functions).map(([key, fn]) => [key, fn.function]),
      ) as Record<FunctionKey, lambda.Function>,
      tables,
      monitoring: this.monitoring,
    });
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
    new CfnOutput(this, STACK_OUTPUTS.syncPixelUrl, {
      value: `${this.api.url}/sync`,
      description: 'URL of the sync pixel to embed in pages',
    });
  }
}

import { join } from 'node:path';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { CONFIG_ENV_VAR } from '../../src/config/load.ts';
import type { EnvironmentConfig } from '../../src/config/schema.ts';
import {
  BUNDLE_ALIASES,
  BUNDLE_MAIN_FIELDS,
  BUNDLE_TARGET,
  ESM_REQUIRE_BANNER,
} from '../../src/infra/bundling.ts';
import { commonEnvironment, type FunctionDefinition, runtimeOf } from '../../src/infra/resources.ts';
import { acknowledgeNag } from '../nag.ts';
import { REPO_ROOT } from '../repo.ts';
import { logRetention } from './log-retention.ts';

export interface ServiceFunctionProps {
  /** The shared definition (entry, memory, timeout) from src/infra/resources.ts. */
  readonly definition: FunctionDefinition;
  /** The validated environment configuration; inlined into the bundle. */
  readonly config: EnvironmentConfig;
  /** Extra environment variables (table names, ...). */
  readonly environment?: Record<string, string>;
  /** Reserved concurrency (the function behind the API: sized to its throttle). */
  readonly reservedConcurrency?: number | undefined;
}

/** CloudFormation metadata key under which each function carries the configuration it bundles. */
export const CONFIG_METADATA_KEY = 'DmpActivation::Config';

const XRAY_REASON =
  'xray:PutTraceSegments and xray:PutTelemetryRecords (added by Lambda active tracing) do not support ' +
  'resource-level permissions, so their Resource must be "*". Every other statement of this policy ' +
  'names its exact resource (log group, tables, secrets).';

/**
 * Every Lambda of this project: Node.js 24 on arm64, bundled locally by esbuild into one minified,
 * tree-shaken ESM file that includes the AWS SDK v3 clients (a bundled client cold-starts faster than
 * the runtime's), with the environment's validated configuration inlined at build time.
 * Logs go to an explicit log group (JSON, retention from config); the role carries no managed policy.
 */
export class ServiceFunction extends Construct {
  readonly definition: FunctionDefinition;
  readonly function: NodejsFunction;
  readonly role: iam.Role;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: ServiceFunctionProps) {
    super(scope, id);
    const { definition, config } = props;
    this.definition = definition;
    const runtime = runtimeOf(definition);
    const removalPolicy = config.retainData ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY;

    this.logGroup = new logs.LogGroup(this, 'LogGroup', {
      retention: logRetention(config),
      removalPolicy,
    });

    // No AWSLambdaBasicExecutionRole: the log group exists already, so the function only needs to
    // write streams into it.
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Execution role of ${definition.id} (${config.name})`,
    });
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [this.logGroup.logGroupArn],
      }),
    );

    // The validated config as a JS string literal: JSON inside a JSON string.
    const configLiteral = JSON.stringify(JSON.stringify(config));

    this.function = new NodejsFunction(this, 'Function', {
      entry: join(REPO_ROOT, definition.entry),
      handler: 'handler',
      projectRoot: REPO_ROOT,
      depsLockFilePath: join(REPO_ROOT, 'package-lock.json'),
      runtime: lambda.Runtime.NODEJS_24_X,
      architecture: lambda.Architecture.ARM_64,
      memorySize: definition.memorySizeMb,
      timeout: Duration.seconds(definition.timeoutSeconds),
      role: this.role,
      logGroup: this.logGroup,
      loggingFormat: lambda.LoggingFormat.JSON,
      // Lambda's own lines (start, end, report) are INFO: WARN keeps only its failures.
      systemLogLevelV2:
        runtime.systemLogLevel === 'WARN' ? lambda.SystemLogLevel.WARN : lambda.SystemLogLevel.INFO,
      tracing: runtime.tracing === 'active' ? lambda.Tracing.ACTIVE : lambda.Tracing.DISABLED,
      ...(props.reservedConcurrency ? { reservedConcurrentExecutions: props.reservedConcurrency } : {}),
      environment: {
        ...commonEnvironment(definition, config.name),
        ...props.environment,
      },
      bundling: {
        forceDockerBundling: false,
        format: OutputFormat.ESM,
        target: BUNDLE_TARGET,
        mainFields: [...BUNDLE_MAIN_FIELDS],
        banner: ESM_REQUIRE_BANNER,
        minify: true,
        sourceMap: false,
        bundleAwsSDK: true,
        esbuildArgs: {
          '--tree-shaking': 'true',
          // Module substitutions (the environment-only credential provider), from the repo root.
          '--alias': Object.entries(BUNDLE_ALIASES).map(([from, to]) => `${from}=${to}`),
        },
        externalModules: [...(definition.bundleExternal ?? [])],
        define: { [`process.env.${CONFIG_ENV_VAR}`]: configLiteral },
      },
    });
    // The bundle's hash alone would make `cdk diff` say "code changed" for any config edit; the
    // same config as resource metadata makes the diff show which setting changed, line by line.
    (this.function.node.defaultChild as lambda.CfnFunction).addMetadata(CONFIG_METADATA_KEY, config);
    // Active tracing adds the X-Ray statement to the role's default policy (without it: nothing to acknowledge).
    const defaultPolicy = this.role.node.tryFindChild('DefaultPolicy');
    if (defaultPolicy && runtime.tracing === 'active')
      acknowledgeNag(defaultPolicy, 'AwsSolutions-IAM5[Resource::*]', XRAY_REASON);
  }
}

import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { App, Duration, Stack, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { beforeAll, describe, expect, it } from 'vitest';
import { addEnvironmentStacks, addNagChecks, selectEnvironments } from '../../lib/app.ts';
import { logRetention } from '../../lib/constructs/log-retention.ts';
import { Monitoring } from '../../lib/constructs/monitoring.ts';
import { ACCESS_LOG_FIELDS, UserSyncApi } from '../../lib/constructs/user-sync-api.ts';
import { type DmpActivationStack, functionIsBuilt, TABLE_ACTIONS } from '../../lib/dmp-activation-stack.ts';
import { ENVIRONMENTS_DIR, REPO_ROOT } from '../../lib/repo.ts';
import { loadEnvironmentFile, parseEnvironment } from '../../src/config/load.ts';
import type { EnvironmentConfig } from '../../src/config/schema.ts';
import {
  platformApiSecretName,
  platformSecretName,
  privacyKeySecretName,
  syncTokenKeySecretName,
} from '../../src/config/secrets.ts';
import {
  deliveryConsumer,
  deliveryPlatforms,
  RELEASE_STREAM_FILTERS,
  ROUTE_CONSUMER,
} from '../../src/infra/population.ts';
import { visibilityTimeoutSeconds } from '../../src/infra/queues.ts';
import {
  FILE_METRICS,
  FILE_STAGING_TABLE,
  FUNCTIONS,
  type FunctionDefinition,
  functionServiceName,
  MAPPING_TABLE,
  POPULATION_TABLE,
  ROUTES,
  runtimeOf,
  SEGMENT_TABLE,
  STACK_OUTPUTS,
  TABLES,
  type TableDefinition,
} from '../../src/infra/resources.ts';
import { POPULATION_METRICS } from '../../src/observability/powertools.ts';
import { SYNC_METRIC_FILTERS } from '../../src/observability/sync-metric-filters.ts';
import { configErrorOf } from '../support/config.ts';
import { useTempDirs } from '../support/temp-dirs.ts';

interface Statement {
  Effect: string;
  Action: string | string[];
  Resource: unknown;
}
interface CfnResource {
  Type: string;
  Properties: Record<string, unknown>;
  DeletionPolicy?: string;
  UpdateReplacePolicy?: string;
}

const asList = <T>(value: T | T[]): T[] => (Array.isArray(value) ? value : [value]);

function resources(template: Template, type: string): Record<string, CfnResource> {
  return template.findResources(type) as Record<string, CfnResource>;
}

/** The logical id of the table built from a shared definition (construct id prefix). */
function tableLogicalId(template: Template, definition: TableDefinition): string {
  const ids = Object.keys(template.findResources('AWS::DynamoDB::GlobalTable')).filter((id) =>
    id.startsWith(definition.id),
  );
  expect(ids).toHaveLength(1);
  return ids[0]!;
}

function onlyLogicalId(template: Template, type: string): string {
  const ids = Object.keys(template.findResources(type));
  expect(ids).toHaveLength(1);
  return ids[0]!;
}

/** Every Allow statement of every policy in the template (inline role policies included). */
function allStatements(template: Template): Statement[] {
  const statements: Statement[] = [];
  for (const policy of Object.values(resources(template, 'AWS::IAM::Policy'))) {
    statements.push(...(policy.Properties['PolicyDocument'] as { Statement: Statement[] }).Statement);
  }
  for (const role of Object.values(resources(template, 'AWS::IAM::Role'))) {
    const inline = (role.Properties['Policies'] ?? []) as { PolicyDocument: { Statement: Statement[] } }[];
    for (const policy of inline) statements.push(...policy.PolicyDocument.Statement);
  }
  return statements;
}

/** The Allow statements of one function's role (its construct id prefixes the role's logical id). */
function statementsOf(template: Template, definition: FunctionDefinition): Statement[] {
  const statements: Statement[] = [];
  for (const policy of Object.values(resources(template, 'AWS::IAM::Policy'))) {
    const roles = (policy.Properties['Roles'] ?? []) as { Ref: string }[];
    if (!roles.some((role) => role.Ref.startsWith(`${definition.id}Role`))) continue;
    statements.push(...(policy.Properties['PolicyDocument'] as { Statement: Statement[] }).Statement);
  }
  return statements;
}

/** The functions a stack builds: the file exporter only where a platform delivers files. */
function builtFunctions(config: EnvironmentConfig): FunctionDefinition[] {
  return Object.values(FUNCTIONS).filter((definition) => functionIsBuilt(definition, config));
}

/** The Lambda function built from a shared definition. */
function functionOf(template: Template, definition: FunctionDefinition): CfnResource {
  const found = Object.entries(resources(template, 'AWS::Lambda::Function')).filter(([id]) =>
    new RegExp(`^${definition.id}[0-9A-F]{8}$`).test(id),
  );
  expect(found).toHaveLength(1);
  return found[0]![1];
}

/** Acknowledged cdk-nag findings, as `<construct path> <rule id>` -> reason. */
function acknowledgements(root: IConstruct): Map<string, string> {
  const found = new Map<string, string>();
  for (const construct of root.node.findAll()) {
    for (const entry of construct.node.metadata) {
      if (entry.type !== Validations.ACKNOWLEDGED_RULES_METADATA_KEY) continue;
      for (const [id, reason] of Object.entries(entry.data as Record<string, string>)) {
        // aws-cdk-lib records an unqualified id under the `Annotation::` namespace; cdk-nag reads it so.
        found.set(`${construct.node.path} ${id.replace(/^Annotation::/, '')}`, reason);
      }
    }
  }
  return found;
}

const tempDir = useTempDirs();

interface Built {
  readonly stack: DmpActivationStack;
  readonly config: EnvironmentConfig;
  readonly template: Template;
}

const built = new Map<string, Built>();
let assemblyDirectory = '';
let app: App;

// Bundling is the slow part: the real app (every deployable environment, cdk-nag attached) is
// synthesized once and every test reads the same templates.
beforeAll(() => {
  app = new App({ outdir: tempDir('dmp-cdk-') });
  const stacks = addEnvironmentStacks(app, selectEnvironments(ENVIRONMENTS_DIR));
  addNagChecks(app);
  // In-memory synthesis throws when the nag plugin reports an unacknowledged error.
  assemblyDirectory = app.synth().directory;
  for (const stack of stacks) {
    built.set(stack.config.name, { stack, config: stack.config, template: Template.fromStack(stack) });
  }
});

function env(name: 'dev' | 'prod'): Built {
  const found = built.get(name);
  if (!found) throw new Error(`no stack for ${name}`);
  return found;
}

describe('the CDK app', () => {
  it('synthesizes one stack per deployable environment, named DmpActivation-<env>', () => {
    expect([...built.keys()].sort()).toEqual(['dev', 'prod']);
    expect(env('dev').stack.stackName).toBe('DmpActivation-dev');
    expect(env('prod').stack.stackName).toBe('DmpActivation-prod');
  });

  it('passes cdk-nag (AwsSolutions): no unacknowledged error in the validation report', () => {
    const report = JSON.parse(readFileSync(join(assemblyDirectory, 'validation-report.json'), 'utf8')) as {
      pluginReports: { pluginName: string; violations: { ruleName: string; severity: string }[] }[];
    };
    const errors = report.pluginReports.flatMap((plugin) =>
      plugin.violations.filter((violation) => violation.severity === 'error').map((v) => v.ruleName),
    );
    expect(errors).toEqual([]);
  });

  it('has cdk-nag wired so that an unacknowledged finding fails synthesis', () => {
    const probe = new App({ outdir: tempDir('dmp-cdk-nag-') });
    const stack = new Stack(probe, 'Probe');
    new secretsmanager.Secret(stack, 'NotRotated');
    Validations.of(probe).addPlugins(new AwsSolutionsChecks(probe));
    expect(() => probe.synth()).toThrow(/AwsSolutions-SMG4/);
    const report = readFileSync(join(probe.outdir, 'validation-report.json'), 'utf8');
    expect(report).toContain('AwsSolutions-SMG4');
  });

  it('acknowledges exactly the expected findings, each on one resource, with a reason', () => {
    const found = acknowledgements(app);
    for (const name of ['dev', 'prod'] as const) {
      const { config } = env(name);
      const stackId = `DmpActivation-${name}`;
      const expected = [
        ...config.platforms
          .filter((platform) => platform.sync)
          .map((platform) => `${stackId}/Secrets/Platform${platform.id}/Resource AwsSolutions-SMG4`),
        ...config.platforms
          .filter((platform) => platform.connector)
          .map((platform) => `${stackId}/Secrets/Platform${platform.id}Api/Resource AwsSolutions-SMG4`),
        `${stackId}/Secrets/SyncTokenKey/Resource AwsSolutions-SMG4`,
        `${stackId}/Secrets/PrivacyKey/Resource AwsSolutions-SMG4`,
        // Active tracing's X-Ray statement: every function but those deployed without tracing.
        ...builtFunctions(config)
          .filter((definition) => runtimeOf(definition).tracing === 'active')
          .map(
            (definition) =>
              `${stackId}/${definition.id}/Role/DefaultPolicy/Resource AwsSolutions-IAM5[Resource::*]`,
          ),
        // Public routes only: the privacy route is IAM-authorized.
        ...ROUTES.filter((route) => !route.auth).map(
          (route) =>
            `${stackId}/UserSyncApi/HttpApi/${route.method}--${route.path.slice(1)}/Resource AwsSolutions-APIG4`,
        ),
        // The pending release's failure queue is itself a dead-letter destination.
        `${stackId}/Population/${MAPPING_TABLE.id}Stream/FailureQueue/Resource AwsSolutions-SQS3`,
      ];
      const actual = [...found.keys()].filter((key) => key.startsWith(`${stackId}/`));
      expect(actual.sort()).toEqual(expected.sort());
    }
    for (const reason of found.values()) expect(reason.length).toBeGreaterThan(60);
  });

  it('has each kind of acknowledgement explained in docs/infrastructure.md', () => {
    const doc = readFileSync(join(REPO_ROOT, 'docs', 'infrastructure.md'), 'utf8');
    const section = doc.slice(doc.indexOf('## cdk-nag'), doc.indexOf('\n## ', doc.indexOf('## cdk-nag') + 1));
    const bullets = section.split('\n').filter((line) => line.startsWith('- `AwsSolutions-'));
    // One bullet per distinct reason (a reason is shared by the resources of one kind).
    const reasons = new Set(acknowledgements(app).values());
    expect(bullets).toHaveLength(reasons.size);
    const rules = new Set([...acknowledgements(app).keys()].map((key) => key.split(' ')[1]!));
    for (const rule of rules) expect(section).toContain(`\`${rule}\``);
  });

  it('inlines the validated config of its own environment into each bundle', () => {
    for (const name of ['dev', 'prod'] as const) {
      const { template, config } = env(name);
      const fn = Object.values(resources(template, 'AWS::Lambda::Function'))[0]!;
      const key = (fn.Properties['Code'] as { S3Key: string }).S3Key;
      const bundle = readFileSync(
        join(assemblyDirectory, `asset.${key.replace(/\.zip$/, '')}`, 'index.mjs'),
        'utf8',
      );
      expect(bundle.startsWith('import { createRequire')).toBe(true);
      // esbuild's define replaced `process.env.DMP_CONFIG_JSON` by the config's JSON text; the
      // minifier picks whichever quote needs the fewest escapes.
      const json = JSON.stringify(config);
      const inlined =
        bundle.includes(`'${json}'`) ||
        bundle.includes(`\`${json}\``) ||
        bundle.includes(JSON.stringify(json));
      expect(inlined, 'the config literal is in the bundle').toBe(true);
      expect(bundle).not.toContain('process.env.DMP_CONFIG_JSON');
      // What the handler gets back parses to the same validated config.
      expect(parseEnvironment(JSON.parse(json), 'bundle')).toEqual(config);
    }
  });
});

describe.each(['dev', 'prod'] as const)('stack DmpActivation-%s', (name) => {
  it('runs every function on nodejs24.x / arm64 with the shared memory and timeout', () => {
    const { template, config } = env(name);
    const functions = Object.values(resources(template, 'AWS::Lambda::Function'));
    expect(functions).toHaveLength(builtFunctions(config).length);
    for (const definition of builtFunctions(config)) {
      const fn = functionOf(template, definition);
      expect(fn.Properties).toMatchObject({
        Runtime: 'nodejs24.x',
        Architectures: ['arm64'],
        Handler: 'index.handler',
        MemorySize: definition.memorySizeMb,
        Timeout: definition.timeoutSeconds,
        LoggingConfig: {
          LogFormat: 'JSON',
          SystemLogLevel: runtimeOf(definition).systemLogLevel,
        },
        Environment: {
          Variables: {
            DMP_ENVIRONMENT: config.name,
            POWERTOOLS_SERVICE_NAME: functionServiceName(definition),
            POWERTOOLS_METRICS_NAMESPACE: 'DmpActivation',
            ...Object.fromEntries(
              definition.tables.map(({ table }) => [table.envVar, { Ref: tableLogicalId(template, table) }]),
            ),
          },
        },
      });
      // Active tracing, or none at all (no PassThrough either): the definition's choice.
      if (runtimeOf(definition).tracing === 'active')
        expect(fn.Properties['TracingConfig']).toEqual({ Mode: 'Active' });
      else expect(fn.Properties['TracingConfig']).toBeUndefined();
      const variables = (fn.Properties['Environment'] as { Variables: Record<string, unknown> }).Variables;
      expect(Object.keys(variables)).not.toContain('DMP_CONFIG_JSON');
      expect(Object.keys(variables)).not.toContain('AWS_NODEJS_CONNECTION_REUSE_ENABLED');
    }
  });

  it('writes function and access logs to explicit log groups with the configured retention', () => {
    const { template, config } = env(name);
    const groups = resources(template, 'AWS::Logs::LogGroup');
    // One per function, and the HTTP API's access log.
    expect(Object.keys(groups)).toHaveLength(builtFunctions(config).length + 1);
    for (const group of Object.values(groups)) {
      expect(group.Properties['RetentionInDays']).toBe(config.logRetentionDays);
      expect(group.DeletionPolicy).toBe(config.retainData ? 'Retain' : 'Delete');
    }
    for (const fn of Object.values(resources(template, 'AWS::Lambda::Function'))) {
      const logGroupRef = (fn.Properties['LoggingConfig'] as { LogGroup: { Ref: string } }).LogGroup.Ref;
      expect(Object.keys(groups)).toContain(logGroupRef);
    }
  });

  it('builds the mapping table from MAPPING_TABLE: keys, TTL, PITR, SSE, on-demand', () => {
    const { template } = env(name);
    template.resourceCountIs('AWS::DynamoDB::GlobalTable', TABLES.length);
    template.resourceCountIs('AWS::DynamoDB::Table', 0);
    template.hasResourceProperties('AWS::DynamoDB::GlobalTable', {
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ],
      AttributeDefinitions: Match.arrayWith([
        { AttributeName: 'pk', AttributeType: 'S' },
        { AttributeName: 'sk', AttributeType: 'S' },
      ]),
      TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true },
      BillingMode: 'PAY_PER_REQUEST',
      SSESpecification: { SSEEnabled: true, SSEType: 'KMS' },
      Replicas: [
        Match.objectLike({ PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true } }),
      ],
    });
    expect(MAPPING_TABLE.timeToLiveAttribute).toBe('expiresAt');
  });

  it('builds the segment table from SEGMENT_TABLE: keys, no TTL (ids live as long as their audience), PITR, SSE', () => {
    const { template } = env(name);
    const segments = resources(template, 'AWS::DynamoDB::GlobalTable')[
      tableLogicalId(template, SEGMENT_TABLE)
    ]!;
    expect(segments.Properties).toMatchObject({
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ],
      BillingMode: 'PAY_PER_REQUEST',
      SSESpecification: { SSEEnabled: true, SSEType: 'KMS' },
      Replicas: [
        expect.objectContaining({ PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true } }),
      ],
    });
    expect(segments.Properties['TimeToLiveSpecification']).toBeUndefined();
  });

  it('serves the ROUTES through one HTTP API with payload format 2.0, the privacy route IAM-authorized', () => {
    const { template } = env(name);
    template.resourceCountIs('AWS::ApiGatewayV2::Api', 1);
    template.hasResourceProperties('AWS::ApiGatewayV2::Api', { ProtocolType: 'HTTP' });
    // One integration per function: user sync and privacy.
    const integrations = Object.values(resources(template, 'AWS::ApiGatewayV2::Integration'));
    expect(integrations).toHaveLength(2);
    for (const integration of integrations)
      expect(integration.Properties).toMatchObject({
        IntegrationType: 'AWS_PROXY',
        PayloadFormatVersion: '2.0',
      });
    const routes = Object.values(resources(template, 'AWS::ApiGatewayV2::Route'));
    const routeKeys = routes.map((route) => route.Properties['RouteKey']);
    expect(routeKeys.sort()).toEqual([
      'GET /optout',
      'GET /sync',
      'GET /uid',
      'POST /optout',
      'POST /privacy/forget',
    ]);
    for (const route of routes)
      expect(route.Properties['AuthorizationType'] ?? 'NONE', String(route.Properties['RouteKey'])).toBe(
        route.Properties['RouteKey'] === 'POST /privacy/forget' ? 'AWS_IAM' : 'NONE',
      );
    expect(ROUTES.map((route) => `${route.method} ${route.path}`).sort()).toEqual(routeKeys);
    // No CORS unless the config lists origins (none do today).
    expect(env(name).config.api.corsAllowOrigins).toEqual([]);
    template.hasResourceProperties('AWS::ApiGatewayV2::Api', { CorsConfiguration: Match.absent() });
  });

  it('logs access as JSON without query strings and throttles the default stage from config', () => {
    const { template, config } = env(name);
    const stages = Object.values(resources(template, 'AWS::ApiGatewayV2::Stage'));
    expect(stages).toHaveLength(1);
    const stage = stages[0]!.Properties;
    expect(stage).toMatchObject({
      StageName: '$default',
      AutoDeploy: true,
      DefaultRouteSettings: {
        ThrottlingRateLimit: config.api.throttlingRateLimit,
        ThrottlingBurstLimit: config.api.throttlingBurstLimit,
      },
    });
    const access = stage['AccessLogSettings'] as { Format: string; DestinationArn: unknown };
    expect(access.DestinationArn).toEqual({
      'Fn::GetAtt': [expect.stringMatching(/^UserSyncApiAccessLogs/), 'Arn'],
    });
    const format = JSON.parse(access.Format) as Record<string, string>;
    expect(Object.keys(format).sort()).toEqual(
      [
        'requestId',
        'requestTime',
        'httpMethod',
        'routeKey',
        'status',
        'protocol',
        'responseLength',
        'responseLatency',
        'domainName',
        'integrationErrorMessage',
      ].sort(),
    );
    expect(format).toEqual(ACCESS_LOG_FIELDS);
    // Nothing that identifies a browser: no path or query (user ids, tokens), no IP, no agent.
    expect(access.Format).not.toMatch(
      /querystring|\$context\.path|rawQueryString|sourceIp|userAgent|cookie|authorizer/i,
    );
  });

  it('gives each function least privilege: exact table actions per table, GetSecretValue on its secrets only', () => {
    const { template, config } = env(name);
    const secretResources = template.findResources('AWS::SecretsManager::Secret');
    const apiSecretNames = config.platforms.map((platform) =>
      platformApiSecretName(config.name, platform.id),
    );
    const privacyKeyId = Object.keys(secretResources).find(
      (id) => secretResources[id]!['Properties']['Name'] === privacyKeySecretName(config.name),
    );
    const secretRefs = (api: boolean) =>
      Object.keys(secretResources)
        .filter((id) => id !== privacyKeyId)
        .filter((id) => apiSecretNames.includes(secretResources[id]!['Properties']['Name']) === api)
        .sort()
        .map((id) => ({ Ref: id }));
    expect(secretRefs(true)).toHaveLength(config.platforms.filter((p) => p.connector).length);

    for (const statement of allStatements(template)) {
      expect(statement.Effect).toBe('Allow');
      for (const action of asList(statement.Action)) {
        expect(action).not.toBe('*');
        expect(action).not.toMatch(/^(dynamodb|secretsmanager|sqs):\*$/);
        expect(action).not.toBe('dynamodb:Scan');
      }
    }
    for (const definition of builtFunctions(config)) {
      const statements = statementsOf(template, definition);
      // Table statements (the stream's own statements, on the StreamArn, aside).
      const dynamo = statements.filter(
        (s) =>
          asList(s.Action).some((a) => a.startsWith('dynamodb:')) &&
          !JSON.stringify(s.Resource).includes('StreamArn'),
      );
      expect(dynamo, definition.id).toHaveLength(definition.tables.length);
      for (const { table, access } of definition.tables) {
        // The table, and each of its indexes by name (never `index/*`).
        const statement = dynamo.find(
          (s) =>
            JSON.stringify(asList(s.Resource)[0]) ===
            JSON.stringify({ 'Fn::GetAtt': [tableLogicalId(template, table), 'Arn'] }),
        );
        expect(asList(statement!.Action).sort(), `${definition.id} on ${table.id}`).toEqual(
          [...TABLE_ACTIONS[access]].sort(),
        );
        const indexes = asList(statement!.Resource)
          .slice(1)
          .map((resource) => JSON.stringify(resource));
        expect(indexes, `${definition.id} on ${table.id}'s indexes`).toHaveLength(
          table.globalIndexes?.length ?? 0,
        );
        for (const index of table.globalIndexes ?? []) {
          expect(indexes.some((resource) => resource.includes(`/index/${index.name}"`))).toBe(true);
        }
      }
      const onPrivacyKey = (s: (typeof statements)[number]) =>
        JSON.stringify(s.Resource) === JSON.stringify({ Ref: privacyKeyId });
      // The privacy key: exactly the functions that look up tombstones or digest a user, alone in its statement.
      const privacy = statements.filter(onPrivacyKey);
      expect(privacy, definition.id).toHaveLength(definition.privacyKey ? 1 : 0);
      for (const statement of privacy) expect(statement.Action).toBe('secretsmanager:GetSecretValue');
      const secrets = statements.filter(
        (s) => asList(s.Action).some((a) => a.startsWith('secretsmanager:')) && !onPrivacyKey(s),
      );
      if (
        definition.secrets === 'none' ||
        (definition.secrets === 'platformApi' && secretRefs(true).length === 0)
      ) {
        expect(secrets, definition.id).toEqual([]);
        continue;
      }
      expect(secrets, definition.id).toHaveLength(1);
      expect(asList(secrets[0]!.Action)).toEqual(['secretsmanager:GetSecretValue']);
      const granted = [...(asList(secrets[0]!.Resource) as { Ref: string }[])].sort((a, b) =>
        a.Ref.localeCompare(b.Ref),
      );
      // The public-facing user-sync function never reads partner API credentials; the population
      // functions read nothing else.
      expect(granted, definition.id).toEqual(secretRefs(definition.secrets === 'platformApi'));
    }

    // The only wildcard resource: X-Ray, whose actions have no resource-level permissions.
    const wildcard = allStatements(template).filter((s) => asList(s.Resource).includes('*'));
    expect([...new Set(wildcard.flatMap((s) => asList(s.Action)))].sort()).toEqual([
      'xray:PutTelemetryRecords',
      'xray:PutTraceSegments',
    ]);
    // Each function logs only into its own log group; no managed policies at all.
    const userSyncLogs = statementsOf(template, FUNCTIONS.userSync).filter((s) =>
      asList(s.Action).some((a) => a.startsWith('logs:')),
    );
    expect(userSyncLogs).toHaveLength(1);
    expect(userSyncLogs[0]!.Resource).toEqual({
      'Fn::GetAtt': [expect.stringMatching(/^UserSyncFunctionLogGroup/), 'Arn'],
    });
    for (const role of Object.values(resources(template, 'AWS::IAM::Role'))) {
      expect(role.Properties['ManagedPolicyArns']).toBeUndefined();
    }
    // The user-sync function touches no queue.
    expect(
      statementsOf(template, FUNCTIONS.userSync)
        .flatMap((s) => asList(s.Action))
        .filter((a) => a.startsWith('sqs:')),
    ).toEqual([]);
  });

  it('creates a generated secret per syncing platform, an API-credentials secret per connected one, the sync-token key and the privacy key', () => {
    const { template, config } = env(name);
    const syncing = config.platforms.filter((platform) => platform.sync);
    const connected = config.platforms.filter((platform) => platform.connector);
    template.resourceCountIs('AWS::SecretsManager::Secret', syncing.length + connected.length + 2);
    template.hasResourceProperties('AWS::SecretsManager::Secret', {
      Name: privacyKeySecretName(config.name),
      GenerateSecretString: {
        SecretStringTemplate: '{}',
        GenerateStringKey: 'key',
        ExcludePunctuation: true,
        PasswordLength: 64,
      },
    });
    for (const platform of connected) {
      template.hasResourceProperties('AWS::SecretsManager::Secret', {
        Name: platformApiSecretName(config.name, platform.id),
        SecretString: '{}',
      });
    }
    for (const platform of syncing) {
      template.hasResourceProperties('AWS::SecretsManager::Secret', {
        Name: platformSecretName(config.name, platform.id),
        GenerateSecretString: {
          SecretStringTemplate: '{"signingKeys":{}}',
          GenerateStringKey: 'syncToken',
          ExcludePunctuation: true,
          PasswordLength: 32,
        },
      });
    }
    template.hasResourceProperties('AWS::SecretsManager::Secret', {
      Name: syncTokenKeySecretName(config.name),
      GenerateSecretString: {
        SecretStringTemplate: '{"kid":"k1","previous":{}}',
        GenerateStringKey: 'key',
        ExcludePunctuation: true,
        PasswordLength: 48,
      },
    });
    for (const secret of Object.values(resources(template, 'AWS::SecretsManager::Secret'))) {
      expect(secret.DeletionPolicy).toBe(config.retainData ? 'Retain' : 'Delete');
    }
  });

  it('alarms on function errors and throttles and on API 5xx, and has a dashboard', () => {
    const { template } = env(name);
    const { config } = env(name);
    const platforms = deliveryPlatforms(config.platforms).length;
    // Errors and throttles per function, API 5xx; DLQ depth and oldest message per queue; partner
    // error rate and throttling per delivery platform; the mapping stream's failures and lag.
    template.resourceCountIs(
      'AWS::CloudWatch::Alarm',
      2 * builtFunctions(config).length + 1 + 2 * (1 + platforms) + 2 * platforms + 2,
    );
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/Lambda',
      MetricName: 'Errors',
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/Lambda',
      MetricName: 'Throttles',
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/ApiGateway',
      MetricName: '5xx',
    });
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    const dashboard = JSON.stringify(Object.values(resources(template, 'AWS::CloudWatch::Dashboard'))[0]);
    // Only this environment's records, should several share an account and region.
    expect(dashboard).toMatch(new RegExp(`environment=\\\\*"${env(name).config.name}\\\\*"`));
    for (const metric of ['SyncRedirected', 'MappingStored', 'MappingUnchanged', 'SyncRejected']) {
      expect(dashboard).toContain(metric);
    }
    // Population and files: the metric names the deliver step and the exporter emit.
    for (const metric of [
      POPULATION_METRICS.delivered,
      POPULATION_METRICS.calls,
      POPULATION_METRICS.errors,
      POPULATION_METRICS.throttled,
      FILE_METRICS.published,
      'ApproximateNumberOfMessagesVisible',
      'ApproximateAgeOfOldestMessage',
    ]) {
      expect(dashboard, metric).toContain(metric);
    }
    // Every population queue's DLQ is graphed, the audience events' and each platform's.
    const deadLetterQueues = Object.keys(resources(template, 'AWS::SQS::Queue')).filter(
      (logicalId) => logicalId.startsWith('Population') && logicalId.includes('DeadLetterQueue'),
    );
    expect(deadLetterQueues.length).toBeGreaterThanOrEqual(1);
    for (const logicalId of deadLetterQueues) expect(dashboard, logicalId).toContain(`"${logicalId}"`);
  });

  it('counts the sync funnel with metric filters on the user-sync log line, as SYNC_METRIC_FILTERS says', () => {
    const { template } = env(name);
    const userSync = functionOf(template, FUNCTIONS.userSync);
    const logGroup = (userSync.Properties['LoggingConfig'] as { LogGroup: unknown }).LogGroup;
    const filters = Object.values(resources(template, 'AWS::Logs::MetricFilter'));
    expect(filters).toHaveLength(SYNC_METRIC_FILTERS.length);
    for (const filter of SYNC_METRIC_FILTERS) {
      const found = filters.find(
        (resource) =>
          (resource.Properties['MetricTransformations'] as { MetricName: string }[])[0]!.MetricName ===
          filter.metricName,
      );
      expect(found, filter.metricName).toBeDefined();
      expect(found!.Properties['LogGroupName']).toEqual(logGroup);
      expect(found!.Properties['MetricTransformations']).toEqual([
        {
          MetricNamespace: 'DmpActivation',
          MetricName: filter.metricName,
          MetricValue: '1',
          Unit: 'Count',
          Dimensions: Object.entries(filter.dimensions).map(([Key, Value]) => ({ Key, Value })),
        },
      ]);
      for (const [field, value] of Object.entries(filter.match))
        expect(found!.Properties['FilterPattern']).toContain(`(${field} = "${value}")`);
    }
  });

  const bundleOf = (template: Template, definition: FunctionDefinition) => {
    const key = (functionOf(template, definition).Properties['Code'] as { S3Key: string }).S3Key;
    return readFileSync(join(assemblyDirectory, `asset.${key.replace(/\.zip$/, '')}`, 'index.mjs'), 'utf8');
  };

  it('bundles every function with the environment-only credential provider (no STS, SSO or metadata clients)', () => {
    const { template, config } = env(name);
    const built = builtFunctions(config);
    expect(built).toContain(FUNCTIONS.userSync);
    for (const definition of built) {
      const bundled = bundleOf(template, definition);
      expect(bundled, definition.id).toContain('AWS_SECRET_ACCESS_KEY');
      for (const marker of [
        'AssumeRoleWithWebIdentity',
        'AWS_CONTAINER_CREDENTIALS_FULL_URI',
        'sso_start_url',
      ])
        expect(bundled, `${definition.id}: ${marker}`).not.toContain(marker);
    }
  });

  it("bundles zod's mini build with its English messages, not the full build (src/config/zod-mini.ts)", () => {
    const { template, config } = env(name);
    for (const definition of builtFunctions(config)) {
      const bundled = bundleOf(template, definition);
      // The full build's schema classes are named "ZodObject", "ZodString"...; the mini build's "ZodMini...".
      expect(bundled, definition.id).not.toMatch(/"Zod(Object|String|Number)"/);
      expect(bundled, definition.id).toContain('"ZodMiniObject"');
      // Without the English locale every issue would read "Invalid input".
      expect(bundled, definition.id).toContain('Too small: expected');
    }
  });

  it('exports ApiUrl, MappingTableName, SegmentTableName, SyncPixelUrl and FileStagingTableName', () => {
    const { template } = env(name);
    const tableId = tableLogicalId(template, MAPPING_TABLE);
    const apiId = onlyLogicalId(template, 'AWS::ApiGatewayV2::Api');
    expect(STACK_OUTPUTS).toEqual({
      apiUrl: 'ApiUrl',
      mappingTableName: 'MappingTableName',
      segmentTableName: 'SegmentTableName',
      syncPixelUrl: 'SyncPixelUrl',
      audienceQueueUrl: 'AudienceEventsQueueUrl',
      populationTableName: 'PopulationTableName',
      fileStagingTableName: 'FileStagingTableName',
      fileOutboxBucketName: 'FileOutboxBucketName',
    });
    template.hasOutput('PopulationTableName', { Value: { Ref: tableLogicalId(template, POPULATION_TABLE) } });
    template.hasOutput('MappingTableName', { Value: { Ref: tableId } });
    template.hasOutput('FileStagingTableName', {
      Value: { Ref: tableLogicalId(template, FILE_STAGING_TABLE) },
    });
    // No file-mode platform in this environment: no outbox.
    expect(Object.keys(template.toJSON()['Outputs'])).not.toContain('FileOutboxBucketName');
    template.hasOutput('SegmentTableName', { Value: { Ref: tableLogicalId(template, SEGMENT_TABLE) } });
    template.hasOutput('ApiUrl', { Value: { 'Fn::GetAtt': [apiId, 'ApiEndpoint'] } });
    const domain = env(name).config.domain;
    template.hasOutput('SyncPixelUrl', {
      Value: domain
        ? `https://${domain.name}/sync`
        : { 'Fn::Join': ['', [{ 'Fn::GetAtt': [apiId, 'ApiEndpoint'] }, '/sync']] },
    });
  });

  it('tags every resource with project and environment', () => {
    const { template, config } = env(name);
    template.hasResourceProperties('AWS::Lambda::Function', {
      Tags: Match.arrayWith([
        { Key: 'environment', Value: config.name },
        { Key: 'project', Value: 'dmp-activation' },
      ]),
    });
  });
});

describe.each(['dev', 'prod'] as const)('population in DmpActivation-%s', (name) => {
  interface Queue {
    readonly id: string;
    readonly properties: Record<string, unknown>;
  }
  const queues = (template: Template): Queue[] =>
    Object.entries(resources(template, 'AWS::SQS::Queue')).map(([id, queue]) => ({
      id,
      properties: queue.Properties,
    }));
  const byName = (template: Template, queueName: string) => {
    const found = queues(template).find((queue) => queue.properties['QueueName'] === queueName);
    expect(found, queueName).toBeDefined();
    return found!;
  };

  it('takes audience events on an encrypted queue kept 4 days (a 72 h outage loses nothing), with a DLQ', () => {
    const { template, config } = env(name);
    const queue = byName(template, `dmp-${config.name}-audience-events`);
    expect(queue.properties).toMatchObject({
      SqsManagedSseEnabled: true,
      MessageRetentionPeriod: 4 * 86_400,
      VisibilityTimeout: visibilityTimeoutSeconds(ROUTE_CONSUMER),
      RedrivePolicy: { maxReceiveCount: ROUTE_CONSUMER.maxReceiveCount },
    });
    expect(queue.properties['MessageRetentionPeriod']).toBeGreaterThanOrEqual(72 * 3600);
    byName(template, `dmp-${config.name}-audience-events-dlq`);
    template.hasResourceProperties('AWS::SQS::QueuePolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
        ]),
      },
    });
  });

  it('has one delivery queue, DLQ and event source per API platform, from its population settings', () => {
    const { template, config } = env(name);
    const platforms = deliveryPlatforms(config.platforms);
    const mappings = Object.values(resources(template, 'AWS::Lambda::EventSourceMapping'));
    for (const platform of platforms) {
      const settings = deliveryConsumer(platform.connector.population);
      const queue = byName(template, `dmp-${config.name}-delivery-${platform.id}`);
      expect(queue.properties).toMatchObject({
        SqsManagedSseEnabled: true,
        VisibilityTimeout: visibilityTimeoutSeconds(settings),
        RedrivePolicy: { maxReceiveCount: settings.maxReceiveCount },
      });
      expect(queue.properties['VisibilityTimeout']).toBeGreaterThanOrEqual(
        6 * FUNCTIONS.deliver.timeoutSeconds,
      );
      const mapping = mappings.find(
        (m) =>
          JSON.stringify(m.Properties['EventSourceArn']) ===
          JSON.stringify({ 'Fn::GetAtt': [queue.id, 'Arn'] }),
      );
      expect(mapping?.Properties).toMatchObject({
        BatchSize: settings.batchSize,
        MaximumBatchingWindowInSeconds: settings.maxBatchingWindowSeconds,
        ScalingConfig: { MaximumConcurrency: platform.connector.population.concurrency },
        FunctionResponseTypes: ['ReportBatchItemFailures'],
      });
    }
    // The mapping table's stream feeds the pending release: only a new or changed partner id and
    // an opt-out's request reach it (Lambda event filtering, the patterns the local stack applies).
    const stream = mappings.find((m) => m.Properties['StartingPosition'] !== undefined);
    expect(stream?.Properties).toMatchObject({
      EventSourceArn: { 'Fn::GetAtt': [tableLogicalId(template, MAPPING_TABLE), 'StreamArn'] },
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
    const criteria = stream?.Properties['FilterCriteria'] as { Filters: { Pattern: string }[] } | undefined;
    const patterns = (criteria?.Filters ?? []).map((filter) => JSON.parse(filter.Pattern));
    expect(patterns).toEqual(RELEASE_STREAM_FILTERS);
  });

  it('lets only the route and release functions send to delivery queues', () => {
    const { template, config } = env(name);
    if (deliveryPlatforms(config.platforms).length === 0) return;
    const sends = (definition: FunctionDefinition) =>
      statementsOf(template, definition).filter((s) => asList(s.Action).includes('sqs:SendMessage'));
    expect(sends(FUNCTIONS.route).length).toBeGreaterThan(0);
    expect(sends(FUNCTIONS.releasePending).length).toBeGreaterThan(0);
    expect(sends(FUNCTIONS.deliver)).toEqual([]);
    expect(sends(FUNCTIONS.userSync)).toEqual([]);
  });

  it('alarms per platform on partner errors and throttling', () => {
    const { template, config } = env(name);
    for (const platform of deliveryPlatforms(config.platforms)) {
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        AlarmDescription: Match.stringLikeRegexp(`platform ${platform.id} answers more than 10%`),
      });
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        AlarmDescription: Match.stringLikeRegexp(`platform ${platform.id} throttles`),
        MetricName: 'PartnerThrottled',
      });
    }
  });
});

describe('data retention per environment', () => {
  it('prod retains the table behind deletion protection', () => {
    const { template } = env('prod');
    expect(env('prod').config.retainData).toBe(true);
    template.hasResource('AWS::DynamoDB::GlobalTable', {
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
      Properties: Match.objectLike({
        Replicas: [Match.objectLike({ DeletionProtectionEnabled: true })],
      }),
    });
  });

  it('dev destroys the table with the stack', () => {
    const { template } = env('dev');
    expect(env('dev').config.retainData).toBe(false);
    template.hasResource('AWS::DynamoDB::GlobalTable', {
      DeletionPolicy: 'Delete',
      Properties: Match.objectLike({
        Replicas: [Match.objectLike({ DeletionProtectionEnabled: false })],
      }),
    });
  });
});

describe('UserSyncApi CORS', () => {
  it('allows the configured origins with credentials when the config lists any', () => {
    const stack = new Stack(new App({ outdir: tempDir('dmp-cdk-cors-') }), 'Cors');
    const base = loadEnvironmentFile(join(ENVIRONMENTS_DIR, 'dev.json'));
    const config: EnvironmentConfig = {
      ...base,
      api: { ...base.api, corsAllowOrigins: ['https://www.example.com'] },
    };
    const handler = new lambda.Function(stack, 'Fn', {
      runtime: lambda.Runtime.NODEJS_24_X,
      handler: 'index.handler',
      code: lambda.Code.fromInline('exports.handler = async () => ({ statusCode: 200 })'),
      timeout: Duration.seconds(3),
    });
    new UserSyncApi(stack, 'Api', {
      config,
      routes: ROUTES.filter((route) => route.function === 'userSync'),
      functions: { userSync: handler },
    });
    Template.fromStack(stack).hasResourceProperties('AWS::ApiGatewayV2::Api', {
      CorsConfiguration: {
        AllowOrigins: ['https://www.example.com'],
        AllowCredentials: true,
        AllowMethods: Match.arrayWith(['GET', 'POST', 'OPTIONS']),
      },
    });
  });
});

describe('Monitoring alarm notifications', () => {
  function alarmsWith(monitoring: EnvironmentConfig['monitoring']) {
    const stack = new Stack(new App({ outdir: tempDir('dmp-cdk-alarms-') }), 'Alarms');
    const base = loadEnvironmentFile(join(ENVIRONMENTS_DIR, 'dev.json'));
    const config: EnvironmentConfig = { ...base, monitoring };
    const handler = new lambda.Function(stack, 'Fn', {
      runtime: lambda.Runtime.NODEJS_24_X,
      handler: 'index.handler',
      code: lambda.Code.fromInline('exports.handler = async () => ({ statusCode: 200 })'),
      timeout: Duration.seconds(3),
    });
    const api = new UserSyncApi(stack, 'Api', {
      config,
      routes: ROUTES.filter((route) => route.function === 'userSync'),
      functions: { userSync: handler },
    });
    new Monitoring(stack, 'Monitoring', { config, api: api.api, functions: { userSync: handler } });
    return Object.values(Template.fromStack(stack).findResources('AWS::CloudWatch::Alarm'));
  }

  it('notifies the configured SNS topic on alarm and on recovery', () => {
    const topic = 'arn:aws:sns:eu-west-1:123456789012:dmp-oncall';
    const alarms = alarmsWith({ alarmTopicArn: topic });
    expect(alarms).toHaveLength(3);
    for (const alarm of alarms) {
      expect(alarm['Properties']['AlarmActions']).toEqual([topic]);
      expect(alarm['Properties']['OKActions']).toEqual([topic]);
    }
  });

  it('has no action without a topic', () => {
    for (const alarm of alarmsWith({})) expect(alarm['Properties']['AlarmActions']).toBeUndefined();
  });
});

describe('environment selection and config errors', () => {
  const devDocument = JSON.parse(readFileSync(join(ENVIRONMENTS_DIR, 'dev.json'), 'utf8')) as Record<
    string,
    unknown
  > & { platforms: Record<string, unknown>[] };

  function configDir(files: Record<string, unknown>): string {
    const dir = tempDir('dmp-envs-');
    for (const [file, document] of Object.entries(files)) {
      writeFileSync(join(dir, file), typeof document === 'string' ? document : JSON.stringify(document));
    }
    return dir;
  }

  it('skips environments with deploy: false (local) and keeps the others', () => {
    expect(selectEnvironments(ENVIRONMENTS_DIR).map((config) => config.name)).toEqual(['dev', 'prod']);
    expect(selectEnvironments(ENVIRONMENTS_DIR, 'prod').map((config) => config.name)).toEqual(['prod']);
  });

  it('refuses a platform id that is not a number, naming the field', () => {
    const bad = { ...devDocument, platforms: [{ ...devDocument.platforms[0], id: 'x' }] };
    const error = configErrorOf(() => selectEnvironments(configDir({ 'dev.json': bad })));
    expect(error.message).toContain('dev.json');
    expect(error.message).toContain('platforms.0.id');
  });

  it('refuses an unknown key (a typo), naming it', () => {
    const error = configErrorOf(() =>
      selectEnvironments(configDir({ 'dev.json': { ...devDocument, retainDta: true } })),
    );
    expect(error.message).toContain('retainDta');
  });

  it('refuses a file whose name differs from its environment name', () => {
    const error = configErrorOf(() => selectEnvironments(configDir({ 'staging.json': devDocument })));
    expect(error.message).toContain('must match the file name "staging"');
  });

  it('refuses -c env=<name> for an unknown or non-deployed environment', () => {
    expect(configErrorOf(() => selectEnvironments(ENVIRONMENTS_DIR, 'nope')).message).toContain(
      'cannot read file',
    );
    expect(configErrorOf(() => selectEnvironments(ENVIRONMENTS_DIR, 'local')).message).toContain(
      'deploy: is false',
    );
    expect(configErrorOf(() => selectEnvironments(ENVIRONMENTS_DIR, '../dev')).message).toContain(
      'not an environment name',
    );
  });

  it('refuses a log retention CloudWatch does not offer', () => {
    const config = parseEnvironment({ ...devDocument, logRetentionDays: 45 }, 'test');
    expect(configErrorOf(() => logRetention(config)).message).toContain('logRetentionDays: 45');
  });

  it('fails `cdk synth` (bin/app.ts) with the ConfigError message and exit code 1', () => {
    const result = spawnSync(process.execPath, ['--import', 'tsx', 'bin/app.ts'], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      env: {
        ...process.env,
        CDK_CONTEXT_JSON: JSON.stringify({ env: 'nope' }),
        CDK_OUTDIR: tempDir('dmp-cdk-bin-'),
      },
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('nope.json: invalid configuration');
    expect(result.stderr).not.toMatch(/^\s+at /m);
  });
});

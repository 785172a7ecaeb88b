import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addEnvironmentStacks, addNagChecks, selectEnvironments } from '../../lib/app.ts';
import { createDataTable } from '../../lib/constructs/data-table.ts';
import { FunctionSchedule } from '../../lib/constructs/function-schedule.ts';
import { QueueConsumer } from '../../lib/constructs/queue-consumer.ts';
import { CONFIG_METADATA_KEY } from '../../lib/constructs/service-function.ts';
import { TableStreamConsumer } from '../../lib/constructs/table-stream-consumer.ts';
import { deploymentProblems, forDeployment, SYNC_REQUEST_SECONDS } from '../../lib/deployment.ts';
import { DIAGRAM_ENVIRONMENT, diagramIn, resourceDiagram } from '../../lib/diagram.ts';
import { ENVIRONMENTS_DIR, REPO_ROOT } from '../../lib/repo.ts';
import { RUNBOOK } from '../../lib/runbook.ts';
import { loadEnvironmentFile, parseEnvironment } from '../../src/config/load.ts';
import type { EnvironmentConfig } from '../../src/config/schema.ts';
import { MAPPING_TABLE } from '../../src/infra/resources.ts';
import { cdkTestStack, cleanUpCdkTestStacks } from '../support/cdk.ts';
import { configErrorOf } from '../support/config.ts';
import { useTempDirs } from '../support/temp-dirs.ts';

/**
 * What a deployed environment needs (account, region, alarm topic), the custom domain, tags on
 * every resource, reserved concurrency, `debug=1` off by default, and a `cdk diff` that shows
 * configuration changes. Each synthesis here runs cdk-nag: an unacknowledged finding throws.
 */

interface CfnResource {
  Type: string;
  Properties?: Record<string, unknown>;
  Metadata?: Record<string, unknown>;
}

const tempDir = useTempDirs();

const devDocument = JSON.parse(readFileSync(join(ENVIRONMENTS_DIR, 'dev.json'), 'utf8')) as Record<
  string,
  unknown
>;

/** A config directory holding one environment file `<name>.json`. */
function environmentDir(document: Record<string, unknown>): string {
  const dir = tempDir('dmp-deploy-envs-');
  writeFileSync(join(dir, `${String(document['name'])}.json`), JSON.stringify(document));
  return dir;
}

function synthesize(configs: readonly EnvironmentConfig[]): Map<string, Record<string, CfnResource>> {
  const app = new App({ outdir: tempDir('dmp-deploy-cdk-') });
  const stacks = addEnvironmentStacks(app, configs);
  addNagChecks(app);
  app.synth();
  return new Map(
    stacks.map((stack) => [
      stack.config.name,
      Template.fromStack(stack).toJSON()['Resources'] as Record<string, CfnResource>,
    ]),
  );
}

function ofType(resources: Record<string, CfnResource>, type: string): CfnResource[] {
  return Object.values(resources).filter((resource) => resource.Type === type);
}

/** The shipped dev file, changed, validated as deployed. */
function devWith(changes: Record<string, unknown>): EnvironmentConfig {
  return forDeployment(parseEnvironment({ ...devDocument, ...changes }, 'dev.json'));
}

const ZONE = { id: 'Z0123456789EXAMPLE', name: 'publisher.example' };
const CERTIFICATE = 'arn:aws:acm:eu-west-1:111122223333:certificate/0a1b2c3d-4e5f-6789-abcd-ef0123456789';

let shipped: Map<string, Record<string, CfnResource>>;
let shippedConfigs: EnvironmentConfig[];

beforeAll(() => {
  shippedConfigs = selectEnvironments(ENVIRONMENTS_DIR);
  shipped = synthesize(shippedConfigs);
});

describe('a deployable environment names its account, region and alarm topic', () => {
  it('ships dev and prod complete, with AWS documentation account ids marked as examples', () => {
    for (const config of shippedConfigs) {
      expect(deploymentProblems(config)).toEqual([]);
      expect(['111122223333', '444455556666']).toContain(config.aws.account);
      expect(config.$comment).toMatch(/example/i);
    }
  });

  it.each([
    ['aws.account', { aws: { region: 'eu-west-1' } }],
    ['aws.region', { aws: { account: '111122223333' } }],
    ['monitoring.alarmTopicArn', { monitoring: {} }],
  ])('refuses a file without %s, naming the file and the field', (field, changes) => {
    const dir = environmentDir({ ...devDocument, ...changes });
    for (const only of [undefined, 'dev']) {
      const error = configErrorOf(() => selectEnvironments(dir, only));
      expect(error.source).toBe(join(dir, 'dev.json'));
      expect(error.message).toContain(`dev.json: invalid configuration`);
      expect(error.problems.some((problem) => problem.startsWith(`${field}: `))).toBe(true);
    }
  });

  it('lists every missing field at once', () => {
    const { aws: _aws, monitoring: _monitoring, ...bare } = devDocument;
    const error = configErrorOf(() => selectEnvironments(environmentDir(bare)));
    expect(error.problems.map((problem) => problem.split(':')[0])).toEqual([
      'aws.account',
      'aws.region',
      'monitoring.alarmTopicArn',
    ]);
  });

  it('refuses an alarm topic of another region (alarms notify topics of their own region)', () => {
    const problems = deploymentProblems(
      devWith({ monitoring: { alarmTopicArn: 'arn:aws:sns:us-east-1:111122223333:alarms' } }),
    );
    expect(problems).toEqual([expect.stringMatching(/^monitoring\.alarmTopicArn: .*us-east-1.*eu-west-1/)]);
  });

  it('fails `cdk synth` (bin/app.ts) with the file and field and exit code 1', () => {
    const result = spawnSync(process.execPath, ['--import', 'tsx', 'bin/app.ts'], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      env: {
        ...process.env,
        DMP_ENVIRONMENTS_DIR: environmentDir({ ...devDocument, aws: {} }),
        CDK_OUTDIR: tempDir('dmp-deploy-bin-'),
      },
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/dev\.json: invalid configuration\n {2}- aws\.account: /);
    expect(result.stderr).toContain('- aws.region: ');
    expect(result.stderr).not.toMatch(/^\s+at /m);
  });

  it('pins each stack to the account and region of its file', () => {
    const app = new App({ outdir: tempDir('dmp-deploy-env-') });
    const [stack] = addEnvironmentStacks(app, [devWith({})]);
    expect(stack!.account).toBe('111122223333');
    expect(stack!.region).toBe('eu-west-1');
  });
});

describe('custom domain of the sync API', () => {
  it('with a hosted zone: a DNS-validated certificate, a TLS 1.2 domain mapped to the stage, an alias record', () => {
    const prod = shippedConfigs.find((config) => config.name === 'prod')!;
    expect(prod.domain?.hostedZone).toBeDefined();
    const resources = shipped.get('prod')!;
    const [certificate] = ofType(resources, 'AWS::CertificateManager::Certificate');
    expect(certificate!.Properties).toMatchObject({
      DomainName: prod.domain!.name,
      ValidationMethod: 'DNS',
      DomainValidationOptions: [{ DomainName: prod.domain!.name, HostedZoneId: prod.domain!.hostedZone!.id }],
    });
    const [domain] = ofType(resources, 'AWS::ApiGatewayV2::DomainName');
    expect(domain!.Properties).toMatchObject({
      DomainName: prod.domain!.name,
      DomainNameConfigurations: [
        expect.objectContaining({ EndpointType: 'REGIONAL', SecurityPolicy: 'TLS_1_2' }),
      ],
    });
    const [mapping] = ofType(resources, 'AWS::ApiGatewayV2::ApiMapping');
    const stageId = Object.entries(resources).find(([, r]) => r.Type === 'AWS::ApiGatewayV2::Stage')![0];
    expect(mapping!.Properties!['Stage']).toBe('$default');
    expect((mapping as { DependsOn?: string[] }).DependsOn).toContain(stageId);
    const [record] = ofType(resources, 'AWS::Route53::RecordSet');
    expect(record!.Properties).toMatchObject({
      Name: `${prod.domain!.name}.`,
      Type: 'A',
      HostedZoneId: prod.domain!.hostedZone!.id,
    });
  });

  it('with a certificate ARN: no certificate or record created, a CNAME target output instead', () => {
    const config = devWith({ domain: { name: 'sync.publisher.example', certificateArn: CERTIFICATE } });
    const app = new App({ outdir: tempDir('dmp-deploy-cert-') });
    const [stack] = addEnvironmentStacks(app, [config]);
    addNagChecks(app);
    app.synth();
    const template = Template.fromStack(stack!);
    template.resourceCountIs('AWS::CertificateManager::Certificate', 0);
    template.resourceCountIs('AWS::Route53::RecordSet', 0);
    template.hasResourceProperties('AWS::ApiGatewayV2::DomainName', {
      DomainNameConfigurations: [
        { CertificateArn: CERTIFICATE, EndpointType: 'REGIONAL', SecurityPolicy: 'TLS_1_2' },
      ],
    });
    template.hasOutput('SyncDomainTarget', {});
    template.hasOutput('SyncPixelUrl', { Value: 'https://sync.publisher.example/sync' });
  });

  it('has no custom domain, certificate or record without one (dev)', () => {
    const resources = shipped.get('dev')!;
    expect(ofType(resources, 'AWS::ApiGatewayV2::DomainName')).toEqual([]);
    expect(ofType(resources, 'AWS::CertificateManager::Certificate')).toEqual([]);
  });

  it.each([
    [{ name: 'sync.publisher.example' }, /^domain: give certificateArn .* or hostedZone/],
    [
      { name: 'sync.publisher.example', certificateArn: CERTIFICATE.replace('eu-west-1', 'us-east-1') },
      /^domain\.certificateArn: .*us-east-1.*eu-west-1/,
    ],
    [
      { name: 'sync.publisher.example', hostedZone: { id: 'Z0123', name: 'other.example' } },
      /^domain\.hostedZone\.name: other\.example does not contain sync\.publisher\.example/,
    ],
  ])('refuses an inconsistent domain %j', (domain, expected) => {
    expect(deploymentProblems(devWith({ domain }))).toEqual([expect.stringMatching(expected)]);
  });

  it('refuses a cookie domain or public URL that is not the sync host', () => {
    const domain = { name: 'sync.publisher.example', hostedZone: ZONE };
    expect(deploymentProblems(devWith({ domain, userSync: { cookieDomain: 'elsewhere.example' } }))).toEqual([
      expect.stringMatching(/^userSync\.cookieDomain: .*browsers would refuse the cookie/),
    ]);
    expect(
      deploymentProblems(devWith({ domain, userSync: { publicBaseUrl: 'https://dmp.example.com' } })),
    ).toEqual([expect.stringMatching(/^userSync\.publicBaseUrl: .*not the custom domain/)]);
    expect(deploymentProblems(devWith({ domain, userSync: { cookieDomain: '.publisher.example' } }))).toEqual(
      [],
    );
    expect(deploymentProblems(devWith({ userSync: { cookieDomain: 'publisher.example' } }))).toEqual([
      expect.stringMatching(/^userSync\.cookieDomain: .*no custom domain.*execute-api/),
    ]);
  });
});

/**
 * Resource types that CloudFormation lets carry tags, and those it does not (their tags would be
 * refused): every type in the template must be in one list, so a new resource type is classified
 * by whoever adds it.
 */
const TAGGABLE = [
  'AWS::ApiGatewayV2::Api',
  'AWS::ApiGatewayV2::DomainName',
  'AWS::ApiGatewayV2::Stage',
  'AWS::CertificateManager::Certificate',
  'AWS::CloudWatch::Alarm',
  'AWS::CloudWatch::Dashboard',
  'AWS::DynamoDB::GlobalTable',
  'AWS::IAM::Role',
  'AWS::Lambda::Function',
  'AWS::Logs::LogGroup',
  'AWS::SecretsManager::Secret',
  'AWS::SNS::Topic',
  'AWS::SQS::Queue',
  'AWS::S3::Bucket',
  'AWS::Lambda::EventSourceMapping',
];
const UNTAGGABLE = [
  'AWS::ApiGatewayV2::ApiMapping',
  'AWS::ApiGatewayV2::Integration',
  'AWS::ApiGatewayV2::Route',
  'AWS::IAM::Policy',
  'AWS::Lambda::Permission',
  'AWS::Logs::MetricFilter',
  'AWS::Route53::RecordSet',
  'AWS::SQS::QueuePolicy',
  'AWS::S3::BucketPolicy',
  'AWS::Scheduler::Schedule',
];

function tagsOf(resource: CfnResource): Record<string, string> {
  const properties = resource.Properties ?? {};
  // DynamoDB global tables carry their tags per replica.
  const raw =
    resource.Type === 'AWS::DynamoDB::GlobalTable'
      ? (properties['Replicas'] as { Tags?: unknown }[])[0]?.Tags
      : properties['Tags'];
  if (Array.isArray(raw)) {
    return Object.fromEntries((raw as { Key: string; Value: string }[]).map((tag) => [tag.Key, tag.Value]));
  }
  return (raw ?? {}) as Record<string, string>;
}

describe('tags', () => {
  it('puts project, environment and the file’s own tags on every resource that can carry tags', () => {
    for (const config of shippedConfigs) {
      const resources = shipped.get(config.name)!;
      const expected = { ...config.tags, project: 'dmp-activation', environment: config.name };
      expect(Object.keys(config.tags).length).toBeGreaterThan(0);
      for (const [id, resource] of Object.entries(resources)) {
        if (UNTAGGABLE.includes(resource.Type)) continue;
        expect(TAGGABLE, `${id}: classify ${resource.Type} as taggable or not`).toContain(resource.Type);
        expect(tagsOf(resource), `${config.name} ${id}`).toMatchObject(expected);
      }
    }
  });

  it('refuses tag keys with the reserved aws: prefix', () => {
    expect(() => devWith({ tags: { 'aws:owner': 'x' } })).toThrow(/aws: prefix is reserved/);
  });
});

describe('reserved concurrency and throttling', () => {
  it('reserves concurrency for the API function sized to the API throttle', () => {
    for (const config of shippedConfigs) {
      const [fn] = ofType(shipped.get(config.name)!, 'AWS::Lambda::Function');
      const expected = Math.ceil(config.api.throttlingRateLimit * SYNC_REQUEST_SECONDS);
      expect(fn!.Properties!['ReservedConcurrentExecutions']).toBe(expected);
      const [stage] = ofType(shipped.get(config.name)!, 'AWS::ApiGatewayV2::Stage');
      expect(stage!.Properties!['DefaultRouteSettings']).toMatchObject({
        ThrottlingRateLimit: config.api.throttlingRateLimit,
        ThrottlingBurstLimit: config.api.throttlingBurstLimit,
      });
    }
    expect(
      shippedConfigs.map((config) => Math.ceil(config.api.throttlingRateLimit * SYNC_REQUEST_SECONDS)),
    ).toEqual([20, 200]);
  });
});

describe('debug=1 traces', () => {
  it('are off in deployed stacks unless the file turns them on', () => {
    for (const config of shippedConfigs) expect(config.debugTraces).toBe(false);
    expect(devWith({ debugTraces: true }).debugTraces).toBe(true);
    // Where the service runs on this machine (local.json says nothing), they stay available.
    expect(loadEnvironmentFile(join(ENVIRONMENTS_DIR, 'local.json')).debugTraces).toBeUndefined();
  });
});

describe('a readable cdk diff', () => {
  it('carries the bundled configuration as function metadata, so a config change diffs by field', () => {
    for (const config of shippedConfigs) {
      const [fn] = ofType(shipped.get(config.name)!, 'AWS::Lambda::Function');
      expect(fn!.Metadata![CONFIG_METADATA_KEY]).toEqual(JSON.parse(JSON.stringify(config)));
    }
  });

  it('synthesizes the same template twice (no diff without a change)', () => {
    const again = synthesize(shippedConfigs);
    expect(again.get('dev')).toEqual(shipped.get('dev'));
    expect(again.get('prod')).toEqual(shipped.get('prod'));
  });
});

describe('docs kept in step with the stack', () => {
  it('has a runbook entry in docs/operations.md for every alarm, named in the alarm', () => {
    const runbook = readFileSync(join(REPO_ROOT, RUNBOOK), 'utf8');
    const entries = new Set([...runbook.matchAll(/^### ([a-z0-9-]+)$/gm)].map((match) => match[1]!));
    let alarms = 0;
    for (const resources of shipped.values()) {
      for (const alarm of ofType(resources, 'AWS::CloudWatch::Alarm')) {
        alarms += 1;
        const description = String(alarm.Properties!['AlarmDescription']);
        const anchor = /Runbook: docs\/operations\.md#([a-z0-9-]+)$/.exec(description)?.[1];
        expect(anchor, `alarm "${description}" names no runbook entry`).toBeDefined();
        expect(entries, `docs/operations.md has no "### ${anchor}" for "${description}"`).toContain(anchor);
      }
    }
    expect(alarms).toBeGreaterThanOrEqual(6);
  });

  it('draws docs/architecture.md from the synthesized stack (npm run docs:diagram rewrites it)', () => {
    const written = diagramIn(readFileSync(join(REPO_ROOT, 'docs', 'architecture.md'), 'utf8'));
    const template = { Resources: shipped.get(DIAGRAM_ENVIRONMENT)! };
    expect(written, 'the diagram differs from the stack: run npm run docs:diagram').toBe(
      resourceDiagram(template),
    );
    // Every resource type of every environment appears in it (dev has none prod lacks).
    const types = new Set(
      [...shipped.values()].flatMap((resources) => Object.values(resources).map((r) => r.Type)),
    );
    for (const type of types) {
      const inProd = Object.values(template.Resources).some((resource) => resource.Type === type);
      expect(inProd, `${type} exists in some environment but not in ${DIAGRAM_ENVIRONMENT}`).toBe(true);
    }
  });
});

describe('dashboard per partner', () => {
  it('graphs each syncing partner of the environment apart: its funnel and refusals', () => {
    for (const config of shippedConfigs) {
      const [dashboard] = ofType(shipped.get(config.name)!, 'AWS::CloudWatch::Dashboard');
      const body = JSON.stringify(dashboard!.Properties!['DashboardBody']);
      const partners = config.platforms.filter((platform) => platform.sync);
      for (const platform of partners) {
        expect(body).toContain(`Partner ${platform.id} (${platform.name}): sync`);
        for (const metric of ['SyncRedirected', 'MappingStored', 'MappingUnchanged', 'SyncRejected']) {
          expect(body).toContain(
            `MetricName=\\\\\\"${metric}\\\\\\" environment=\\\\\\"${config.name}\\\\\\" platform=\\\\\\"${platform.id}\\\\\\"`,
          );
        }
      }
      expect((body.match(/Partner \d+ \(/g) ?? []).length).toBe(partners.length);
    }
    expect(shippedConfigs.find((config) => config.name === 'dev')!.platforms.length).toBeGreaterThan(0);
  });
});

describe('runbook entries of the queue, stream and schedule constructs', () => {
  afterAll(cleanUpCdkTestStacks);

  it('name an existing entry in every alarm they create, before any is in the stack', () => {
    const base = cdkTestStack({ monitoring: { alarmTopicArn: 'arn:aws:sns:eu-west-1:111122223333:oncall' } });
    new QueueConsumer(base.stack, 'Delivery', {
      function: base.function,
      settings: {
        batchSize: 100,
        maxBatchingWindowSeconds: 1,
        maxConcurrency: 2,
        maxReceiveCount: 5,
        functionTimeoutSeconds: 30,
      },
      monitoring: base.monitoring,
    });
    new TableStreamConsumer(base.stack, 'Release', {
      function: base.function,
      table: createDataTable(base.stack, { ...MAPPING_TABLE, stream: 'NEW_AND_OLD_IMAGES' }, base.config),
      settings: { batchSize: 100, maxBatchingWindowSeconds: 1, maxRetryAttempts: 10 },
      monitoring: base.monitoring,
    });
    new FunctionSchedule(base.stack, 'Export', {
      function: base.function,
      everyMinutes: 15,
      monitoring: base.monitoring,
    });
    const runbook = readFileSync(join(REPO_ROOT, RUNBOOK), 'utf8');
    const entries = new Set([...runbook.matchAll(/^### ([a-z0-9-]+)$/gm)].map((match) => match[1]!));
    const alarms = Object.values(Template.fromStack(base.stack).findResources('AWS::CloudWatch::Alarm'));
    const anchors = alarms.map(
      (alarm) =>
        /Runbook: docs\/operations\.md#([a-z0-9-]+)$/.exec(
          String(alarm['Properties']['AlarmDescription']),
        )?.[1],
    );
    expect(anchors.filter((anchor) => anchor === undefined)).toEqual([]);
    for (const anchor of anchors) expect(entries).toContain(anchor);
    expect(new Set(anchors)).toEqual(
      new Set(['api-5xx', 'dead-letter-queue', 'queue-oldest-message', 'stream-iterator-age']),
    );
  });
});

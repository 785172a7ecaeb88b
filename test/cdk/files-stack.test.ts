import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { addNagChecks } from '../../lib/app.ts';
import { ACCESS_LOG_RETENTION_DAYS, OUTBOX_RETENTION_DAYS } from '../../lib/constructs/file-delivery.ts';
import { DmpActivationStack } from '../../lib/dmp-activation-stack.ts';
import { ENVIRONMENTS_DIR, REPO_ROOT } from '../../lib/repo.ts';
import { RUNBOOK } from '../../lib/runbook.ts';
import { loadEnvironmentFile, parseEnvironment } from '../../src/config/load.ts';
import { platformApiSecretName } from '../../src/config/secrets.ts';
import {
  FILE_OUTBOX_BUCKET,
  FILE_STAGING_TABLE,
  FUNCTIONS,
  SEGMENT_TABLE,
} from '../../src/infra/resources.ts';

/**
 * The file delivery part of the stack, on the dev environment plus four file-mode platforms: our
 * outbox read by the partner, a partner bucket written through a role it grants, a partner bucket
 * with its own KMS key, and an SFTP server. Synthesized once with cdk-nag attached.
 */

const PARTNER_ACCOUNT = '210987654321';
const ROLE_ARN = `arn:aws:iam::${PARTNER_ACCOUNT}:role/dmp-drop-writer`;
const KMS_ARN = `arn:aws:kms:eu-west-1:${PARTNER_ACCOUNT}:key/0f1e2d3c-aaaa-bbbb-cccc-1234567890ab`;

function filePlatform(id: number, destination: unknown, everyMinutes = 5) {
  return {
    id,
    name: `Files ${id}`,
    connector: {
      api: { baseUrl: 'https://files.example.com', auth: { type: 'none' } },
      segments: { creation: 'implicit' },
      population: { mode: 'file' },
      files: { destination, everyMinutes },
    },
  };
}

let template: Template;
let assembly: string;

beforeAll(() => {
  const dev = loadEnvironmentFile(join(ENVIRONMENTS_DIR, 'dev.json'));
  const config = parseEnvironment(
    {
      ...dev,
      name: 'filetest',
      platforms: [
        ...dev.platforms,
        filePlatform(
          501,
          { type: 's3', prefix: 'partner-501/', partnerReaders: [`arn:aws:iam::${PARTNER_ACCOUNT}:root`] },
          1,
        ),
        filePlatform(502, {
          type: 's3',
          bucket: 'partner-drop',
          prefix: 'in/',
          roleArn: ROLE_ARN,
          externalId: 'x-502',
        }),
        filePlatform(503, { type: 's3', bucket: 'partner-kms-drop', prefix: 'dmp/', kmsKeyArn: KMS_ARN }),
        filePlatform(504, {
          type: 'sftp',
          host: 'sftp.partner.example',
          hostKeySha256: [`SHA256:${'A'.repeat(43)}`],
        }),
      ],
    },
    'test',
  );
  const app = new App();
  const stack = new DmpActivationStack(app, 'DmpActivation-filetest', { config });
  addNagChecks(app);
  // Throws when cdk-nag reports an unacknowledged finding.
  assembly = app.synth().directory;
  template = Template.fromStack(stack);
});

/** The export function of S3 destinations (`export-files`) or of SFTP ones (`export-files-sftp`). */
function exportFunction(serviceName: 'export-files' | 'export-files-sftp' = 'export-files') {
  const functions = template.findResources('AWS::Lambda::Function', {
    Properties: { Environment: { Variables: { POWERTOOLS_SERVICE_NAME: serviceName } } },
  });
  const entries = Object.entries(functions);
  expect(entries).toHaveLength(1);
  return { id: entries[0]![0], fn: entries[0]![1] as { Properties: Record<string, unknown> } };
}

describe('file delivery in the stack', () => {
  it('keeps the outbox private: public access blocked, TLS only, encrypted, owner-enforced, logged, lifecycle', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
      },
      OwnershipControls: { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] },
      LoggingConfiguration: { LogFilePrefix: 'outbox/' },
      LifecycleConfiguration: {
        Rules: [
          Match.objectLike({
            ExpirationInDays: OUTBOX_RETENTION_DAYS,
            AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 },
            Status: 'Enabled',
          }),
        ],
      },
    });
    template.hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: { Rules: [Match.objectLike({ ExpirationInDays: ACCESS_LOG_RETENTION_DAYS })] },
    });
    const policies = Object.values(template.findResources('AWS::S3::BucketPolicy')).map((policy) =>
      JSON.stringify(policy),
    );
    for (const policy of policies) {
      expect(policy).toContain('"aws:SecureTransport":"false"');
      expect(policy).toContain('"s3:TlsVersion":1.2');
    }
  });

  it("lets a partner read only its platform's prefix of the outbox", () => {
    const outboxPolicy = Object.values(template.findResources('AWS::S3::BucketPolicy'))
      .map((policy) => JSON.stringify(policy))
      .find((policy) => policy.includes('Platform501Read'));
    expect(outboxPolicy).toBeDefined();
    const statements = (
      JSON.parse(outboxPolicy!) as {
        Properties: { PolicyDocument: { Statement: Record<string, unknown>[] } };
      }
    ).Properties.PolicyDocument.Statement;
    const read = statements.find((statement) => statement['Sid'] === 'Platform501Read')!;
    expect(read['Action']).toBe('s3:GetObject');
    expect(JSON.stringify(read['Resource'])).toContain('/partner-501/*');
    expect(JSON.stringify(read['Principal'])).toContain(`arn:aws:iam::${PARTNER_ACCOUNT}:root`);
    const list = statements.find((statement) => statement['Sid'] === 'Platform501List')!;
    expect(list['Condition']).toEqual({ StringLike: { 's3:prefix': ['partner-501/*'] } });
  });

  it('runs one exporter per destination kind on arm64, each with its table (the S3 one its outbox)', () => {
    for (const [serviceName, key] of [
      ['export-files', 'exportFiles'],
      ['export-files-sftp', 'exportFilesSftp'],
    ] as const) {
      const { fn } = exportFunction(serviceName);
      expect(fn.Properties).toMatchObject({
        Runtime: 'nodejs24.x',
        Architectures: ['arm64'],
        MemorySize: FUNCTIONS[key].memorySizeMb,
        Timeout: FUNCTIONS[key].timeoutSeconds,
      });
      const variables = Object.keys(
        (fn.Properties['Environment'] as { Variables: Record<string, unknown> }).Variables,
      );
      expect(variables).toContain(FILE_STAGING_TABLE.envVar);
      if (serviceName === 'export-files') expect(variables).toContain(FILE_OUTBOX_BUCKET.envVar);
      else expect(variables).not.toContain(FILE_OUTBOX_BUCKET.envVar);
    }
  });

  function statementsOf(serviceName: 'export-files' | 'export-files-sftp') {
    const { fn } = exportFunction(serviceName);
    const roleId = (fn.Properties['Role'] as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
    const policies = Object.values(
      template.findResources('AWS::IAM::Policy', { Properties: { Roles: [{ Ref: roleId }] } }),
    ) as {
      Properties: { PolicyDocument: { Statement: { Action: string | string[]; Resource: unknown }[] } };
    }[];
    const statements = policies.flatMap((policy) => policy.Properties.PolicyDocument.Statement);
    return (action: string) => statements.filter((statement) => [statement.Action].flat().includes(action));
  }

  it('grants each exporter exactly its destinations: prefixes, the partner role, the KMS key; the SFTP secret', () => {
    const byAction = statementsOf('export-files');
    const sftpByAction = statementsOf('export-files-sftp');

    const s3 = byAction('s3:PutObject');
    expect(s3).toHaveLength(1);
    expect(s3[0]!.Action).toEqual(['s3:PutObject', 's3:GetObject', 's3:AbortMultipartUpload']);
    const s3Resources = JSON.stringify(s3[0]!.Resource);
    expect(s3Resources).toContain('/partner-501/*');
    expect(s3Resources).toContain(':s3:::partner-kms-drop/dmp/*');
    // Written through the partner's role, not with ours.
    expect(s3Resources).not.toContain('partner-drop/');
    expect(byAction('sts:AssumeRole').map((statement) => statement.Resource)).toEqual([ROLE_ARN]);
    expect(byAction('kms:GenerateDataKey').map((statement) => statement.Resource)).toEqual([KMS_ARN]);
    // The S3 exporter reads no secret; the SFTP one only its platform's, and writes no object.
    expect(byAction('secretsmanager:GetSecretValue')).toEqual([]);
    const secrets = JSON.stringify(
      sftpByAction('secretsmanager:GetSecretValue').map((statement) => statement.Resource),
    );
    expect(secrets).toContain('Platform504Api');
    expect(secrets).not.toContain('Platform501Api');
    expect(sftpByAction('s3:PutObject')).toEqual([]);
    expect(byAction('s3:*')).toEqual([]);
    expect(platformApiSecretName('filetest', 504)).toBe('dmp-activation/filetest/platforms/504/api');
  });

  it('schedules one run per file platform at its interval, with its id as input, on its kind of exporter', () => {
    const schedules = Object.values(template.findResources('AWS::Scheduler::Schedule')) as {
      Properties: {
        ScheduleExpression: string;
        Target: { Input: string; RetryPolicy: Record<string, number> };
      };
    }[];
    const byPlatform = Object.fromEntries(
      schedules.map((schedule) => [
        (JSON.parse(schedule.Properties.Target.Input) as { platformId: number }).platformId,
        schedule.Properties,
      ]),
    );
    expect(Object.keys(byPlatform).sort()).toEqual(['501', '502', '503', '504']);
    expect(byPlatform[501]!.ScheduleExpression).toBe('rate(1 minute)');
    expect(byPlatform[502]!.ScheduleExpression).toBe('rate(5 minutes)');
    for (const schedule of Object.values(byPlatform))
      expect(schedule.Target.RetryPolicy).toMatchObject({ MaximumRetryAttempts: 2 });
    const arnOf = (schedule: { Target: unknown } | undefined) =>
      JSON.stringify((schedule?.Target as { Arn?: unknown } | undefined)?.Arn);
    expect(arnOf(byPlatform[501])).toContain(exportFunction('export-files').id);
    expect(arnOf(byPlatform[504])).toContain(exportFunction('export-files-sftp').id);
  });

  it('alarms per platform when its files fail to publish repeatedly', () => {
    for (const platformId of ['501', '502', '503', '504']) {
      // On the metric of the function that serves the platform (its service name).
      const service = platformId === '504' ? 'export-files-sftp' : 'export-files';
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        MetricName: 'FilePublicationFailing',
        Namespace: 'DmpActivation',
        Dimensions: Match.arrayWith([
          { Name: 'platform', Value: platformId },
          { Name: 'service', Value: service },
        ]),
        Threshold: 1,
        AlarmDescription: Match.stringLikeRegexp('Runbook: docs/operations\\.md#file-publication-failing$'),
      });
    }
    expect(readFileSync(join(REPO_ROOT, RUNBOOK), 'utf8')).toMatch(/^### file-publication-failing$/m);
  });

  it('keeps ssh2 out of the S3 exporter entirely', () => {
    const { fn } = exportFunction('export-files');
    const key = (fn.Properties['Code'] as { S3Key: string }).S3Key.replace(/\.zip$/, '');
    const bundle = readFileSync(join(assembly, `asset.${key}`, 'index.mjs'), 'utf8');
    expect(bundle).not.toContain('ssh-ed25519');
    expect(bundle).not.toContain('sshcrypto.node');
  });

  it('bundles ssh2 in the SFTP exporter without its native parts: only the pure JavaScript path ships to arm64', () => {
    const { fn } = exportFunction('export-files-sftp');
    const key = (fn.Properties['Code'] as { S3Key: string }).S3Key.replace(/\.zip$/, '');
    const dir = join(assembly, `asset.${key}`);
    const files = readdirSync(dir, { recursive: true }) as string[];
    expect(files.filter((file) => file.endsWith('.node'))).toEqual([]);
    const bundle = readFileSync(join(dir, 'index.mjs'), 'utf8');
    // ssh2 is in the bundle; its binding and cpu-features stay optional requires (try/catch in ssh2).
    expect(bundle).toContain('sshcrypto.node');
    expect(bundle).toContain('cpu-features');
    expect(bundle).toContain('ssh-ed25519');

    // It loads in a bare directory, as on Lambda (no node_modules): ssh2's optional requires fail
    // inside its try/catch and the pure JavaScript path is taken.
    const bare = mkdtempSync(join(tmpdir(), 'dmp-export-bundle-'));
    try {
      copyFileSync(join(dir, 'index.mjs'), join(bare, 'index.mjs'));
      const script =
        "const m = await import(process.env.BUNDLE); if (typeof m.handler !== 'function') throw new Error('no handler');";
      const result = spawnSync(process.execPath, ['--input-type=module', '--eval', script], {
        env: {
          PATH: process.env['PATH'] ?? '',
          AWS_REGION: 'eu-west-1',
          BUNDLE: pathToFileURL(join(bare, 'index.mjs')).href,
          [FILE_STAGING_TABLE.envVar]: 'staging',
          [SEGMENT_TABLE.envVar]: 'segments',
          POWERTOOLS_LOG_LEVEL: 'SILENT',
        },
        encoding: 'utf8',
      });
      expect(result.stderr).toBe('');
      expect(result.status).toBe(0);
    } finally {
      rmSync(bare, { recursive: true, force: true });
    }
  });
});

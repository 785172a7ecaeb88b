import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DynamoDBClient, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { marshall } from '@aws-sdk/util-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMANDS } from '../../cli/commands/index.ts';
import { runCli } from '../../cli/framework.ts';
import { ENDPOINTS_FILE_ENV_VAR, type LocalEndpoints, writeEndpointsFile } from '../../local/endpoints.ts';
import { close, listen, originOf, readBody } from '../../local/http-util.ts';
import { moduleLoader } from '../../local/lambda.ts';
import { type LocalStack, startLocalStack } from '../../local/stack.ts';
import { MAPPING_TABLE, STACK_OUTPUTS } from '../../src/infra/resources.ts';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ECHO_HANDLER = fileURLToPath(new URL('./fixtures/echo-handler.ts', import.meta.url));
const USER = 'dmpUser_0001-abc';

interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `dmp` as the operator would, in its own process, with only the given environment. */
function dmp(args: readonly string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'cli/dmp.ts', ...args], {
      cwd: REPO_ROOT,
      env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp', NO_COLOR: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

interface MappingsJson {
  readonly dmpUserId: string;
  readonly mappings: Record<string, unknown>[];
}

describe('dmp CLI', () => {
  let stack: LocalStack;
  let workDir: string;
  let cloudFormation: Server;
  let cloudFormationUrl: string;
  const describeStacksCalls: URLSearchParams[] = [];
  const expiresAt = Math.floor(Date.parse('2027-02-26T12:00:00Z') / 1000);

  beforeAll(async () => {
    stack = await startLocalStack({
      quiet: true,
      loadFunction: moduleLoader(ECHO_HANDLER),
      ttlSweepIntervalMs: 0,
    });
    workDir = mkdtempSync(join(tmpdir(), 'dmp-cli-'));
    const client = new DynamoDBClient({});
    try {
      const put = (item: Record<string, unknown>) =>
        client.send(new PutItemCommand({ TableName: MAPPING_TABLE.localName, Item: marshall(item) }));
      await put({
        pk: `user#${USER}`,
        sk: 'platform#99999',
        platformId: 99999,
        partnerUserId: 'abcdef123',
        firstSeen: '2026-11-01T10:00:00.000Z',
        lastSeen: '2026-11-28T12:00:00.000Z',
        lastChanged: '2026-11-20T09:00:00.000Z',
        previousPartnerUserId: 'zyx987',
        expiresAt,
      });
      await put({
        pk: `user#${USER}`,
        sk: 'platform#88888',
        platformId: 88888,
        partnerUserId: 'ghjkl1321',
        firstSeen: '2026-11-28T12:00:00.000Z',
        lastSeen: '2026-11-28T12:00:00.000Z',
        lastChanged: '2026-11-28T12:00:00.000Z',
        expiresAt,
      });
      // Neither is a mapping of this user.
      await put({ pk: `user#${USER}`, sk: 'state', other: 1 });
      await put({ pk: 'user#someone-else', sk: 'platform#99999', platformId: 99999, partnerUserId: 'nope' });
    } finally {
      client.destroy();
    }

    // A CloudFormation stand-in (query protocol) for `--env dev`.
    cloudFormation = createServer((request, response) => {
      void readBody(request, 1 << 20).then((body) => {
        const params = new URLSearchParams(body.toString('utf8'));
        describeStacksCalls.push(params);
        response.setHeader('content-type', 'text/xml');
        if (params.get('Action') !== 'DescribeStacks' || params.get('StackName') !== 'DmpActivation-dev') {
          response.statusCode = 400;
          response.end(
            '<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><Error><Type>Sender</Type>' +
              `<Code>ValidationError</Code><Message>Stack with id ${params.get('StackName')} does not exist</Message>` +
              '</Error><RequestId>r1</RequestId></ErrorResponse>',
          );
          return;
        }
        response.end(
          '<DescribeStacksResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><DescribeStacksResult>' +
            '<Stacks><member><StackName>DmpActivation-dev</StackName><StackId>arn:aws:cloudformation:eu-west-1:' +
            '000000000000:stack/DmpActivation-dev/1</StackId><CreationTime>2026-11-01T00:00:00Z</CreationTime>' +
            '<StackStatus>UPDATE_COMPLETE</StackStatus><Outputs><member>' +
            `<OutputKey>${STACK_OUTPUTS.mappingTableName}</OutputKey><OutputValue>${MAPPING_TABLE.localName}</OutputValue>` +
            '</member></Outputs></member></Stacks></DescribeStacksResult>' +
            '<ResponseMetadata><RequestId>r2</RequestId></ResponseMetadata></DescribeStacksResponse>',
        );
      });
    });
    cloudFormationUrl = originOf(await listen(cloudFormation, 0));
  });

  afterAll(async () => {
    await stack?.stop();
    if (cloudFormation) await close(cloudFormation);
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it('lists mappings as JSON with --endpoint and --table', async () => {
    const result = await dmp([
      'mappings',
      USER,
      '--json',
      '--endpoint',
      stack.dynamodbEndpoint,
      '--table',
      MAPPING_TABLE.localName,
    ]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const output = JSON.parse(result.stdout) as MappingsJson;
    expect(output).toEqual({
      dmpUserId: USER,
      mappings: [
        {
          platformId: 88888,
          partnerUserId: 'ghjkl1321',
          firstSeen: '2026-11-28T12:00:00.000Z',
          lastSeen: '2026-11-28T12:00:00.000Z',
          lastChanged: '2026-11-28T12:00:00.000Z',
          previousPartnerUserId: null,
          expiresAt: '2027-02-26T12:00:00.000Z',
          expired: false,
        },
        {
          platformId: 99999,
          partnerUserId: 'abcdef123',
          firstSeen: '2026-11-01T10:00:00.000Z',
          lastSeen: '2026-11-28T12:00:00.000Z',
          lastChanged: '2026-11-20T09:00:00.000Z',
          previousPartnerUserId: 'zyx987',
          expiresAt: '2027-02-26T12:00:00.000Z',
          expired: false,
        },
      ],
    });
  });

  it('finds the running local stack through its endpoints file and prints a table', async () => {
    const endpointsFile = join(workDir, 'endpoints.json');
    const endpoints: LocalEndpoints = {
      pid: process.pid,
      startedAt: new Date().toISOString(),
      region: stack.region,
      apiUrl: stack.apiUrl,
      syncPixelUrl: `${stack.apiUrl}/sync`,
      partnerUrl: stack.partnerUrl,
      dynamodbEndpoint: stack.dynamodbEndpoint,
      sqsEndpoint: stack.sqsEndpoint,
      s3Endpoint: stack.s3Endpoint,
      secretsEndpoint: stack.secretsEndpoint,
      tableNames: stack.tableNames,
    };
    writeEndpointsFile(endpointsFile, endpoints);
    const result = await dmp(['mappings', USER], { [ENDPOINTS_FILE_ENV_VAR]: endpointsFile });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines[0]).toContain(`Mappings of DMP user ${USER} in local (${stack.dynamodbEndpoint}`);
    expect(lines).toContainEqual(
      expect.stringMatching(/^PLATFORM\s+PARTNER USER ID\s+FIRST SEEN\s+LAST SEEN/),
    );
    expect(lines).toContainEqual(expect.stringMatching(/^88888\s+ghjkl1321\s+2026-11-28T12:00:00\.000Z\s/));
    expect(lines).toContainEqual(
      expect.stringMatching(/^99999\s+abcdef123\s+.*\s+zyx987\s+2027-02-26T12:00:00\.000Z$/),
    );

    const none = await dmp(['mappings', 'unknown-user-1'], { [ENDPOINTS_FILE_ENV_VAR]: endpointsFile });
    expect(none.code).toBe(0);
    expect(none.stdout).toContain('No mappings for DMP user unknown-user-1');
  });

  it('targets a deployed environment through its CloudFormation output', async () => {
    const env = {
      AWS_REGION: 'eu-west-1',
      AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
      AWS_SECRET_ACCESS_KEY: 'do-not-print-this-secret-value',
      AWS_ENDPOINT_URL_CLOUDFORMATION: cloudFormationUrl,
      AWS_ENDPOINT_URL_DYNAMODB: stack.dynamodbEndpoint,
    };
    const result = await dmp(['mappings', USER, '--env', 'dev', '--json'], env);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect((JSON.parse(result.stdout) as MappingsJson).mappings.map((m) => m['platformId'])).toEqual([
      88888, 99999,
    ]);
    expect(describeStacksCalls.at(-1)?.get('StackName')).toBe('DmpActivation-dev');

    const missing = await dmp(['mappings', USER, '--env', 'staging'], env);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('stack DmpActivation-staging not found');
    expect(missing.stderr).not.toContain('    at ');
    expect(missing.stderr).not.toContain('do-not-print-this-secret-value');
  });

  it('exits 2 with a clear message on an invalid user id', async () => {
    const invalid = await dmp(['mappings', 'bad id!', '--endpoint', stack.dynamodbEndpoint]);
    expect(invalid.code).toBe(2);
    expect(invalid.stdout).toBe('');
    expect(invalid.stderr).toContain("invalid DMP user id 'bad id!'");
    expect(invalid.stderr).toContain('usage: dmp mappings <dmpUserId>');
  });

  it('exits 1 without a stack trace when no local stack is running', async () => {
    const result = await dmp(['mappings', USER], { [ENDPOINTS_FILE_ENV_VAR]: join(workDir, 'absent.json') });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('cannot find the local stack: no local stack is running');
    expect(result.stderr).not.toContain('    at ');
  });

  describe('in process (runCli)', () => {
    async function run(argv: string[], env: NodeJS.ProcessEnv = {}) {
      const out: string[] = [];
      const err: string[] = [];
      const code = await runCli(argv, COMMANDS, {
        stdout: (text) => out.push(text),
        stderr: (text) => err.push(text),
        env,
      });
      return { code, stdout: out.join('\n'), stderr: err.join('\n') };
    }

    it('answers usage errors with exit 2 and the usage line', async () => {
      for (const argv of [
        ['mappings'],
        ['mappings', USER, 'extra'],
        ['mappings', USER, '--bogus'],
        ['mappings', USER, '--endpoint', 'not-a-url'],
        ['mappings', USER, '--env', 'Not_An_Env'],
      ]) {
        const result = await run(argv);
        expect(result.code, argv.join(' ')).toBe(2);
        expect(result.stderr, argv.join(' ')).toContain('usage: dmp mappings');
      }
      const unknown = await run(['frobnicate']);
      expect(unknown.code).toBe(2);
      expect(unknown.stderr).toContain("unknown command 'frobnicate'");
      expect((await run([])).code).toBe(2);
    });

    it('prints help with exit 0', async () => {
      const overview = await run(['--help']);
      expect(overview.code).toBe(0);
      expect(overview.stdout).toMatch(/^\s+mappings\s+List a DMP user/m);
      const help = await run(['mappings', '--help']);
      expect(help.code).toBe(0);
      expect(help.stdout).toContain('--endpoint <url>');
      expect((await run(['help', 'mappings'])).stdout).toBe(help.stdout);
    });

    it('queries the table in process too, and shows stack traces only with --debug', async () => {
      const ok = await run(['mappings', USER, '--json', '--endpoint', stack.dynamodbEndpoint]);
      expect(ok.code).toBe(0);
      expect((JSON.parse(ok.stdout) as MappingsJson).mappings).toHaveLength(2);

      const missingTable = await run([
        'mappings',
        USER,
        '--endpoint',
        stack.dynamodbEndpoint,
        '--table',
        'nope',
      ]);
      expect(missingTable.code).toBe(1);
      expect(missingTable.stderr).toContain('ResourceNotFoundException');
      expect(missingTable.stderr).not.toContain('    at ');
      const debug = await run([
        'mappings',
        USER,
        '--endpoint',
        stack.dynamodbEndpoint,
        '--table',
        'nope',
        '--debug',
      ]);
      expect(debug.code).toBe(1);
      expect(debug.stderr).toContain('    at ');
    });
  });
});

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDBClient, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { marshall } from '@aws-sdk/util-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENDPOINTS_FILE_ENV_VAR, writeEndpointsFile } from '../../local/endpoints.ts';
import { endpointsOf, type LocalStack } from '../../local/stack.ts';
import { MAPPING_TABLE, STACK_OUTPUTS } from '../../src/infra/resources.ts';
import { runDmp, runDmpInProcess } from '../support/cli.ts';
import { type CloudFormationStandIn, startCloudFormation } from '../support/cloudformation.ts';
import { startEchoStack } from '../support/local-stack.ts';

const USER = 'dmpUser_0001-abc';

interface MappingsJson {
  readonly dmpUserId: string;
  readonly mappings: Record<string, unknown>[];
  readonly forgotten: boolean;
}

describe('dmp CLI', () => {
  let stack: LocalStack;
  let workDir: string;
  let cloudFormation: CloudFormationStandIn;
  const expiresAt = Math.floor(Date.parse('2027-02-26T12:00:00Z') / 1000);

  beforeAll(async () => {
    stack = await startEchoStack();
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

    // A CloudFormation stand-in for `--env dev`.
    cloudFormation = await startCloudFormation('DmpActivation-dev', {
      [STACK_OUTPUTS.mappingTableName]: MAPPING_TABLE.localName,
    });
  });

  afterAll(async () => {
    await stack?.stop();
    await cloudFormation?.close();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it('lists mappings as JSON with --endpoint and --table', async () => {
    const result = await runDmp([
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
      forgotten: false,
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
    writeEndpointsFile(endpointsFile, endpointsOf(stack));
    const result = await runDmp(['mappings', USER], { env: { [ENDPOINTS_FILE_ENV_VAR]: endpointsFile } });
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

    const none = await runDmp(['mappings', 'unknown-user-1'], {
      env: { [ENDPOINTS_FILE_ENV_VAR]: endpointsFile },
    });
    expect(none.code).toBe(0);
    expect(none.stdout).toContain('No mappings for DMP user unknown-user-1');
  });

  it('targets a deployed environment through its CloudFormation output', async () => {
    const env = {
      AWS_REGION: 'eu-west-1',
      AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
      AWS_SECRET_ACCESS_KEY: 'do-not-print-this-secret-value',
      AWS_ENDPOINT_URL_CLOUDFORMATION: cloudFormation.url,
      AWS_ENDPOINT_URL_DYNAMODB: stack.dynamodbEndpoint,
    };
    const result = await runDmp(['mappings', USER, '--env', 'dev', '--json'], { env });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect((JSON.parse(result.stdout) as MappingsJson).mappings.map((m) => m['platformId'])).toEqual([
      88888, 99999,
    ]);
    expect(cloudFormation.calls.at(-1)?.get('StackName')).toBe('DmpActivation-dev');

    const missing = await runDmp(['mappings', USER, '--env', 'prod'], { env });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(
      "stack DmpActivation-prod not found in eu-west-1, account 444455556666: is 'prod' deployed there, " +
        'and are these credentials for account 444455556666?',
    );
    expect(missing.stderr).not.toContain('    at ');
    expect(missing.stderr).not.toContain('do-not-print-this-secret-value');

    // A name without a file is a typo, said before any AWS call.
    const calls = cloudFormation.calls.length;
    const unknown = await runDmp(['mappings', USER, '--env', 'staging'], { env });
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain(
      "unknown environment 'staging': no config/environments/staging.json; known: dev, local, prod",
    );
    expect(cloudFormation.calls.length).toBe(calls);
  });

  it('exits 2 with a clear message on an invalid user id', async () => {
    const invalid = await runDmp(['mappings', 'bad id!', '--endpoint', stack.dynamodbEndpoint]);
    expect(invalid.code).toBe(2);
    expect(invalid.stdout).toBe('');
    expect(invalid.stderr).toContain("invalid DMP user id 'bad id!'");
    expect(invalid.stderr).toContain('usage: dmp mappings <dmpUserId>');
  });

  it('exits 1 without a stack trace when no local stack is running', async () => {
    const result = await runDmp(['mappings', USER], {
      env: { [ENDPOINTS_FILE_ENV_VAR]: join(workDir, 'absent.json') },
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('cannot find the local stack: no local stack is running');
    expect(result.stderr).not.toContain('    at ');
  });

  describe('in process (runCli)', () => {
    it('answers usage errors with exit 2 and the usage line', async () => {
      for (const argv of [
        ['mappings'],
        ['mappings', USER, 'extra'],
        ['mappings', USER, '--bogus'],
        ['mappings', USER, '--endpoint', 'not-a-url'],
        ['mappings', USER, '--env', 'Not_An_Env'],
      ]) {
        const result = await runDmpInProcess(argv);
        expect(result.code, argv.join(' ')).toBe(2);
        expect(result.stderr, argv.join(' ')).toContain('usage: dmp mappings');
      }
      const unknown = await runDmpInProcess(['frobnicate']);
      expect(unknown.code).toBe(2);
      expect(unknown.stderr).toContain("unknown command 'frobnicate'");
      expect((await runDmpInProcess([])).code).toBe(2);
    });

    it('prints help with exit 0', async () => {
      const overview = await runDmpInProcess(['--help']);
      expect(overview.code).toBe(0);
      expect(overview.stdout).toMatch(/^\s+mappings\s+List a DMP user/m);
      const help = await runDmpInProcess(['mappings', '--help']);
      expect(help.code).toBe(0);
      expect(help.stdout).toContain('--endpoint <url>');
      expect((await runDmpInProcess(['help', 'mappings'])).stdout).toBe(help.stdout);
    });

    it('queries the table in process too, and shows stack traces only with --debug', async () => {
      const ok = await runDmpInProcess(['mappings', USER, '--json', '--endpoint', stack.dynamodbEndpoint]);
      expect(ok.code).toBe(0);
      expect((JSON.parse(ok.stdout) as MappingsJson).mappings).toHaveLength(2);

      const missingTable = await runDmpInProcess([
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
      const debug = await runDmpInProcess([
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

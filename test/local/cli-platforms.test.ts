import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PlatformView } from '../../cli/commands/platforms.ts';
import { REPO_ROOT, writeEndpointsFile } from '../../local/endpoints.ts';
import { runDmp, runDmpInProcess } from '../support/cli.ts';

const REFERENCE_PLATFORM = join(REPO_ROOT, 'config', 'platforms', 'local', '01-99999-reference-partner.json');

/** Every .json file under a folder, recursively. */
function jsonFiles(directory: string): string[] {
  return readdirSync(directory, { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.json'))
    .map((file) => join(directory, file))
    .sort();
}

/** The parts of a platform file the tests change. */
interface PlatformDocument {
  connector: { api: Record<string, unknown>; population: Record<string, unknown> };
}

interface ValidateJson {
  readonly file: string;
  readonly valid: boolean;
  readonly problems: { readonly file: string; readonly path: string | null; readonly message: string }[];
}

describe('dmp platforms', () => {
  let workDir: string;
  /** The reference platform with one change. */
  const variant = (name: string, change: (platform: PlatformDocument) => void): string => {
    const platform = JSON.parse(readFileSync(REFERENCE_PLATFORM, 'utf8')) as PlatformDocument;
    change(platform);
    const path = join(workDir, name);
    writeFileSync(path, JSON.stringify(platform, null, 2));
    return path;
  };

  beforeAll(() => {
    workDir = mkdtempSync(join(tmpdir(), 'dmp-cli-platforms-'));
  });

  afterAll(() => {
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  describe('list', () => {
    /** No local stack running (an endpoints file that does not exist), no PARTNER_PORT. */
    const noStack = () => ({ DMP_LOCAL_ENDPOINTS: join(workDir, 'no-stack', 'endpoints.json') });

    it('shows the reference partner where it listens: the running stack, else PARTNER_PORT', async () => {
      const endpointsFile = join(workDir, 'running', 'endpoints.json');
      writeEndpointsFile(endpointsFile, {
        pid: process.pid,
        startedAt: new Date().toISOString(),
        region: 'eu-west-1',
        apiUrl: 'http://127.0.0.1:3470',
        syncPixelUrl: 'http://127.0.0.1:3470/sync',
        partnerUrl: 'http://127.0.0.1:3471',
        dynamodbEndpoint: 'http://127.0.0.1:1',
        sqsEndpoint: 'http://127.0.0.1:2',
        s3Endpoint: 'http://127.0.0.1:2',
        secretsEndpoint: 'http://127.0.0.1:3',
        tableNames: {},
      });
      const apiHosts = async (env: NodeJS.ProcessEnv) => {
        const { platforms } = JSON.parse(
          (await runDmpInProcess(['platforms', 'list', '--json'], env)).stdout,
        ) as { platforms: PlatformView[] };
        return platforms.find((platform) => platform.id === 99999)?.connector?.apiHost;
      };
      expect(await apiHosts({ DMP_LOCAL_ENDPOINTS: endpointsFile, PARTNER_PORT: '3999' })).toBe(
        '127.0.0.1:3471',
      );
      expect(await apiHosts({ ...noStack(), PARTNER_PORT: '3999' })).toBe('127.0.0.1:3999');
      expect(await apiHosts(noStack())).toBe('127.0.0.1:3001');
    });

    it("prints the local environment's platforms as a table", async () => {
      const result = await runDmpInProcess(['platforms', 'list'], noStack());
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      const lines = result.stdout.split('\n');
      expect(lines[0]).toMatch(/^Platforms of environment local \(.*config\/environments\/local\.json\):$/);
      expect(lines).toContainEqual(
        expect.stringMatching(
          /^ID\s+NAME\s+SYNC\s+SYNC HOST\s+AUTH\s+SEGMENTS\s+POPULATION\s+BATCH\s+REMOVAL/,
        ),
      );
      expect(lines).toContainEqual(
        expect.stringMatching(
          /^99999\s+Reference partner \(the seed's API\)\s+on\s+127\.0\.0\.1:3001\s+basic\s+api\s+batch\s+1000\s+call\s/,
        ),
      );
      expect(lines).toContainEqual(
        expect.stringMatching(
          /^88888\s+Reference partner, signed callbacks\s+on \(signed\)\s+127\.0\.0\.1:3001\s+-\s+-/,
        ),
      );
    });

    it('prints them as JSON', async () => {
      const result = await runDmpInProcess(['platforms', 'list', '--json'], noStack());
      expect(result.code).toBe(0);
      const output = JSON.parse(result.stdout) as { environment: string; platforms: PlatformView[] };
      expect(output.environment).toBe('local');
      expect(output.platforms.map((platform) => platform.id)).toEqual([99999, 88888, 99998, 99997]);
      expect(output.platforms[0]).toEqual({
        id: 99999,
        name: "Reference partner (the seed's API)",
        sync: { enabled: true, templateHost: '127.0.0.1:3001', signatureRequired: false },
        connector: {
          auth: 'basic',
          segmentCreation: 'api',
          populationMode: 'batch',
          batchSize: 1000,
          removalVia: 'call',
          apiHost: '127.0.0.1:3001',
        },
      });
      expect(output.platforms[1]).toMatchObject({
        id: 88888,
        sync: { enabled: true, signatureRequired: true },
        connector: null,
      });
      expect(output.platforms[2]).toMatchObject({
        id: 99998,
        sync: { enabled: true, signatureRequired: false },
        connector: { populationMode: 'file' },
      });
    });

    it('lists another environment with --env, and refuses unknown ones', async () => {
      const dev = await runDmpInProcess(['platforms', 'list', '--env', 'dev', '--json']);
      expect(dev.code).toBe(0);
      const output = JSON.parse(dev.stdout) as { environment: string; platforms: PlatformView[] };
      expect(output.environment).toBe('dev');
      expect(output.platforms.find((platform) => platform.id === 99999)?.connector?.apiHost).toBe(
        'api.third-party.com',
      );

      const unknown = await runDmpInProcess(['platforms', 'list', '--env', 'nope']);
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toContain("no configuration for environment 'nope'");
      expect(unknown.stderr).toMatch(/known: .*\blocal\b/);
      const invalid = await runDmpInProcess(['platforms', 'list', '--env', 'Bad_Name']);
      expect(invalid.code).toBe(2);
      expect(invalid.stderr).toContain('usage: dmp platforms list');
    });
  });

  describe('validate', () => {
    it('accepts every shipped platform and environment file', async () => {
      const files = [
        ...jsonFiles(join(REPO_ROOT, 'config', 'platforms')),
        ...jsonFiles(join(REPO_ROOT, 'config', 'environments')),
      ];
      expect(files.length).toBeGreaterThanOrEqual(6);
      for (const absolute of files) {
        const file = relative(REPO_ROOT, absolute);
        const platform = file.startsWith('config/platforms/');
        const result = await runDmpInProcess(['platforms', 'validate', absolute]);
        expect(result.stderr, file).toBe('');
        expect(result.code, file).toBe(0);
        expect(result.stdout, file).toMatch(
          platform
            ? new RegExp(`^ok: ${absolute.replaceAll('.', '\\.')} \\(platform \\d+ ".+"\\)$`)
            : new RegExp(`^ok: ${absolute.replaceAll('.', '\\.')} \\(environment [a-z][a-z0-9-]+: `),
        );
        const json = await runDmpInProcess(['platforms', 'validate', absolute, '--json']);
        expect(json.code, file).toBe(0);
        expect(JSON.parse(json.stdout), file).toMatchObject({ file: absolute, valid: true, problems: [] });
      }
      const local = await runDmpInProcess([
        'platforms',
        'validate',
        join(REPO_ROOT, 'config', 'environments', 'local.json'),
      ]);
      expect(local.stdout).toContain(
        `(environment local: platform 99999 "Reference partner (the seed's API)", platform 88888 "Reference partner, signed callbacks", platform 99998 "Reference partner, legacy file delivery", platform 99997 "Reference partner, legacy file delivery over SFTP")`,
      );
    });

    it('names the file and the field of a typo, with every problem', async () => {
      const file = variant('typo.json', (platform) => {
        platform.connector.api.baseURL = platform.connector.api.baseUrl;
        delete platform.connector.api.baseUrl;
      });
      const result = await runDmpInProcess(['platforms', 'validate', file]);
      expect(result.code).toBe(1);
      expect(result.stdout).toBe('');
      const lines = result.stderr.split('\n');
      expect(lines[0]).toBe(`invalid: ${file} (2 problems)`);
      expect(lines).toContain(`${file}: connector.api: Unrecognized key: "baseURL"`);
      expect(lines).toContainEqual(
        expect.stringMatching(new RegExp(`^${file}: connector\\.api\\.baseUrl: `)),
      );

      const json = await runDmpInProcess(['platforms', 'validate', file, '--json']);
      expect(json.code).toBe(1);
      const output = JSON.parse(json.stdout) as ValidateJson;
      expect(output).toMatchObject({ file, valid: false });
      expect(output.problems.map((problem) => problem.path).sort()).toEqual([
        'connector.api',
        'connector.api.baseUrl',
      ]);
      expect(output.problems.every((problem) => problem.file === file && problem.message.length > 0)).toBe(
        true,
      );
    });

    it('refuses a batch size of 0', async () => {
      const file = variant('batch.json', (platform) => {
        platform.connector.population.batchSize = 0;
      });
      const result = await runDmpInProcess(['platforms', 'validate', file]);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(
        new RegExp(
          `^${file}: connector\\.population\\.batchSize: Too small: expected number to be >=1$`,
          'm',
        ),
      );
      const output = JSON.parse(
        (await runDmpInProcess(['platforms', 'validate', file, '--json'])).stdout,
      ) as ValidateJson;
      expect(output.problems).toEqual([
        { file, path: 'connector.population.batchSize', message: expect.stringContaining('>=1') },
      ]);
    });

    it('exits 1 with a clear message on a file that is not JSON or not there', async () => {
      const broken = join(workDir, 'broken.json');
      writeFileSync(broken, '{"id": 99999,\n');
      const result = await runDmpInProcess(['platforms', 'validate', broken]);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(`${broken}: not valid JSON: `);
      const json = JSON.parse(
        (await runDmpInProcess(['platforms', 'validate', broken, '--json'])).stdout,
      ) as ValidateJson;
      expect(json).toMatchObject({
        valid: false,
        problems: [{ path: null, message: expect.stringMatching(/^not valid JSON/) }],
      });

      const missing = await runDmpInProcess(['platforms', 'validate', join(workDir, 'missing.json')]);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toContain('missing.json: cannot read file: no such file');
      expect(missing.stderr).not.toContain('    at ');

      const usage = await runDmpInProcess(['platforms', 'validate']);
      expect(usage.code).toBe(2);
      expect(usage.stderr).toContain('usage: dmp platforms validate <file>');
    });

    it('validates an environment file with its platform files, naming each bad one', async () => {
      const root = join(workDir, 'repo', 'config');
      mkdirSync(join(root, 'environments'), { recursive: true });
      mkdirSync(join(root, 'platforms', 'qa'), { recursive: true });
      const environment = join(root, 'environments', 'qa.json');
      const deployable = {
        name: 'qa',
        aws: { account: '111122223333', region: 'eu-west-1' },
        monitoring: { alarmTopicArn: 'arn:aws:sns:eu-west-1:111122223333:qa-alarms' },
        platforms: [],
      };
      // What `cdk synth` would refuse, validate says first.
      writeFileSync(environment, JSON.stringify({ name: 'qa', platforms: [] }));
      const undeployable = await runDmpInProcess(['platforms', 'validate', environment]);
      expect(undeployable.code).toBe(1);
      expect(undeployable.stderr).toContain(
        `${environment}: aws.account: a deployed environment names its AWS account`,
      );
      expect(undeployable.stderr).toContain(`${environment}: monitoring.alarmTopicArn: `);

      writeFileSync(environment, JSON.stringify(deployable));
      const good = join(root, 'platforms', 'qa', '01-good.json');
      writeFileSync(good, readFileSync(REFERENCE_PLATFORM));

      const ok = await runDmpInProcess(['platforms', 'validate', environment]);
      expect(ok.code).toBe(0);
      expect(ok.stdout).toBe(
        `ok: ${environment} (environment qa: platform 99999 "Reference partner (the seed's API)")`,
      );

      const bad = join(root, 'platforms', 'qa', '02-bad.json');
      writeFileSync(bad, JSON.stringify({ id: 4242, name: 'Bad', connector: { api: {} } }));
      const broken = await runDmpInProcess(['platforms', 'validate', environment, '--json']);
      expect(broken.code).toBe(1);
      const output = JSON.parse(broken.stdout) as ValidateJson;
      expect(output.valid).toBe(false);
      expect(output.problems.length).toBeGreaterThan(0);
      expect(output.problems.every((problem) => problem.file === bad)).toBe(true);
      expect(output.problems.map((problem) => problem.path)).toContain('connector.api.baseUrl');

      // Two platform files with one id: the environment as a whole is refused.
      writeFileSync(bad, readFileSync(REFERENCE_PLATFORM));
      const duplicate = await runDmpInProcess(['platforms', 'validate', environment]);
      expect(duplicate.code).toBe(1);
      expect(duplicate.stderr).toContain(`${environment}: platforms.1.id: duplicate platform id 99999`);

      // Outside config/: recognized by its content.
      const loose = join(workDir, 'loose-environment.json');
      writeFileSync(loose, JSON.stringify({ name: 'loose', deploy: false, platforms: [] }));
      const looseResult = await runDmpInProcess(['platforms', 'validate', loose]);
      expect(looseResult.stdout).toBe(`ok: ${loose} (environment loose: no platforms)`);
    });

    it('exits 1 from the real binary on an invalid file', async () => {
      const file = variant('process.json', (platform) => {
        platform.connector.population.batchSize = 0;
      });
      const result = await runDmp(['platforms', 'validate', file]);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(`${file}: connector.population.batchSize: `);
      const ok = await runDmp([
        'platforms',
        'validate',
        'config/platforms/local/01-99999-reference-partner.json',
      ]);
      expect(ok.code).toBe(0);
      expect(ok.stdout).toBe(
        'ok: config/platforms/local/01-99999-reference-partner.json (platform 99999 "Reference partner (the seed\'s API)")\n',
      );
    });
  });
});

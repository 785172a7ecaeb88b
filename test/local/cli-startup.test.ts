import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../local/endpoints.ts';
import { runDmp } from '../support/cli.ts';
import { useTempDirs } from '../support/temp-dirs.ts';

/**
 * What `dmp` loads and where it runs: a command loads only what it uses (`--help` no AWS SDK
 * client and no local stack), a deployed environment needs no dev dependency, errors for missing
 * credentials and unknown environments are one clear line, and `./cli/dmp.ts` copes with a system
 * Node.js older than 24.
 */

const tempDir = useTempDirs();
const packageJson = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
  devDependencies: Record<string, string>;
  dependencies: Record<string, string>;
};

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Every module URL the process loaded. */
  readonly modules: readonly string[];
}

/**
 * `dmp <args>` in its own process with an empty home (no ~/.aws), no instance metadata lookups
 * (nothing may leave this machine) and a recorder of loaded modules.
 */
async function runRecorded(args: readonly string[]): Promise<Run> {
  const dir = tempDir('dmp-startup-');
  const record = join(dir, 'modules.txt');
  const result = await runDmp(args, {
    nodeArgs: ['--import', './test/support/record-modules.ts'],
    env: {
      HOME: dir,
      AWS_EC2_METADATA_DISABLED: 'true',
      DMP_LOCAL_ENDPOINTS: join(dir, 'absent.json'),
      DMP_RECORD_MODULES: record,
    },
  });
  const modules = readFileSync(record, 'utf8').split('\n').filter(Boolean);
  return { ...result, modules };
}

/** The packages (node_modules/<name>/) among the loaded modules. */
function packagesOf(modules: readonly string[]): Set<string> {
  const names = new Set<string>();
  for (const url of modules) {
    const match = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
    if (match) names.add(match[1]!);
  }
  return names;
}

const repoFiles = (modules: readonly string[]) =>
  modules
    .filter((url) => url.startsWith('file://') && !url.includes('/node_modules/'))
    .map((url) => url.slice(`file://${REPO_ROOT}/`.length));

describe('dmp start-up', () => {
  it('`dmp --help` loads no AWS SDK client, no partner connector, nothing of the local stack and no dev dependency', async () => {
    const run = await runRecorded(['--help']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^usage: dmp <command>/);
    const packages = [...packagesOf(run.modules)];
    expect(packages.filter((name) => name.startsWith('@aws-sdk/') || name.startsWith('@smithy/'))).toEqual(
      [],
    );
    // The partner connectors are loaded by the commands that call a partner's API.
    expect(repoFiles(run.modules).filter((file) => file.startsWith('src/connectors/http/'))).toEqual([]);
    expect(packages.filter((name) => name in packageJson.devDependencies)).toEqual([]);
    const local = repoFiles(run.modules).filter((file) => file.startsWith('local/'));
    expect(local.sort()).toEqual(['local/endpoints.ts', 'local/partner-origin.ts']);
  });

  it('a deployed environment needs no dev dependency, and missing credentials are one clear line', async () => {
    const run = await runRecorded(['mappings', 'abc-user-0001', '--env', 'dev']);
    expect(run.code).toBe(1);
    expect(run.stderr.trim()).toBe(
      'dmp mappings: no AWS credentials for --env dev: the standard AWS chain found none. Set AWS_PROFILE ' +
        '(after `aws sso login` for SSO), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, for account 111122223333',
    );
    const packages = packagesOf(run.modules);
    // It did get as far as the AWS SDK (the CloudFormation call), and loaded only dependencies.
    expect(packages.has('@aws-sdk/client-cloudformation')).toBe(true);
    expect([...packages].filter((name) => name in packageJson.devDependencies)).toEqual([]);
    for (const name of packages) {
      if (name in packageJson.dependencies) continue;
      // Anything else is a dependency of a dependency; none of them is a dev-only package.
      expect(packageJson.devDependencies[name], name).toBeUndefined();
    }
    expect(repoFiles(run.modules).filter((file) => file === 'local/stack.ts')).toEqual([]);
  });

  it('names an unknown environment and the known ones, before any AWS call', async () => {
    const run = await runRecorded(['mappings', 'abc-user-0001', '--env', 'staging']);
    expect(run.code).toBe(1);
    expect(run.stderr.trim()).toBe(
      "dmp mappings: unknown environment 'staging': no config/environments/staging.json; known: dev, local, prod",
    );
    expect(packagesOf(run.modules).has('@aws-sdk/client-cloudformation')).toBe(false);
  });
});

/** A Node.js older than 24 on this machine (Debian's), if there is one. */
function olderNode(): string | undefined {
  for (const candidate of ['/usr/bin/node', '/usr/local/bin/node']) {
    const result = spawnSync(candidate, ['-p', 'process.versions.node'], { encoding: 'utf8' });
    if (result.status === 0 && Number(result.stdout.split('.')[0]) < 24) return candidate;
  }
  return undefined;
}

describe.runIf(olderNode())('./cli/dmp.ts on a system Node.js older than 24', () => {
  const node = olderNode()!;
  const env = (extra: Record<string, string> = {}) => ({
    PATH: `${tempDir('dmp-old-node-')}:/usr/bin:/bin`,
    HOME: tempDir('dmp-old-home-'),
    ...extra,
  });

  it('hands over to the project’s Node.js 24 and runs the command', () => {
    // As the `#!` line runs it: the system `node` with the tsx loader.
    const result = spawnSync(node, ['--import', 'tsx', 'cli/dmp.ts', '--help'], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      env: env(),
    });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/^usage: dmp <command>/);
  });

  it('says what to do when the project’s Node.js 24 cannot be used', () => {
    const result = spawnSync(node, ['--import', 'tsx', 'cli/dmp.ts', '--help'], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      // As if the hand-over had already happened (or node_modules/node were absent).
      env: env({ DMP_NODE_REEXEC: '1' }),
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/^dmp needs Node\.js 24 or later; this is Node\.js \d+\./);
    expect(result.stderr).toContain("Run it as 'npm run dmp -- <command>'");
    expect(result.stderr).not.toMatch(/^\s+at /m);
  });
});

describe('a DMP user id that starts with a dash', () => {
  it('is read as the id after --, as the help says', async () => {
    const dir = tempDir('dmp-dash-');
    const result = await runDmp(['mappings', '--', '-Vabc_def-123'], {
      env: { DMP_LOCAL_ENDPOINTS: join(dir, 'absent.json') },
    });
    // The id passed validation and the command went on to look for the stack.
    expect(result.stderr).toContain('cannot find the local stack');
    const help = await runDmp(['mappings', '--help']);
    expect(help.stdout).toContain("one starting with '-': put -- before it");
  });
});

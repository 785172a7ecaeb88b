import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ENVIRONMENTS_DIR } from '../../lib/repo.ts';
import { embeddedEnvironment } from '../../src/config/embedded.ts';
import { CONFIG_ENV_VAR, loadEnvironmentFile } from '../../src/config/load.ts';
import { configErrorOf } from '../support/config.ts';

const dir = mkdtempSync(join(tmpdir(), 'dmp-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

const VALID = JSON.stringify({
  name: 'staging',
  platforms: [
    { id: 99999, name: 'Seed', sync: { urlTemplate: 'https://api.third-party.com/sync?out={out}' } },
  ],
});

describe('loadEnvironmentFile', () => {
  it('reads and validates a file', () => {
    const config = loadEnvironmentFile(file('staging.json', VALID));
    expect(config.name).toBe('staging');
    expect(config.platforms[0]?.sync?.resyncAfterDays).toBe(7);
  });

  it('names the path of a file that does not exist', () => {
    const path = join(dir, 'missing.json');
    const error = configErrorOf(() => loadEnvironmentFile(path));
    expect(error.source).toBe(path);
    expect(error.problems[0]).toMatch(/^cannot read file/);
  });

  it('names the path of a file that is not JSON', () => {
    const path = file('broken.json', '{ "name": "x", ');
    const error = configErrorOf(() => loadEnvironmentFile(path));
    expect(error.message.startsWith(`${path}: invalid configuration`)).toBe(true);
    expect(error.problems[0]).toMatch(/^not valid JSON/);
  });

  it('names the path and the field of a file that does not validate', () => {
    const path = file('typo.json', JSON.stringify({ ...JSON.parse(VALID), logRetentionDays: 'long' }));
    const error = configErrorOf(() => loadEnvironmentFile(path));
    expect(error.source).toBe(path);
    expect(error.problems).toEqual([expect.stringMatching(/^logRetentionDays: /)]);
  });
});

describe('embeddedEnvironment (every function: validated at synth, read without zod)', () => {
  it('reads exactly the configuration synth validated, for every shipped environment (every function reads it so)', () => {
    for (const name of ['local', 'dev', 'prod']) {
      // What `cdk synth` validates (lib/app.ts) and lib/constructs/service-function.ts embeds as JSON.
      const validated = loadEnvironmentFile(join(ENVIRONMENTS_DIR, `${name}.json`));
      const env = { [CONFIG_ENV_VAR]: JSON.stringify(validated) };
      expect(embeddedEnvironment(env), name).toEqual(validated);
    }
  });

  it('refuses a missing, unreadable or foreign value with the variable named', () => {
    expect(() => embeddedEnvironment({})).toThrow(`${CONFIG_ENV_VAR} is not set`);
    expect(() => embeddedEnvironment({ [CONFIG_ENV_VAR]: '{"name":' })).toThrow('is not valid JSON');
    expect(() => embeddedEnvironment({ [CONFIG_ENV_VAR]: '{"name":"x","platforms":[{}]}' })).toThrow(
      'is not a validated environment configuration',
    );
  });
});

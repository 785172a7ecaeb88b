import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  loadEnvironmentFile,
  loadPlatformFile,
  parsePlatform,
} from '../../../src/config/load.ts';

const ROOT = join(import.meta.dirname, '..', '..', '..', 'config');
const seedPlatform = () => ({
  id: 99999,
  name: 'Third party',
  connector: {
    api: { baseUrl: 'https://api.third-party.com', auth: { type: 'basic' } },
    segments: { creation: 'api', create: { path: '/v1/segment?title={name}' }, idPath: 'segment_id' },
    population: { add: { path: '/v1/segment' } },
  },
});

function problemsOf(document: unknown): string[] {
  try {
    parsePlatform(document, 'config/platforms/dev/99999-third-party.json');
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toContain('config/platforms/dev/99999-third-party.json');
    return (error as ConfigError).problems;
  }
  return [];
}

describe('platform definitions', () => {
  it('accepts the seed-shaped connector with its defaults', () => {
    const platform = parsePlatform(seedPlatform(), 'test');
    expect(platform.connector?.population).toMatchObject({
      mode: 'batch',
      batchSize: 500,
      removal: { via: 'ttl' },
    });
    // Nothing is assumed about de-duplication: a repeated create after an unknown outcome is not safe.
    expect(platform.connector?.segments).toMatchObject({ createDeduplicates: false });
    expect(platform.connector?.api).toMatchObject({ timeoutMs: 5000, retry: { maxAttempts: 4 } });
  });

  it.each([
    [
      'a misspelt key',
      (p: ReturnType<typeof seedPlatform>) => Object.assign(p.connector.api, { baseURL: 'x' }),
      'connector.api',
    ],
    [
      'an unknown auth type',
      (p: ReturnType<typeof seedPlatform>) => Object.assign(p.connector.api, { auth: { type: 'basik' } }),
      'connector.api.auth.type',
    ],
    [
      'a plain-http partner',
      (p: ReturnType<typeof seedPlatform>) =>
        Object.assign(p.connector.api, { baseUrl: 'http://api.third-party.com' }),
      'connector.api.baseUrl',
    ],
    [
      'a batch size of 0',
      (p: ReturnType<typeof seedPlatform>) => Object.assign(p.connector.population, { batchSize: 0 }),
      'connector.population.batchSize',
    ],
    [
      'a bad id path',
      (p: ReturnType<typeof seedPlatform>) => Object.assign(p.connector.segments, { idPath: 'segment id' }),
      'connector.segments.idPath',
    ],
    [
      'a relative create path',
      (p: ReturnType<typeof seedPlatform>) =>
        Object.assign(p.connector.segments.create, { path: 'v1/segment' }),
      'connector.segments.create.path',
    ],
    [
      'a header with a line break',
      (p: ReturnType<typeof seedPlatform>) =>
        Object.assign(p.connector.segments.create, { headers: { 'x-a': 'b\r\nc' } }),
      'connector.segments.create.headers.x-a',
    ],
    [
      'a batch mode without its add call',
      (p: ReturnType<typeof seedPlatform>) => Object.assign(p.connector, { population: { mode: 'batch' } }),
      'connector.population.add',
    ],
    [
      'file mode without file settings',
      (p: ReturnType<typeof seedPlatform>) => Object.assign(p.connector, { population: { mode: 'file' } }),
      'connector.files',
    ],
    [
      'alreadyExists without a lookup',
      (p: ReturnType<typeof seedPlatform>) =>
        Object.assign(p.connector.segments, { alreadyExists: { statuses: [409] } }),
      'connector.segments.lookupByName',
    ],
  ])('refuses %s and names the field', (_, mutate, field) => {
    const platform = seedPlatform();
    mutate(platform);
    const problems = problemsOf(platform);
    expect(
      problems.some((problem) => problem.startsWith(field)),
      problems.join('\n'),
    ).toBe(true);
  });

  it('validates every shipped platform file and environment', () => {
    for (const directory of readdirSync(join(ROOT, 'platforms'))) {
      for (const file of readdirSync(join(ROOT, 'platforms', directory))) {
        expect(() => loadPlatformFile(join(ROOT, 'platforms', directory, file)), file).not.toThrow();
      }
    }
    for (const name of ['local', 'dev']) {
      const environment = loadEnvironmentFile(join(ROOT, 'environments', `${name}.json`));
      expect(environment.platforms.length).toBeGreaterThan(0);
    }
    expect(() => loadEnvironmentFile(join(ROOT, 'environments', 'prod.json'))).not.toThrow();
  });
});

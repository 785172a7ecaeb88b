import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../../lib/repo.ts';
import { DEFAULT_SECRETS_PATH } from '../../local/stack.ts';

/**
 * The local environment with two API platforms of the reference partner, for population tests and
 * the bench: 99999 in batch mode (config/platforms/local, with `overrides` of its population
 * settings) and 77777 in single mode (the seed's "no batch"), with its API credentials.
 */

export const BATCH_PLATFORM = 99999;
export const SINGLE_PLATFORM = 77777;

const SINGLE_PLATFORM_FILE = {
  id: SINGLE_PLATFORM,
  name: 'Reference partner, no batch',
  sync: { urlTemplate: 'http://127.0.0.1:3001/sync?out={out}' },
  connector: {
    api: { baseUrl: 'http://127.0.0.1:3001', auth: { type: 'basic' } },
    segments: {
      creation: 'api',
      nameTemplate: 'single {audienceName}',
      create: { method: 'POST', path: '/v1/segment?title={name}' },
      idPath: 'segment_id',
    },
    population: {
      mode: 'single',
      concurrency: 2,
      add: { method: 'POST', path: '/v1/segment?id={segmentId}&userid={userId}' },
      removal: {
        via: 'call',
        request: { method: 'DELETE', path: '/v1/segment?id={segmentId}&userid={userId}' },
      },
    },
  },
};

/** Writes the environment under `dir`; returns the options startLocalStack takes for it. */
export function writePopulationConfig(
  dir: string,
  batchPopulation: Record<string, unknown> = {},
): { configPath: string; secretsPath: string } {
  mkdirSync(join(dir, 'environments'), { recursive: true });
  cpSync(join(REPO_ROOT, 'config', 'environments', 'local.json'), join(dir, 'environments', 'local.json'));
  cpSync(join(REPO_ROOT, 'config', 'platforms', 'local'), join(dir, 'platforms', 'local'), {
    recursive: true,
  });
  const batchFile = join(dir, 'platforms', 'local', '01-99999-reference-partner.json');
  const batch = JSON.parse(readFileSync(batchFile, 'utf8'));
  batch.connector.population = { ...batch.connector.population, ...batchPopulation };
  writeFileSync(batchFile, JSON.stringify(batch));
  writeFileSync(
    join(dir, 'platforms', 'local', '03-77777-single.json'),
    JSON.stringify(SINGLE_PLATFORM_FILE),
  );
  const secrets = JSON.parse(readFileSync(DEFAULT_SECRETS_PATH, 'utf8')) as Record<string, unknown>;
  secrets[`dmp-activation/local/platforms/${SINGLE_PLATFORM}/api`] = { username: 'foo', password: 'bar' };
  writeFileSync(join(dir, 'secrets.json'), JSON.stringify(secrets));
  return { configPath: join(dir, 'environments', 'local.json'), secretsPath: join(dir, 'secrets.json') };
}

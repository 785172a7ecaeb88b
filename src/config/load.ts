import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { formatIssues } from './issues.ts';
import { type EnvironmentConfig, EnvironmentSchema, type PlatformConfig, PlatformSchema } from './schema.ts';

/** A configuration that failed validation; the message names the source and every bad field. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`${source}: invalid configuration\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
  }
}

/** Validates an already-parsed environment document. */
export function parseEnvironment(document: unknown, source: string): EnvironmentConfig {
  const result = EnvironmentSchema.safeParse(document);
  if (!result.success) throw new ConfigError(source, formatIssues(result.error));
  return result.data;
}

function readJsonFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(path, [`cannot read file: ${(error as Error).message}`]);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ConfigError(path, [`not valid JSON: ${(error as Error).message}`]);
  }
}

/** Reads and validates one platform definition file (`dmp platforms validate <file>`). */
export function loadPlatformFile(path: string): PlatformConfig {
  return parsePlatform(readJsonFile(path), path);
}

export function parsePlatform(document: unknown, source: string): PlatformConfig {
  const result = PlatformSchema.safeParse(document);
  if (!result.success) throw new ConfigError(source, formatIssues(result.error));
  return result.data;
}

/** Where the platform definitions of an environment file live: `config/platforms/<name>/*.json`. */
export function platformDirectoryOf(environmentPath: string): string {
  return join(dirname(environmentPath), '..', 'platforms', basename(environmentPath, '.json'));
}

/**
 * Reads and validates `config/environments/<name>.json` together with its platform files
 * (`config/platforms/<name>/*.json`, one platform each, in file-name order). A bad platform file
 * is reported with its own path and field.
 */
export function loadEnvironmentFile(path: string): EnvironmentConfig {
  const document = readJsonFile(path);
  const directory = platformDirectoryOf(path);
  if (
    existsSync(directory) &&
    typeof document === 'object' &&
    document !== null &&
    !Array.isArray(document)
  ) {
    const files = readdirSync(directory)
      .filter((file) => file.endsWith('.json'))
      .sort();
    const fromFiles = files.map((file) => {
      const platformPath = join(directory, file);
      const raw = readJsonFile(platformPath);
      parsePlatform(raw, platformPath);
      return raw;
    });
    const inline = (document as { platforms?: unknown }).platforms;
    const platforms = [...(Array.isArray(inline) ? inline : []), ...fromFiles];
    return parseEnvironment({ ...document, platforms }, path);
  }
  return parseEnvironment(document, path);
}

export { CONFIG_ENV_VAR } from './embedded.ts';
export { formatIssues } from './issues.ts';

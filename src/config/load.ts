import { readFileSync } from 'node:fs';
import type { z } from 'zod';
import { type EnvironmentConfig, EnvironmentSchema } from './schema.ts';

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

export function formatIssues(error: z.ZodError): string[] {
  return error.issues.map((issue) => {
    const path = issue.path.length === 0 ? '(root)' : issue.path.map(String).join('.');
    return `${path}: ${issue.message}`;
  });
}

/** Validates an already-parsed environment document. */
export function parseEnvironment(document: unknown, source: string): EnvironmentConfig {
  const result = EnvironmentSchema.safeParse(document);
  if (!result.success) throw new ConfigError(source, formatIssues(result.error));
  return result.data;
}

/** Reads and validates `config/environments/<name>.json` (or any path). */
export function loadEnvironmentFile(path: string): EnvironmentConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(path, [`cannot read file: ${(error as Error).message}`]);
  }
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(path, [`not valid JSON: ${(error as Error).message}`]);
  }
  return parseEnvironment(document, path);
}

export const CONFIG_ENV_VAR = 'DMP_CONFIG_JSON';

/**
 * The configuration a Lambda runs with. In AWS it is inlined into the bundle at synth time
 * (esbuild `define` of `process.env.DMP_CONFIG_JSON`), so it needs no file read and no 4 KB
 * environment-variable budget; the local stack sets the same variable. Validated at cold start.
 */
export function loadRuntimeEnvironment(env?: NodeJS.ProcessEnv): EnvironmentConfig {
  // Spelled out literally: esbuild's `define` replaces only this exact expression.
  const json = env ? env[CONFIG_ENV_VAR] : process.env.DMP_CONFIG_JSON;
  if (!json) throw new ConfigError(CONFIG_ENV_VAR, ['is not set']);
  let document: unknown;
  try {
    document = JSON.parse(json);
  } catch (error) {
    throw new ConfigError(CONFIG_ENV_VAR, [`not valid JSON: ${(error as Error).message}`]);
  }
  return parseEnvironment(document, CONFIG_ENV_VAR);
}

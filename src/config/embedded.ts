import type { EnvironmentConfig } from './schema.ts';

/** The variable (and esbuild `define`) that carries the configuration into a function. */
export const CONFIG_ENV_VAR = 'DMP_CONFIG_JSON';

/**
 * The configuration embedded in a function, read without running the zod schemas again: every
 * Lambda's cold start would otherwise carry zod's full build and every configuration schema (a
 * third of a bundle; `npm run bench -- --only cold`). It is validated before it is embedded:
 * `cdk synth` parses the environment with those schemas and inlines the parsed result
 * (lib/constructs/service-function.ts), and the local stack sets the same parsed result. Only a
 * structural check remains here, so that a wrong variable fails at cold start with a clear error.
 * Untrusted inputs (event bodies, partner answers, secrets) are still validated at runtime.
 */
export function embeddedEnvironment(env?: NodeJS.ProcessEnv): EnvironmentConfig {
  // Spelled out literally: esbuild's `define` replaces only this exact expression.
  const json = env ? env[CONFIG_ENV_VAR] : process.env.DMP_CONFIG_JSON;
  if (!json) throw new Error(`${CONFIG_ENV_VAR} is not set`);
  let document: unknown;
  try {
    document = JSON.parse(json);
  } catch (error) {
    throw new Error(`${CONFIG_ENV_VAR} is not valid JSON: ${(error as Error).message}`);
  }
  const candidate = document as Partial<EnvironmentConfig> | null;
  if (
    typeof candidate !== 'object' ||
    candidate === null ||
    typeof candidate.name !== 'string' ||
    !Array.isArray(candidate.platforms) ||
    candidate.platforms.some((platform) => typeof platform?.id !== 'number')
  )
    throw new Error(`${CONFIG_ENV_VAR} is not a validated environment configuration (name, platforms[].id)`);
  return candidate as EnvironmentConfig;
}

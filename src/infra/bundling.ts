import { type FunctionDefinition, runtimeOf } from './resources.ts';

/**
 * How every Lambda is bundled, in one place: lib/constructs/service-function.ts hands these to
 * the CDK's NodejsFunction (esbuild CLI flags) and bench/cold-start.ts to esbuild's API, so that
 * the bundle the benchmark measures is the bundle that is deployed.
 */

/**
 * ESM output still meets CommonJS dependencies that call `require` (some AWS SDK and Powertools
 * internals) or read `__dirname` / `__filename` when they load (ssh2's WebAssembly poly1305):
 * give the module scope a real `require` and both names.
 */
export const ESM_REQUIRE_BANNER =
  "import { createRequire as __dmpCreateRequire } from 'node:module'; import { fileURLToPath as __dmpFileURLToPath } from 'node:url'; import { dirname as __dmpDirname } from 'node:path'; const require = __dmpCreateRequire(import.meta.url); const __filename = __dmpFileURLToPath(import.meta.url); const __dirname = __dmpDirname(__filename);";

export const BUNDLE_TARGET = 'node24';
/** `module` first lets esbuild tree-shake the packages that ship ES modules (the SDK's dist-es). */
export const BUNDLE_MAIN_FIELDS = ['module', 'main'] as const;

/** The module that replaces the SDK's default credential chain (`runtime.credentials: 'environment'`). */
export const ENVIRONMENT_CREDENTIALS_MODULE = './src/aws/environment-credentials.ts';

/**
 * Module substitutions (esbuild `alias`, paths relative to the repository root, where esbuild
 * runs) for one function's bundle.
 */
export function bundleAliases(definition: FunctionDefinition): Record<string, string> {
  return runtimeOf(definition).credentials === 'environment'
    ? { '@aws-sdk/credential-provider-node': ENVIRONMENT_CREDENTIALS_MODULE }
    : {};
}

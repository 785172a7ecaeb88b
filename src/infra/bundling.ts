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

/** The module that replaces the SDK's default credential chain in every function's bundle. */
export const ENVIRONMENT_CREDENTIALS_MODULE = './src/aws/environment-credentials.ts';

/**
 * Module substitutions of every function's bundle (esbuild `alias`, paths relative to the
 * repository root, where esbuild runs). The SDK clients read the credentials Lambda puts in the
 * environment and nothing else: the default chain's other links (SSO, shared files, web identity,
 * container and instance metadata) and the STS/SSO clients they load are never reached in Lambda.
 */
export const BUNDLE_ALIASES: Readonly<Record<string, string>> = {
  '@aws-sdk/credential-provider-node': ENVIRONMENT_CREDENTIALS_MODULE,
};

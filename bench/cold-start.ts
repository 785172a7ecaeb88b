import { mkdtemp, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type BuildOptions, build, type Metafile } from 'esbuild';
import { CONFIG_ENV_VAR } from '../src/config/load.ts';
import {
  BUNDLE_ALIASES,
  BUNDLE_MAIN_FIELDS,
  BUNDLE_TARGET,
  ESM_REQUIRE_BANNER,
} from '../src/infra/bundling.ts';
import { populationEnvironment } from '../src/infra/population.ts';
import {
  commonEnvironment,
  FUNCTIONS,
  type FunctionDefinition,
  type FunctionKey,
} from '../src/infra/resources.ts';
import { localConfig, REPO_ROOT } from './fixtures.ts';
import type { BenchModule, Figure } from './registry.ts';
import { median, quantile, runCaptured } from './runner.ts';

/**
 * Benchmark 4: cold start. Every Lambda of FUNCTIONS is bundled exactly as
 * lib/constructs/service-function.ts has the CDK's NodejsFunction bundle it (esbuild CLI flags
 * spelled as build options), next to a baseline bundle holding only the AWS SDK clients found in
 * that handler's bundle: the floor any function using those clients pays. Fresh node processes then
 * time `import()` of each bundle, alternately.
 */

/** What `NodejsFunction` passes to esbuild for this project's functions (bundling props there). */
export function lambdaBuildOptions(outfile: string): BuildOptions {
  // As the construct does: the validated config as a JS string literal (JSON inside a JSON string).
  const configLiteral = JSON.stringify(JSON.stringify(localConfig()));
  return {
    absWorkingDir: REPO_ROOT,
    bundle: true,
    target: BUNDLE_TARGET,
    platform: 'node',
    format: 'esm',
    outfile,
    minify: true,
    sourcemap: false,
    treeShaking: true,
    mainFields: [...BUNDLE_MAIN_FIELDS],
    banner: { js: ESM_REQUIRE_BANNER },
    define: { [`process.env.${CONFIG_ENV_VAR}`]: configLiteral },
    metafile: true,
    logLevel: 'silent',
  };
}

export interface Bundle {
  readonly file: string;
  readonly bytes: number;
  readonly metafile: Metafile;
}

export async function bundle(options: BuildOptions): Promise<Bundle> {
  const result = await build(options);
  const file = options.outfile as string;
  return { file, bytes: (await stat(file)).size, metafile: result.metafile as Metafile };
}

/** Bytes of the output by package (node_modules name, or the project's top-level folder). */
export function bytesByPackage(bundleResult: Bundle): { name: string; bytes: number }[] {
  const totals = new Map<string, number>();
  for (const output of Object.values(bundleResult.metafile.outputs)) {
    for (const [path, input] of Object.entries(output.inputs)) {
      const parts = path.split('/');
      const at = parts.lastIndexOf('node_modules');
      let name: string;
      if (at >= 0) {
        const first = parts[at + 1] ?? '?';
        name = first.startsWith('@') ? `${first}/${parts[at + 2] ?? '?'}` : first;
      } else {
        name = `(project) ${parts[0] ?? path}/`;
      }
      totals.set(name, (totals.get(name) ?? 0) + input.bytesInOutput);
    }
  }
  return [...totals].map(([name, bytes]) => ({ name, bytes })).sort((a, b) => b.bytes - a.bytes);
}

/** The SDK v3 client class each client package exports (the baseline constructs one of each). */
const SDK_CLIENT_CLASSES: Record<string, string> = {
  '@aws-sdk/client-dynamodb': 'DynamoDBClient',
  '@aws-sdk/client-secrets-manager': 'SecretsManagerClient',
  '@aws-sdk/client-sqs': 'SQSClient',
  '@aws-sdk/client-s3': 'S3Client',
  '@aws-sdk/client-cloudformation': 'CloudFormationClient',
  '@aws-sdk/client-scheduler': 'SchedulerClient',
};

/** The `@aws-sdk/client-*` packages a bundle contains: what the function really uses of the SDK. */
export function sdkClientsIn(bundleResult: Bundle): string[] {
  return bytesByPackage(bundleResult)
    .map(({ name }) => name)
    .filter((name) => name.startsWith('@aws-sdk/client-'))
    .sort();
}

/**
 * Clients of other protocols that a function exists to use, as the SDK clients are for AWS: the
 * SFTP exporter's baseline holds `ssh2-sftp-client` (on ssh2) besides its SDK clients. Each is a
 * package whose default export is the client class.
 */
const PROTOCOL_CLIENTS = new Set(['ssh2-sftp-client']);

/** The protocol clients (PROTOCOL_CLIENTS) a bundle contains. */
export function protocolClientsIn(bundleResult: Bundle): string[] {
  return bytesByPackage(bundleResult)
    .map(({ name }) => name)
    .filter((name) => PROTOCOL_CLIENTS.has(name))
    .sort();
}

/**
 * A module importing only those clients and constructing one of each, as a handler does at init
 * (SDK clients, then any protocol client of PROTOCOL_CLIENTS).
 */
export function sdkOnlySource(clients: readonly string[], protocolClients: readonly string[] = []): string {
  const lines = clients.map((client, index) => {
    const className = SDK_CLIENT_CLASSES[client];
    if (!className)
      throw new Error(`bench/cold-start.ts: add the client class of ${client} to SDK_CLIENT_CLASSES`);
    return `import { ${className} as Client${index} } from '${client}';`;
  });
  const constructed = clients.map((_, index) => `new Client${index}({})`);
  protocolClients.forEach((name, index) => {
    lines.push(`import Protocol${index} from '${name}';`);
    constructed.push(`new Protocol${index}()`);
  });
  return `${lines.join('\n')}\nexport const client = [${constructed.join(', ')}];\n`;
}

const IMPORT_SCRIPT = `
const { performance } = await import('node:perf_hooks');
const started = performance.now();
const module = await import(process.env.BENCH_IMPORT_URL);
const elapsed = performance.now() - started;
if (!module.handler && !module.client) throw new Error('bundle exports nothing');
process.stdout.write(JSON.stringify({ importMs: elapsed }));
`;

/** One fresh node process importing the bundle, with the environment Lambda would give the function. */
async function timeImport(file: string, definition: FunctionDefinition): Promise<number> {
  const env: Record<string, string> = {
    PATH: process.env['PATH'] ?? '',
    TZ: 'UTC',
    AWS_REGION: 'eu-west-1',
    AWS_LAMBDA_FUNCTION_NAME: `DmpActivation-bench-${definition.id}`,
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(definition.memorySizeMb),
    ...Object.fromEntries(definition.tables.map(({ table }) => [table.envVar, `bench-${table.localName}`])),
    ...commonEnvironment(definition, 'local'),
    ...populationEnvironment('local'),
    BENCH_IMPORT_URL: pathToFileURL(file).href,
  };
  const { code, out, err } = await runCaptured(
    process.execPath,
    ['--input-type=module', '--eval', IMPORT_SCRIPT],
    {
      env,
    },
  );
  if (code !== 0) throw new Error(`import of ${file} failed (exit ${code}): ${err.trim()}`);
  return (JSON.parse(out) as { importMs: number }).importMs;
}

export interface ColdStartOptions {
  readonly runs: number;
  /** Also measure the what-if variants (VARIANTS) for every function: slower, full runs only. */
  readonly variants: boolean;
}

/** One handler bundle against its SDK-only baseline, built the same way. */
export interface ImportComparison {
  readonly ratio: number;
  readonly ratioQ1: number;
  readonly ratioQ3: number;
  readonly handlerImportMs: number;
  readonly baselineImportMs: number;
  readonly handlerBytes: number;
  readonly baselineBytes: number;
}

export interface FunctionColdStart extends ImportComparison {
  readonly key: FunctionKey;
  /** The SDK (and protocol) clients found in the handler bundle, which the baseline imports alone. */
  readonly sdkClients: readonly string[];
  readonly topPackages: readonly { name: string; bytes: number }[];
  readonly variants: readonly ({ readonly name: string } & ImportComparison)[];
}

export interface ColdStartResult {
  readonly functions: readonly FunctionColdStart[];
  /** `import { z }` vs `import * as z` from zod, one z.object, same build options. */
  readonly zodNamedBytes: number;
  readonly zodNamespaceBytes: number;
}

/**
 * What-if builds that explain the deployed bundle's ratio: each changes the build options of the
 * handler (and of the baseline where the change applies to any function).
 */
interface Variant {
  readonly name: string;
  readonly handler: (options: BuildOptions) => BuildOptions;
  readonly baseline: (options: BuildOptions) => BuildOptions;
}

const same = (options: BuildOptions) => options;

const VARIANTS: readonly Variant[] = [
  {
    // Lambda's Node.js 24 runtime ships AWS SDK v3: left external, the SDK loads from node_modules
    // (here the project's, there the runtime's, at whatever version the runtime carries).
    name: 'AWS SDK external (as the runtime provides it), both bundles',
    handler: (options) => ({ ...options, external: ['@aws-sdk/*', '@smithy/*'] }),
    baseline: (options) => ({ ...options, external: ['@aws-sdk/*', '@smithy/*'] }),
  },
  {
    // `module` first lets esbuild shake the packages that ship ES modules (the SDK's dist-es).
    name: 'mainFields main,module (CommonJS entry points first), both bundles',
    handler: (options) => ({ ...options, mainFields: ['main', 'module'] }),
    baseline: (options) => ({ ...options, mainFields: ['main', 'module'] }),
  },
  {
    name: 'CommonJS output instead of ESM, both bundles',
    handler: (options) => ({
      ...options,
      format: 'cjs',
      banner: {},
      outfile: String(options.outfile).replace(/\.mjs$/, '.cjs'),
    }),
    baseline: (options) => ({
      ...options,
      format: 'cjs',
      banner: {},
      outfile: String(options.outfile).replace(/\.mjs$/, '.cjs'),
    }),
  },
  {
    // The baseline with the credential provider every function is bundled with: what the
    // handler weighs beyond its clients, credentials set aside.
    name: 'both bundles with the environment-only credential provider',
    handler: same,
    baseline: (options) => ({ ...options, alias: { ...options.alias, ...BUNDLE_ALIASES } }),
  },
];

/** Interleaved fresh-process imports of two bundles: one discarded run each, then alternating. */
async function compareImports(
  handler: Bundle,
  baseline: Bundle,
  definition: FunctionDefinition,
  runs: number,
): Promise<ImportComparison> {
  await timeImport(baseline.file, definition);
  await timeImport(handler.file, definition);
  const ratios: number[] = [];
  const handlerMs: number[] = [];
  const baselineMs: number[] = [];
  for (let run = 0; run < runs; run++) {
    let h: number;
    let b: number;
    if (run % 2 === 0) {
      b = await timeImport(baseline.file, definition);
      h = await timeImport(handler.file, definition);
    } else {
      h = await timeImport(handler.file, definition);
      b = await timeImport(baseline.file, definition);
    }
    handlerMs.push(h);
    baselineMs.push(b);
    ratios.push(h / b);
  }
  return {
    ratio: median(ratios),
    ratioQ1: quantile(ratios, 0.25),
    ratioQ3: quantile(ratios, 0.75),
    handlerImportMs: median(handlerMs),
    baselineImportMs: median(baselineMs),
    handlerBytes: handler.bytes,
    baselineBytes: baseline.bytes,
  };
}

export async function runColdStart(options: ColdStartOptions): Promise<ColdStartResult> {
  // Inside the repository, so that bundles with external packages resolve node_modules.
  const dir = await mkdtemp(join(REPO_ROOT, '.bench-tmp-'));
  try {
    const functions: FunctionColdStart[] = [];
    for (const [key, definition] of Object.entries(FUNCTIONS) as [FunctionKey, FunctionDefinition][]) {
      const build = async (
        variant: string,
        adjust: (options: BuildOptions) => BuildOptions,
        source?: string,
      ) => {
        const base = lambdaBuildOptions(join(dir, key, variant, source ? 'baseline.mjs' : 'handler.mjs'));
        const adjusted = adjust(
          source
            ? {
                ...base,
                stdin: { contents: source, resolveDir: REPO_ROOT, sourcefile: 'baseline.ts', loader: 'ts' },
              }
            : // The function's module substitutions, as the CDK bundles it (src/infra/bundling.ts).
              { ...base, entryPoints: [join(REPO_ROOT, definition.entry)], alias: { ...BUNDLE_ALIASES } },
        );
        // The function's own externals, as the CDK bundles it (ssh2's optional native parts).
        return bundle({
          ...adjusted,
          external: [...(adjusted.external ?? []), ...(definition.bundleExternal ?? [])],
        });
      };
      const handler = await build('deployed', same);
      const sdkClients = sdkClientsIn(handler);
      const protocolClients = protocolClientsIn(handler);
      const baselineSource = sdkOnlySource(sdkClients, protocolClients);
      const baseline = await build('deployed', same, baselineSource);
      const deployed = await compareImports(handler, baseline, definition, options.runs);
      const variants: FunctionColdStart['variants'][number][] = [];
      for (const [index, variant] of (options.variants ? VARIANTS : []).entries()) {
        const variantHandler = await build(`v${index}`, variant.handler);
        const variantBaseline = await build(`v${index}`, variant.baseline, baselineSource);
        variants.push({
          name: variant.name,
          ...(await compareImports(variantHandler, variantBaseline, definition, options.runs)),
        });
      }
      functions.push({
        key,
        ...deployed,
        sdkClients: [...sdkClients, ...protocolClients],
        topPackages: bytesByPackage(handler),
        variants,
      });
    }
    const zod = async (name: string, contents: string) =>
      bundle({
        ...lambdaBuildOptions(join(dir, name, 'index.mjs')),
        stdin: { contents, resolveDir: REPO_ROOT, sourcefile: `${name}.ts`, loader: 'ts' },
      });
    const zodObject = 'export const schema = z.object({ id: z.number(), name: z.string() });\n';
    const zodNamed = await zod('zod-named', `import { z } from 'zod';\n${zodObject}`);
    const zodNamespace = await zod('zod-namespace', `import * as z from 'zod';\n${zodObject}`);
    return {
      functions,
      zodNamedBytes: zodNamed.bytes,
      zodNamespaceBytes: zodNamespace.bytes,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Target of the issue: a bundle costs at most 1.3x what importing its SDK clients alone costs. */
export const BUNDLE_TARGET_RATIO = 1.3;

/** Section 4 of `npm run bench`: every Lambda bundle against a bundle of only its SDK clients. */
export const coldStartBench: BenchModule = {
  id: 'cold',
  describe: 'cold start: import() time and size of each Lambda bundle against its SDK clients alone',
  async run({ quick }) {
    const result = await runColdStart({ runs: quick ? 3 : 9, variants: !quick });
    const figures: Figure[] = [];
    const notes: string[] = [];
    const target = { on: 'ratio', atMost: BUNDLE_TARGET_RATIO } as const;
    for (const fn of result.functions) {
      figures.push(
        {
          name: `4  import() ${fn.key} bundle`,
          value: fn.handlerImportMs,
          unit: 'ms',
          baseline: fn.baselineImportMs,
          ratio: fn.ratio,
          spread: [fn.ratioQ1, fn.ratioQ3],
          target,
        },
        {
          name: `4  size of the ${fn.key} bundle`,
          value: fn.handlerBytes,
          unit: 'B',
          baseline: fn.baselineBytes,
          ratio: fn.handlerBytes / fn.baselineBytes,
          target,
        },
      );
      for (const variant of fn.variants) {
        notes.push(
          `${fn.key}, what if ${variant.name}: ${variant.handlerBytes} B vs ${variant.baselineBytes} B`,
        );
        figures.push({
          name: `4  ${fn.key}, what if: ${variant.name}`,
          value: variant.handlerImportMs,
          unit: 'ms',
          baseline: variant.baselineImportMs,
          ratio: variant.ratio,
          spread: [variant.ratioQ1, variant.ratioQ3],
        });
      }
      notes.push(
        `${fn.key}: baseline = ${fn.sdkClients.join(' + ')} alone (${fn.baselineBytes} B); handler ${fn.handlerBytes} B, by package (esbuild metafile, bytes in output): ${fn.topPackages
          .slice(0, 8)
          .map(({ name, bytes }) => `${name} ${((bytes / fn.handlerBytes) * 100).toFixed(1)}%`)
          .join(', ')}`,
      );
    }
    figures.push({
      name: '   zod, one z.object: named / namespace import',
      value: result.zodNamedBytes,
      unit: 'B',
      baseline: result.zodNamespaceBytes,
      ratio: result.zodNamedBytes / result.zodNamespaceBytes,
    });
    return {
      id: 'cold',
      title:
        '4. cold start in fresh node processes: each Lambda bundle against a bundle of only the SDK clients it uses (and, for the SFTP exporter, the SFTP client)',
      figures,
      notes,
    };
  },
};

import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type BuildOptions, build, type Metafile } from 'esbuild';
import { CONFIG_ENV_VAR } from '../src/config/load.ts';
import {
  commonEnvironment,
  FUNCTIONS,
  type FunctionDefinition,
  type FunctionKey,
} from '../src/infra/resources.ts';
import { localConfig, REPO_ROOT } from './fixtures.ts';
import type { BenchModule, Figure } from './registry.ts';
import { median, quantile } from './runner.ts';

/**
 * Benchmark 4: cold start. Every Lambda of FUNCTIONS is bundled exactly as
 * lib/constructs/service-function.ts has the CDK's NodejsFunction bundle it (esbuild CLI flags
 * spelled as build options), next to a baseline bundle holding only the AWS SDK clients found in
 * that handler's bundle: the floor any function using those clients pays. Fresh node processes then
 * time `import()` of each bundle, alternately.
 */

/** The banner of lib/constructs/service-function.ts (read from there; this copy if it moved). */
const FALLBACK_BANNER =
  "import { createRequire as __dmpCreateRequire } from 'node:module'; const require = __dmpCreateRequire(import.meta.url);";

async function esmRequireBanner(): Promise<{ banner: string; fromSource: boolean }> {
  const source = await readFile(join(REPO_ROOT, 'lib', 'constructs', 'service-function.ts'), 'utf8');
  const match = /const ESM_REQUIRE_BANNER =\s*"((?:[^"\\]|\\.)*)"/.exec(source);
  return match?.[1]
    ? { banner: JSON.parse(`"${match[1]}"`) as string, fromSource: true }
    : { banner: FALLBACK_BANNER, fromSource: false };
}

/** What `NodejsFunction` passes to esbuild for this project's functions (bundling props there). */
export async function lambdaBuildOptions(outfile: string): Promise<BuildOptions> {
  const { banner } = await esmRequireBanner();
  // As the construct does: the validated config as a JS string literal (JSON inside a JSON string).
  const configLiteral = JSON.stringify(JSON.stringify(localConfig()));
  return {
    absWorkingDir: REPO_ROOT,
    bundle: true,
    target: 'node24',
    platform: 'node',
    format: 'esm',
    outfile,
    minify: true,
    sourcemap: false,
    treeShaking: true,
    mainFields: ['module', 'main'],
    banner: { js: banner },
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

/** A module importing only those clients and constructing one of each, as a handler does at init. */
export function sdkOnlySource(clients: readonly string[]): string {
  const lines = clients.map((client, index) => {
    const className = SDK_CLIENT_CLASSES[client];
    if (!className)
      throw new Error(`bench/cold-start.ts: add the client class of ${client} to SDK_CLIENT_CLASSES`);
    return `import { ${className} as Client${index} } from '${client}';`;
  });
  const clientsList = clients.map((_, index) => `new Client${index}({})`).join(', ');
  return `${lines.join('\n')}\nexport const client = [${clientsList}];\n`;
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
function timeImport(file: string, definition: FunctionDefinition): Promise<number> {
  const env: Record<string, string> = {
    PATH: process.env['PATH'] ?? '',
    TZ: 'UTC',
    AWS_REGION: 'eu-west-1',
    AWS_LAMBDA_FUNCTION_NAME: `DmpActivation-bench-${definition.id}`,
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(definition.memorySizeMb),
    ...Object.fromEntries(definition.tables.map(({ table }) => [table.envVar, `bench-${table.localName}`])),
    ...commonEnvironment(definition, 'local'),
    BENCH_IMPORT_URL: pathToFileURL(file).href,
  };
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '--eval', IMPORT_SCRIPT], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
    });
    child.stderr.on('data', (chunk: Buffer) => {
      err += chunk.toString('utf8');
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) {
        reject(new Error(`import of ${file} failed (exit ${code}): ${err.trim()}`));
        return;
      }
      resolve((JSON.parse(out) as { importMs: number }).importMs);
    });
  });
}

export interface ColdStartOptions {
  readonly runs: number;
}

export interface FunctionColdStart {
  readonly key: FunctionKey;
  readonly ratio: number;
  readonly ratioQ1: number;
  readonly ratioQ3: number;
  readonly handlerImportMs: number;
  readonly baselineImportMs: number;
  readonly handlerBytes: number;
  readonly baselineBytes: number;
  /** The SDK clients found in the handler bundle, which the baseline imports alone. */
  readonly sdkClients: readonly string[];
  readonly topPackages: readonly { name: string; bytes: number }[];
}

export interface ColdStartResult {
  readonly functions: readonly FunctionColdStart[];
  readonly bannerFromSource: boolean;
  /** `import { z }` vs `import * as z` from zod, one z.object, same build options. */
  readonly zodNamedBytes: number;
  readonly zodNamespaceBytes: number;
}

/** Interleaved fresh-process imports of two bundles: one discarded run each, then alternating. */
async function compareImports(
  handlerFile: string,
  baselineFile: string,
  definition: FunctionDefinition,
  runs: number,
): Promise<{ ratios: number[]; handlerMs: number[]; baselineMs: number[] }> {
  await timeImport(baselineFile, definition);
  await timeImport(handlerFile, definition);
  const ratios: number[] = [];
  const handlerMs: number[] = [];
  const baselineMs: number[] = [];
  for (let run = 0; run < runs; run++) {
    let h: number;
    let b: number;
    if (run % 2 === 0) {
      b = await timeImport(baselineFile, definition);
      h = await timeImport(handlerFile, definition);
    } else {
      h = await timeImport(handlerFile, definition);
      b = await timeImport(baselineFile, definition);
    }
    handlerMs.push(h);
    baselineMs.push(b);
    ratios.push(h / b);
  }
  return { ratios, handlerMs, baselineMs };
}

export async function runColdStart(options: ColdStartOptions): Promise<ColdStartResult> {
  const dir = await mkdtemp(join(tmpdir(), 'dmp-bench-'));
  try {
    const fromStdin = async (name: string, contents: string) =>
      bundle({
        ...(await lambdaBuildOptions(join(dir, name, 'index.mjs'))),
        stdin: { contents, resolveDir: REPO_ROOT, sourcefile: `${name}.ts`, loader: 'ts' },
      });
    const functions: FunctionColdStart[] = [];
    for (const [key, definition] of Object.entries(FUNCTIONS) as [FunctionKey, FunctionDefinition][]) {
      const handler = await bundle({
        ...(await lambdaBuildOptions(join(dir, key, 'index.mjs'))),
        entryPoints: [join(REPO_ROOT, definition.entry)],
      });
      const sdkClients = sdkClientsIn(handler);
      const baseline = await fromStdin(`${key}-sdk-only`, sdkOnlySource(sdkClients));
      const { ratios, handlerMs, baselineMs } = await compareImports(
        handler.file,
        baseline.file,
        definition,
        options.runs,
      );
      functions.push({
        key,
        ratio: median(ratios),
        ratioQ1: quantile(ratios, 0.25),
        ratioQ3: quantile(ratios, 0.75),
        handlerImportMs: median(handlerMs),
        baselineImportMs: median(baselineMs),
        handlerBytes: handler.bytes,
        baselineBytes: baseline.bytes,
        sdkClients,
        topPackages: bytesByPackage(handler),
      });
    }
    const zodObject = 'export const schema = z.object({ id: z.number(), name: z.string() });\n';
    const zodNamed = await fromStdin('zod-named', `import { z } from 'zod';\n${zodObject}`);
    const zodNamespace = await fromStdin('zod-namespace', `import * as z from 'zod';\n${zodObject}`);
    return {
      functions,
      bannerFromSource: (await esmRequireBanner()).fromSource,
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
    const result = await runColdStart({ runs: quick ? 3 : 9 });
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
    if (!result.bannerFromSource) {
      notes.push('ESM_REQUIRE_BANNER not found in lib/constructs/service-function.ts; the copy was used');
    }
    return {
      id: 'cold',
      title:
        '4. cold start in fresh node processes: each Lambda bundle against a bundle of only the SDK clients it uses',
      figures,
      notes,
    };
  },
};

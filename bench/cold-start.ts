import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type BuildOptions, build, type Metafile } from 'esbuild';
import { CONFIG_ENV_VAR } from '../src/config/load.ts';
import { commonEnvironment, FUNCTIONS, MAPPING_TABLE } from '../src/infra/resources.ts';
import { localConfig, REPO_ROOT } from './fixtures.ts';
import { median, quantile } from './runner.ts';

/**
 * Benchmark 4: cold start. The user-sync handler is bundled exactly as lib/constructs/service-function.ts
 * has the CDK's NodejsFunction bundle it (esbuild CLI flags spelled as build options), next to a
 * baseline bundle holding only the DynamoDB client the handler needs anyway. Fresh node processes
 * then time `import()` of each bundle, alternately.
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
async function lambdaBuildOptions(outfile: string): Promise<BuildOptions> {
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

async function bundle(options: BuildOptions): Promise<Bundle> {
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

const IMPORT_SCRIPT = `
const { performance } = await import('node:perf_hooks');
const started = performance.now();
const module = await import(process.env.BENCH_IMPORT_URL);
const elapsed = performance.now() - started;
if (!module.handler && !module.client) throw new Error('bundle exports nothing');
process.stdout.write(JSON.stringify({ importMs: elapsed }));
`;

/** One fresh node process importing the bundle; the environment Lambda would give the function. */
function timeImport(file: string): Promise<number> {
  const definition = FUNCTIONS.userSync;
  const env: Record<string, string> = {
    PATH: process.env['PATH'] ?? '',
    TZ: 'UTC',
    AWS_REGION: 'eu-west-1',
    AWS_LAMBDA_FUNCTION_NAME: 'DmpActivation-bench-UserSyncFunction',
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(definition.memorySizeMb),
    [MAPPING_TABLE.envVar]: 'bench-mappings',
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

export interface ColdStartResult {
  readonly ratio: number;
  readonly ratioQ1: number;
  readonly ratioQ3: number;
  readonly handlerImportMs: number;
  readonly baselineImportMs: number;
  readonly handlerBytes: number;
  readonly baselineBytes: number;
  readonly bannerFromSource: boolean;
  readonly topPackages: readonly { name: string; bytes: number }[];
  /** `import { z }` vs `import * as z` from zod, one z.object, same build options. */
  readonly zodNamedBytes: number;
  readonly zodNamespaceBytes: number;
}

export async function runColdStart(options: ColdStartOptions): Promise<ColdStartResult> {
  const dir = await mkdtemp(join(tmpdir(), 'dmp-bench-'));
  try {
    const handlerOptions = await lambdaBuildOptions(join(dir, 'user-sync', 'index.mjs'));
    const handler = await bundle({
      ...handlerOptions,
      entryPoints: [join(REPO_ROOT, FUNCTIONS.userSync.entry)],
    });
    const fromStdin = async (name: string, contents: string) =>
      bundle({
        ...(await lambdaBuildOptions(join(dir, name, 'index.mjs'))),
        stdin: { contents, resolveDir: REPO_ROOT, sourcefile: `${name}.ts`, loader: 'ts' },
      });
    const baseline = await fromStdin(
      'baseline',
      "import { DynamoDBClient } from '@aws-sdk/client-dynamodb';\nexport const client = new DynamoDBClient({});\n",
    );
    const zodObject = 'export const schema = z.object({ id: z.number(), name: z.string() });\n';
    const zodNamed = await fromStdin('zod-named', `import { z } from 'zod';\n${zodObject}`);
    const zodNamespace = await fromStdin('zod-namespace', `import * as z from 'zod';\n${zodObject}`);

    // One discarded run of each (file cache), then alternate which bundle goes first.
    await timeImport(baseline.file);
    await timeImport(handler.file);
    const ratios: number[] = [];
    const handlerMs: number[] = [];
    const baselineMs: number[] = [];
    for (let run = 0; run < options.runs; run++) {
      let h: number;
      let b: number;
      if (run % 2 === 0) {
        b = await timeImport(baseline.file);
        h = await timeImport(handler.file);
      } else {
        h = await timeImport(handler.file);
        b = await timeImport(baseline.file);
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
      bannerFromSource: (await esmRequireBanner()).fromSource,
      topPackages: bytesByPackage(handler),
      zodNamedBytes: zodNamed.bytes,
      zodNamespaceBytes: zodNamespace.bytes,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

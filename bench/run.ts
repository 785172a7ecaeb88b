import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, platform, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { coldStartBench } from './cold-start.ts';
import { costBench, scalingBench } from './cost/bench.ts';
import { domainBench } from './domain.ts';
import { filesBench } from './files.ts';
import { REPO_ROOT } from './fixtures.ts';
import { httpBench } from './http.ts';
import { populationBench } from './population.ts';
import { type BenchModule, renderMarkdown, renderText, type Section } from './registry.ts';
import { sinkValue } from './runner.ts';
import { syncWorkBench } from './sync-work.ts';

/**
 * `npm run bench [-- --only domain,http,...] [--quick] [--out file]`: every benchmark module of
 * MODULES runs in turn and returns figures (value, baseline measured in the same run, ratio,
 * target); they are printed as one table and, for a full run, written to docs/benchmarks.md.
 * Absolute times are for information: they say more about the machine than about the code.
 * See docs/performance.md.
 */

/** Order matters only for reading: the cost model reuses the sync work measured before it. */
export const MODULES: readonly BenchModule[] = [
  domainBench,
  httpBench,
  syncWorkBench,
  coldStartBench,
  costBench,
  scalingBench,
  filesBench,
  populationBench,
];

export const BENCHMARKS_DOC = join(REPO_ROOT, 'docs', 'benchmarks.md');

interface Args {
  readonly only: ReadonlySet<string>;
  readonly quick: boolean;
  /** Where the markdown goes; undefined: nowhere. */
  readonly out: string | undefined;
  /** Internal: write the one selected module's section there as JSON (see ISOLATED). */
  readonly sectionJson: string | undefined;
}

/**
 * Modules that start their own local stack with the real handlers run in a child process when
 * other modules ran before them: handler modules (and the SDK clients they create at import) are
 * loaded once per process, so a second local stack in the same process would reach the first
 * one's stopped stand-ins and never drain.
 */
const ISOLATED = new Set(['population']);

const USAGE = `usage: npm run bench [-- --only ${MODULES.map((m) => m.id).join(',')}] [--quick] [--out <file>]
  --quick  fewer rounds: a smoke test in seconds (CI runs it); figures are rough
  --out    write the markdown there (default: docs/benchmarks.md for a full run, nowhere otherwise)`;

function parseArgs(argv: readonly string[]): Args {
  const ids = MODULES.map((module) => module.id);
  let only: Set<string> | undefined;
  let quick = false;
  let out: string | undefined;
  let sectionJson: string | undefined;
  const optionValue = (arg: string, name: string, index: number): [string, number] =>
    arg === name ? [argv[index + 1] ?? '', index + 1] : [arg.slice(name.length + 1), index];
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index] ?? '';
    if (arg === '--quick') quick = true;
    else if (arg === '--only' || arg.startsWith('--only=')) {
      const [value, next] = optionValue(arg, '--only', index);
      index = next;
      const names = value.split(',').filter(Boolean);
      const unknown = names.filter((name) => !ids.includes(name));
      if (names.length === 0 || unknown.length > 0)
        throw new Error(`--only takes a comma-separated list of ${ids.join(', ')}\n${USAGE}`);
      only = new Set(names);
    } else if (arg === '--out' || arg.startsWith('--out=')) {
      const [value, next] = optionValue(arg, '--out', index);
      index = next;
      if (!value) throw new Error(`--out needs a file name\n${USAGE}`);
      out = value;
    } else if (arg === '--section-json') {
      sectionJson = argv[index + 1];
      index += 1;
    } else if (arg === '--help' || arg === '-h') {
      console.log(USAGE);
      process.exit(0);
    } else {
      throw new Error(`unknown argument ${arg}\n${USAGE}`);
    }
  }
  // Only a full run describes the project: a partial or quick one must not overwrite the document.
  const full = only === undefined && !quick;
  return { only: only ?? new Set(ids), quick, out: out ?? (full ? BENCHMARKS_DOC : undefined), sectionJson };
}

/** Other processes compete for the CPUs; ratios absorb most of it, but a reader should know. */
const load = () =>
  loadavg()
    .map((value) => value.toFixed(2))
    .join(' ');

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const started = performance.now();
  const loadStart = load();
  const date = new Date().toISOString();
  console.log(
    `dmp-activation bench: node ${process.version}, ${availableParallelism()} cpu(s), ${date}, load average ${loadStart}${args.quick ? ', --quick' : ''}`,
  );
  console.log(
    'ratio = subject / baseline measured in the same run (median of interleaved rounds); q1-q3 = spread',
  );

  const sections: Section[] = [];
  let ranInProcess = false;
  for (const module of MODULES) {
    if (!args.only.has(module.id)) continue;
    process.stdout.write(`  ${module.id}: ${module.describe} ...\n`);
    if (ISOLATED.has(module.id) && ranInProcess) {
      sections.push(await runInChild(module.id, args.quick));
      continue;
    }
    sections.push(await module.run({ quick: args.quick, writeDocs: args.out === BENCHMARKS_DOC }));
    ranInProcess = true;
  }
  if (args.sectionJson) {
    await writeFile(args.sectionJson, JSON.stringify(sections[0]));
    return;
  }
  console.log(`\n${renderText(sections)}`);

  const seconds = (performance.now() - started) / 1000;
  const argv = process.argv.slice(2);
  const command = `npm run bench${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`;
  if (args.out) {
    const markdown = renderMarkdown(
      {
        date,
        node: process.version,
        cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
        cores: availableParallelism(),
        memoryBytes: totalmem(),
        platform: `${platform()} ${release()}`,
        loadStart,
        loadEnd: load(),
        seconds,
        command,
      },
      sections,
    );
    await writeFile(args.out, markdown);
    console.log(`\nwrote ${args.out}`);
  }
  console.log(`\ndone in ${seconds.toFixed(1)} s, load average ${load()} (sink ${sinkValue() & 0xff})`);
}

/** Runs one module in a fresh process (see ISOLATED) and returns its section. */
async function runInChild(id: string, quick: boolean): Promise<Section> {
  const dir = await mkdtemp(join(tmpdir(), 'dmp-bench-'));
  const file = join(dir, 'section.json');
  try {
    const argv = [
      '--import',
      'tsx',
      join(REPO_ROOT, 'bench', 'run.ts'),
      '--only',
      id,
      '--section-json',
      file,
    ];
    if (quick) argv.push('--quick');
    const code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(process.execPath, argv, { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
      child.on('error', reject);
      child.on('exit', resolve);
    });
    if (code !== 0) throw new Error(`bench module ${id} failed in its own process (exit ${code})`);
    return JSON.parse(await readFile(file, 'utf8')) as Section;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    process.exit(1);
  },
);

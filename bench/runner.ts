import { type SpawnOptions, spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';

/**
 * A small benchmark runner: every subject is measured against a baseline in the same process, in
 * interleaved rounds (baseline and subject alternate which goes first), so that drift of the
 * machine (frequency scaling, a neighbour's load, GC pressure) hits both alike. The verdict is the
 * median of the per-round ratios; absolute times are kept for information only.
 */

export interface Subject {
  readonly name: string;
  /** One operation. A returned promise is awaited when `async` is set. */
  readonly run: () => unknown;
  readonly async?: boolean;
}

export interface RunOptions {
  /** Warm-up per function (JIT, caches); it also calibrates the batch size. */
  readonly warmupMs: number;
  /** Target duration of one batch of one function. */
  readonly batchMs: number;
  readonly rounds: number;
}

export interface Comparison {
  readonly baseline: string;
  readonly subject: string;
  /** Median over rounds of subject time / baseline time per operation. */
  readonly ratio: number;
  /** 25th and 75th percentile of the per-round ratios: how steady the run was. */
  readonly ratioQ1: number;
  readonly ratioQ3: number;
  /** Median time per operation, nanoseconds (information, not the verdict). */
  readonly baselineNs: number;
  readonly subjectNs: number;
  readonly rounds: number;
}

/** Keeps results alive so that no call can be optimised away. */
let sink = 0;
export function sinkValue(): number {
  return sink;
}

type Loop = (run: () => unknown, iterations: number) => Promise<{ elapsedMs: number; sink: number }>;

/**
 * A timing loop of its own for every subject: one shared loop would see every subject's `run` at
 * its call site, turn megamorphic after a few cases and charge later cases (and their baseline) for
 * it. `new Function` gives each loop its own type feedback, as benchmark.js does.
 */
function compileLoop(async: boolean): Loop {
  const call = async ? 'await run()' : 'run()';
  return new Function(
    'performance',
    `return async function loop(run, iterations) {
      let sink = 0;
      const started = performance.now();
      for (let i = 0; i < iterations; i++) {
        const result = ${call};
        sink ^= result === undefined || result === null ? 1 : typeof result === 'object' ? 2 : 3;
      }
      return { elapsedMs: performance.now() - started, sink };
    };`,
  )(performance) as Loop;
}

const loops = new WeakMap<Subject, Loop>();

async function batch(subject: Subject, iterations: number): Promise<number> {
  let loop = loops.get(subject);
  if (!loop) {
    loop = compileLoop(subject.async === true);
    loops.set(subject, loop);
  }
  const result = await loop(subject.run, iterations);
  sink ^= result.sink;
  return result.elapsedMs;
}

/** Runs for at least `ms`, returns the iterations per batch that fill `batchMs`. */
async function warmUp(subject: Subject, ms: number, batchMs: number): Promise<number> {
  let iterations = 1;
  let spent = 0;
  let perOpMs = 0;
  while (spent < ms) {
    const elapsed = await batch(subject, iterations);
    spent += elapsed;
    // The last (largest, warmest) batch calibrates; the first ones include compilation.
    perOpMs = elapsed / iterations;
    iterations = Math.min(iterations * 2, 1 << 20);
  }
  return Math.max(1, Math.round(batchMs / Math.max(perOpMs, 1e-6)));
}

export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const position = (sorted.length - 1) * q;
  const lower = Math.floor(position);
  const upper = Math.ceil(position);
  const low = sorted[lower] as number;
  const high = sorted[upper] as number;
  return low + (high - low) * (position - lower);
}

export const median = (values: readonly number[]): number => quantile(values, 0.5);

/** Measures `subject` against `baseline` in interleaved rounds. */
export async function compare(baseline: Subject, subject: Subject, options: RunOptions): Promise<Comparison> {
  const baselineIterations = await warmUp(baseline, options.warmupMs, options.batchMs);
  const subjectIterations = await warmUp(subject, options.warmupMs, options.batchMs);
  const ratios: number[] = [];
  const baselineNs: number[] = [];
  const subjectNs: number[] = [];
  for (let round = 0; round < options.rounds; round++) {
    let b: number;
    let s: number;
    if (round % 2 === 0) {
      b = await batch(baseline, baselineIterations);
      s = await batch(subject, subjectIterations);
    } else {
      s = await batch(subject, subjectIterations);
      b = await batch(baseline, baselineIterations);
    }
    const bNs = (b * 1e6) / baselineIterations;
    const sNs = (s * 1e6) / subjectIterations;
    baselineNs.push(bNs);
    subjectNs.push(sNs);
    ratios.push(sNs / bNs);
  }
  return {
    baseline: baseline.name,
    subject: subject.name,
    ratio: median(ratios),
    ratioQ1: quantile(ratios, 0.25),
    ratioQ3: quantile(ratios, 0.75),
    baselineNs: median(baselineNs),
    subjectNs: median(subjectNs),
    rounds: options.rounds,
  };
}

// ---------------------------------------------------------------------------------------------
// Output (bench/registry.ts renders figures)

export function formatRatio(value: number): string {
  if (!Number.isFinite(value)) return 'n/a';
  if (value >= 100) return `${value.toFixed(0)}x`;
  if (value >= 10) return `${value.toFixed(1)}x`;
  if (value < 0.1) return `${value.toFixed(3)}x`;
  return `${value.toFixed(2)}x`;
}

export function formatNs(ns: number): string {
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(2)} ms`;
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(2)} us`;
  return `${ns.toFixed(0)} ns`;
}

export function formatBytes(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(2)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} B`;
}

/** What a finished child process printed, and how it ended. */
export interface ChildResult {
  readonly code: number | null;
  readonly out: string;
  readonly err: string;
}

/** Runs a command to its end, capturing stdout and stderr (the bench's child-process measurements). */
export function runCaptured(
  command: string,
  args: readonly string[],
  options: SpawnOptions = {},
): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      err += chunk.toString('utf8');
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out, err }));
  });
}

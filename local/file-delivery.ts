import type { EnvironmentConfig } from '../src/config/schema.ts';
import { filePlatforms } from '../src/files/factory.ts';
import { BUCKETS, FUNCTIONS, type FunctionKey } from '../src/infra/resources.ts';
import type { LocalFunction } from './lambda.ts';

/**
 * The local side of file delivery: the buckets of src/infra/resources.ts in fauxqs' embedded S3,
 * and the schedules that run scheduled functions (the file exporter, once per file-mode platform),
 * as EventBridge Scheduler does in AWS: the same `{ "platformId": N }` input, every
 * `files.everyMinutes` minutes, or every `DMP_LOCAL_SCHEDULE_SECONDS` seconds when set (demos and
 * tests). Runs of one schedule never overlap locally; a run that fails is logged, not retried
 * (the exporter records its own failures and retries them on later runs).
 */

export const LOCAL_SCHEDULE_ENV = 'DMP_LOCAL_SCHEDULE_SECONDS';

export interface BucketProvisioner {
  createBucket(name: string): unknown;
}

export function provisionBuckets(fauxqs: BucketProvisioner): { name: string; created: boolean }[] {
  return BUCKETS.map((bucket) => {
    try {
      fauxqs.createBucket(bucket.localName);
      return { name: bucket.localName, created: true };
    } catch {
      // Persisted from an earlier run.
      return { name: bucket.localName, created: false };
    }
  });
}

export interface ScheduledRun {
  readonly name: string;
  readonly function: FunctionKey;
  readonly event: unknown;
  readonly everyMs: number;
}

/** One schedule per (scheduled function, file-mode platform). */
export function scheduledRuns(config: EnvironmentConfig, overrideEveryMs?: number): ScheduledRun[] {
  const runs: ScheduledRun[] = [];
  for (const [key, definition] of Object.entries(FUNCTIONS) as [
    FunctionKey,
    (typeof FUNCTIONS)[FunctionKey],
  ][]) {
    if (definition.schedule?.perPlatformMode !== 'file') continue;
    for (const platform of filePlatforms(config)) {
      runs.push({
        name: `${key} platform ${platform.platformId}`,
        function: key,
        event: { platformId: platform.platformId },
        everyMs: overrideEveryMs ?? platform.files.everyMinutes * 60_000,
      });
    }
  }
  return runs;
}

export interface RunningSchedules {
  readonly summary: readonly string[];
  stop(): Promise<void>;
}

export function startSchedules(
  runs: readonly ScheduledRun[],
  functions: ReadonlyMap<FunctionKey, LocalFunction>,
  log: (line: string) => void,
): RunningSchedules {
  const timers: NodeJS.Timeout[] = [];
  const inFlight = new Set<Promise<void>>();
  for (const run of runs) {
    const fn = functions.get(run.function);
    if (!fn) continue;
    let running = false;
    const tick = () => {
      if (running) return;
      running = true;
      const invocation = fn
        .invoke(run.event)
        .then(
          (result) => {
            const summary = summarize(result);
            if (summary) log(`schedule: ${run.name}: ${summary}`);
          },
          (error: unknown) => log(`schedule: ${run.name} failed: ${(error as Error).message}`),
        )
        .finally(() => {
          running = false;
          inFlight.delete(invocation);
        });
      inFlight.add(invocation);
    };
    const timer = setInterval(tick, run.everyMs);
    timer.unref();
    timers.push(timer);
  }
  return {
    summary: runs.map((run) => `schedule ${run.name}: every ${run.everyMs / 1000} s -> ${run.function}`),
    async stop() {
      for (const timer of timers) clearInterval(timer);
      await Promise.allSettled([...inFlight]);
    },
  };
}

/** What a run did, or undefined when it had nothing to do (most runs: kept out of the log). */
function summarize(result: unknown): string | undefined {
  const report = (result as { report?: { windows?: { outcome: string; files: string[] }[] } } | null)?.report;
  const windows = report?.windows ?? [];
  if (windows.length === 0) return undefined;
  return windows
    .map((window) => `${window.outcome}${window.files.length ? ` ${window.files.join(', ')}` : ''}`)
    .join('; ');
}

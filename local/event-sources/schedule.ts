import { randomUUID } from 'node:crypto';
import type { ScheduledEvent } from 'aws-lambda';
import { LOCAL_REGION } from '../endpoints.ts';
import { LOCAL_ACCOUNT_ID } from '../lambda.ts';
import { type LocalEventSource, StateSignal, waitUntil } from './common.ts';

/**
 * EventBridge Scheduler's `rate(...)` schedule for the local stack: invokes the function every
 * `everyMs` with a scheduled event. A tick that comes while the previous invocation still runs is
 * skipped, so invocations of one schedule never overlap (handlers may rely on it locally; in AWS
 * they must not: give the function a reserved concurrency of 1 or make it idempotent).
 * A failed invocation is logged; the next tick runs as usual (AWS would retry an async invocation
 * twice first).
 */

export interface ScheduleOptions {
  readonly name: string;
  /** The period; 0 runs only on request (`runNow`). */
  readonly everyMs: number;
  /** Normally `LocalFunction.invoke` (local/lambda.ts). */
  readonly invoke: (event: ScheduledEvent) => Promise<unknown>;
  /**
   * The target's input, as EventBridge Scheduler passes it to the function; default: a Scheduled
   * Event (what the CDK side must then configure as the input).
   */
  readonly input?: unknown;
  readonly region?: string;
  /** Where failed invocations are reported (default: nowhere). */
  readonly log?: (line: string) => void;
}

export interface LocalSchedule extends LocalEventSource {
  readonly scheduleArn: string;
  /** Invokes now (after the invocation under way, if any); resolves with the function's result. */
  runNow(): Promise<unknown>;
}

export function startSchedule(options: ScheduleOptions): LocalSchedule {
  // setInterval takes at most 2^31 - 1 ms (about 24.8 days) and fires at once beyond.
  if (!Number.isInteger(options.everyMs) || options.everyMs < 0 || options.everyMs > 2 ** 31 - 1) {
    throw new Error(
      `schedule ${options.name}: everyMs must be 0 (on request) or 1 ms-24 days, not ${options.everyMs}`,
    );
  }
  const region = options.region ?? LOCAL_REGION;
  const log = options.log ?? (() => {});
  const scheduleArn = `arn:aws:scheduler:${region}:${LOCAL_ACCOUNT_ID}:schedule/default/${options.name}`;
  const signal = new StateSignal();
  let running: Promise<unknown> | undefined;
  let stopped = false;

  const scheduledEvent = (): ScheduledEvent => ({
    version: '0',
    id: randomUUID(),
    'detail-type': 'Scheduled Event',
    source: 'aws.scheduler',
    account: LOCAL_ACCOUNT_ID,
    time: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
    region,
    resources: [scheduleArn],
    detail: {},
  });

  const run = (): Promise<unknown> => {
    const previous = running ?? Promise.resolve();
    const current = previous
      .catch(() => {})
      .then(() =>
        options.invoke(options.input !== undefined ? (options.input as ScheduledEvent) : scheduledEvent()),
      );
    running = current;
    const settled = current.finally(() => {
      if (running === current) running = undefined;
      signal.notify();
    });
    settled.catch(() => {});
    return current;
  };

  const timer =
    options.everyMs > 0
      ? setInterval(() => {
          if (running) return;
          run().catch((error: unknown) =>
            log(`schedule ${options.name}: invocation failed: ${(error as Error).message}`),
          );
        }, options.everyMs)
      : undefined;

  return {
    scheduleArn,
    runNow: () => {
      if (stopped) return Promise.reject(new Error(`schedule ${options.name} is stopped`));
      return run();
    },
    async stop() {
      stopped = true;
      clearInterval(timer);
      signal.notify();
      await running?.catch(() => {});
    },
    whenIdle: () =>
      waitUntil(
        signal,
        () => running === undefined,
        () => stopped,
        `schedule ${options.name}`,
      ),
  };
}

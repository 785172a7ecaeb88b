/**
 * What the local event sources (SQS, DynamoDB Streams, schedules) share: their handle, Lambda's
 * reading of a partial batch response, and a way to wait for their state to change.
 */

/** A running local event source. */
export interface LocalEventSource {
  /** Stops reading; resolves once the invocations in flight have settled. */
  stop(): Promise<void>;
  /**
   * Resolves once there is nothing left to deliver and no invocation runs (tests await this instead
   * of sleeping); rejects if the source is stopped first.
   */
  whenIdle(): Promise<void>;
}

/** How Lambda reads what a function returned for a batch (with ReportBatchItemFailures on). */
export type BatchOutcome =
  | { readonly kind: 'success' }
  | { readonly kind: 'partial'; readonly failed: ReadonlySet<string> }
  | { readonly kind: 'failure'; readonly reason: string };

/**
 * Lambda's rules for a partial batch response: a null or empty response, or a null or empty
 * `batchItemFailures`, is a complete success; a response it cannot read, an item without an
 * `itemIdentifier` (or with an empty one, or one that names no record of the batch) fails the
 * whole batch. `identifiers` are the batch's message ids (SQS) or sequence numbers (streams).
 */
export function readBatchResponse(result: unknown, identifiers: ReadonlySet<string>): BatchOutcome {
  if (result === null || result === undefined) return { kind: 'success' };
  if (typeof result !== 'object' || Array.isArray(result)) {
    return {
      kind: 'failure',
      reason: `the function returned ${JSON.stringify(result)}, not a batch response`,
    };
  }
  const failures = (result as { batchItemFailures?: unknown }).batchItemFailures;
  if (failures === null || failures === undefined) return { kind: 'success' };
  if (!Array.isArray(failures)) {
    return { kind: 'failure', reason: 'batchItemFailures is not a list' };
  }
  if (failures.length === 0) return { kind: 'success' };
  const failed = new Set<string>();
  for (const failure of failures as unknown[]) {
    const id =
      typeof failure === 'object' && failure !== null
        ? (failure as { itemIdentifier?: unknown }).itemIdentifier
        : undefined;
    if (typeof id !== 'string' || id === '') {
      return { kind: 'failure', reason: `invalid batch item failure ${JSON.stringify(failure)}` };
    }
    if (!identifiers.has(id)) {
      return { kind: 'failure', reason: `batch item failure names ${JSON.stringify(id)}, not in the batch` };
    }
    failed.add(id);
  }
  return { kind: 'partial', failed };
}

/**
 * Wakes whoever waits for a state change (`next()`), or after `timeoutMs` at the latest for
 * states that change outside this process (a queue's visibility timeouts).
 */
export class StateSignal {
  private waiters: (() => void)[] = [];

  notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  next(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      const self = this;
      function done() {
        clearTimeout(timer);
        self.waiters = self.waiters.filter((waiter) => waiter !== done);
        resolve();
      }
      this.waiters.push(done);
    });
  }
}

/** Awaits a condition checked on every state change (and every `pollMs`); throws once `stopped()`. */
export async function waitUntil(
  signal: StateSignal,
  condition: () => boolean | Promise<boolean>,
  stopped: () => boolean,
  what: string,
  pollMs = 25,
): Promise<void> {
  for (;;) {
    if (stopped()) throw new Error(`${what} stopped before it was idle`);
    if (await condition()) return;
    await signal.next(pollMs);
  }
}

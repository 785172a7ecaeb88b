import { forEachLimited } from '../aws/limit.ts';
import type { Connector } from '../config/connector.ts';
import { PartnerCallError } from '../connectors/http/client.ts';
import { readJsonPath } from '../connectors/templates.ts';
import type { Membership } from './membership.ts';
import { type PlanContext, type PlannedRequest, planRequests } from './requests.ts';

/**
 * Sends memberships of one platform to its partner and says what became of each one:
 *
 * - delivered: the partner acknowledged it (2xx, not listed as failed, count not short);
 * - rejected: the partner refused it alone (a 4xx on a one-item request, a per-item error, a
 *   count of 0 on a one-item request) or it cannot be sent (no removal call, too large);
 * - failed: not settled in this invocation (429, 5xx, timeout, reset, unknown error, out of time):
 *   the queue brings it back later.
 *
 * A whole-batch 4xx, or a count of applied items short of the items sent, is resolved by
 * bisection: each half is sent again until the bad items stand alone, so one bad user never sinks
 * 999 good ones. Calls run at most `concurrency` at a time (never one promise per user), each
 * after the gate allows it and bounded by the invocation's deadline; after PARTNER_DOWN_AFTER calls
 * in a row fail retryably, the rest are not tried in this invocation (a partner that is down is not
 * hammered; the queue brings them back after a backoff).
 */

export interface PartnerLike {
  call(
    request: PlannedRequest<Membership>['request'],
    options: { signal?: AbortSignal; onTry?: (status: number | undefined, retryAfterMs?: number) => void },
  ): Promise<{ readonly status: number; json(): unknown }>;
}

export interface CallGate {
  /** Resolves when a call may start; rejects (DeadlineError) when that would be after `deadline`. */
  acquire(deadline: number): Promise<void>;
  observe(status: number | undefined, retryAfterMs?: number): void;
}

export class DeadlineError extends Error {
  override readonly name = 'DeadlineError';
  constructor(readonly retryAfterMs?: number) {
    super('out of time in this invocation');
  }
}

export interface Rejection<T> {
  readonly item: T;
  readonly reason: string;
  readonly detail: string;
}

export interface Failure<T> {
  readonly item: T;
  readonly detail: string;
  /** When the partner asked us to come back. */
  readonly retryAfterMs?: number | undefined;
}

export interface DeliveryOutcome<T> {
  readonly delivered: T[];
  readonly rejected: Rejection<T>[];
  readonly failed: Failure<T>[];
  /** Calls made (bisection included), for the calls-per-1000 figure. */
  readonly calls: number;
}

export interface DeliveryDeps extends PlanContext {
  readonly partner: PartnerLike;
  readonly gate?: CallGate;
  /** Concurrent calls from this invocation. */
  readonly concurrency: number;
  /** Epoch ms by which every call must have ended. */
  readonly deadline: number;
  readonly now?: () => number;
  /** Told of each call's acknowledged items, when the answer came (event-to-partner latency). */
  readonly onAcknowledged?: (items: readonly Membership[], atMs: number) => void;
}

type ItemVerdict = { ok: true } | { ok: false; detail: string };

/** Per-item verdicts from a 2xx answer, or 'short' when only a short count says something failed. */
export function interpretAnswer(
  body: unknown,
  itemCount: number,
  responses: Connector['responses'],
): ItemVerdict[] | 'short' {
  const verdicts: ItemVerdict[] = Array.from({ length: itemCount }, () => ({ ok: true }));
  const { perItem, countPath } = responses;
  if (perItem) {
    const results = readJsonPath(body, perItem.path);
    if (Array.isArray(results)) {
      results.forEach((result, position) => {
        if (result === null || typeof result !== 'object') return;
        const error = (result as Record<string, unknown>)[perItem.errorField];
        if (error === undefined || error === null || error === '' || error === false) return;
        const index = perItem.indexField ? (result as Record<string, unknown>)[perItem.indexField] : position;
        if (typeof index === 'number' && Number.isInteger(index) && index >= 0 && index < itemCount) {
          verdicts[index] = {
            ok: false,
            detail: String(typeof error === 'string' ? error : JSON.stringify(error)).slice(0, 300),
          };
        }
      });
      if (!countPath) return verdicts;
    }
  }
  if (countPath) {
    const count = readJsonPath(body, countPath);
    const failedByItem = verdicts.filter((verdict) => !verdict.ok).length;
    if (typeof count === 'number' && count < itemCount - failedByItem) return 'short';
  }
  return verdicts;
}

/** After this many calls in a row fail (429/5xx/network, the client's retries spent), stop calling. */
export const PARTNER_DOWN_AFTER = 3;

export async function deliverMemberships<T extends Membership>(
  memberships: readonly T[],
  deps: DeliveryDeps,
): Promise<DeliveryOutcome<T>> {
  const now = deps.now ?? Date.now;
  const outcome: { delivered: T[]; rejected: Rejection<T>[]; failed: Failure<T>[]; calls: number } = {
    delivered: [],
    rejected: [],
    failed: [],
    calls: 0,
  };
  const plan = planRequests(memberships, deps);
  for (const refused of plan.refused) outcome.rejected.push(refused);

  const fail = (items: readonly T[], detail: string, retryAfterMs?: number) => {
    for (const item of items) outcome.failed.push({ item, detail, retryAfterMs });
  };
  /** Calls in a row that failed retryably after the client's own retries: the partner looks down. */
  let failuresInRow = 0;

  const send = async (planned: PlannedRequest<T>): Promise<void> => {
    const { items } = planned;
    if (failuresInRow >= PARTNER_DOWN_AFTER) {
      // Not called at all: the queue brings these back after a backoff, with the others.
      return fail(items, 'not tried: the partner failed every recent call');
    }
    try {
      await deps.gate?.acquire(deps.deadline);
    } catch (error) {
      if (error instanceof DeadlineError) return fail(items, error.message, error.retryAfterMs);
      throw error;
    }
    const remaining = deps.deadline - now();
    if (remaining <= 0) return fail(items, 'out of time in this invocation');
    outcome.calls++;
    let body: unknown;
    try {
      const answer = await deps.partner.call(planned.request, {
        // AbortSignal.timeout takes whole milliseconds only.
        signal: AbortSignal.timeout(Math.ceil(remaining)),
        onTry: (status, retryAfterMs) => deps.gate?.observe(status, retryAfterMs),
      });
      body = answer.json();
    } catch (error) {
      if (!(error instanceof PartnerCallError)) {
        return fail(items, `unexpected error: ${error instanceof Error ? error.name : 'unknown'}`);
      }
      const status = error.status;
      const refusal = error.kind === 'permanent' && status !== undefined && status !== 401 && status !== 403;
      if (!refusal) {
        failuresInRow++;
        return fail(items, error.message, error.retryAfterMs);
      }
      failuresInRow = 0;
      if (items.length === 1) {
        outcome.rejected.push({
          item: items[0] as T,
          reason: 'partner_refused',
          detail: `HTTP ${status}: ${(error.bodySnippet ?? '').slice(0, 200)}`,
        });
        return;
      }
      return bisect(items);
    }
    failuresInRow = 0;
    const verdicts = interpretAnswer(body, items.length, deps.connector.responses);
    if (verdicts === 'short') {
      if (items.length === 1) {
        outcome.rejected.push({
          item: items[0] as T,
          reason: 'partner_refused',
          detail: 'the partner applied 0 of 1',
        });
        return;
      }
      return bisect(items);
    }
    const acknowledged: T[] = [];
    verdicts.forEach((verdict, index) => {
      const item = items[index] as T;
      if (verdict.ok) acknowledged.push(item);
      else outcome.rejected.push({ item, reason: 'partner_refused', detail: verdict.detail });
    });
    outcome.delivered.push(...acknowledged);
    if (acknowledged.length > 0) deps.onAcknowledged?.(acknowledged, now());
  };

  const bisect = async (items: readonly T[]): Promise<void> => {
    const middle = Math.ceil(items.length / 2);
    for (const half of [items.slice(0, middle), items.slice(middle)]) {
      for (const planned of planRequests(half, deps).requests) await send(planned);
    }
  };

  await forEachLimited(plan.requests, deps.concurrency, send);
  return outcome;
}

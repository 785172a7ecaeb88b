/**
 * Retry rules for calls to a partner's API (pure: no clock, no randomness, no I/O of its own).
 *
 * - An answer is `success` (2xx), `retryable` (429, any 5xx, and the 4xx statuses the connector
 *   lists in `responses.retryableStatuses`, 408 and 425 by default) or `permanent` (every other
 *   status, including 3xx: redirects are not followed, a 3xx means the connector is misconfigured).
 * - Between attempts we wait an exponential backoff with full jitter:
 *   `random() * min(maxDelayMs, baseDelayMs * 2^(attempt - 1))`, `attempt` being the attempt that
 *   just failed (1 for the first).
 * - A `Retry-After` header (delta-seconds or an HTTP-date) is honoured: we never retry before it,
 *   and wait `max(Retry-After, jittered backoff)`. When it asks for more than `maxDelayMs`, the
 *   call gives up at once with a retryable outcome that carries the wait the partner asked for,
 *   rather than hold a Lambda asleep past its own delay bound: the caller (the delivery queue)
 *   retries later, not before that time.
 */

export type StatusClass = 'success' | 'retryable' | 'permanent';

export interface RetrySettings {
  readonly maxAttempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
}

/** A `Retry-After` longer than this (one day) is read as this: nobody waits longer inside a call. */
export const RETRY_AFTER_CAP_MS = 86_400_000;

export function classifyStatus(status: number, retryableStatuses: readonly number[]): StatusClass {
  if (status >= 200 && status <= 299) return 'success';
  if (status === 429 || (status >= 500 && status <= 599)) return 'retryable';
  if (status >= 400 && status <= 499 && retryableStatuses.includes(status)) return 'retryable';
  return 'permanent';
}

/**
 * Milliseconds to wait from `nowMs` according to a `Retry-After` header (RFC 9110 10.2.3), or
 * undefined when absent or unreadable. Delta-seconds may be fractional or negative (read as 0,
 * leniently); a date in the past gives 0; anything above `capMs` gives `capMs`.
 */
export function parseRetryAfter(
  header: string | readonly string[] | undefined,
  nowMs: number,
  capMs: number = RETRY_AFTER_CAP_MS,
): number | undefined {
  const value = (typeof header === 'string' ? header : header?.[0])?.trim();
  if (!value) return undefined;
  let ms: number;
  if (/^[+-]?\d+(\.\d+)?$/.test(value)) {
    ms = Math.ceil(Number(value) * 1000);
  } else {
    // IMF-fixdate, and the obsolete RFC 850 and asctime forms recipients must accept.
    if (!/[A-Za-z]/.test(value)) return undefined;
    // asctime carries no zone; HTTP dates are always GMT.
    const asctime = /^[A-Za-z]{3} [A-Za-z]{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$/.test(value);
    const at = Date.parse(asctime ? `${value} GMT` : value);
    if (Number.isNaN(at)) return undefined;
    ms = at - nowMs;
  }
  if (!Number.isFinite(ms)) return capMs;
  return Math.min(Math.max(ms, 0), capMs);
}

/** Full-jitter exponential backoff after the failed attempt number `attempt` (1-based). */
export function backoffDelayMs(
  attempt: number,
  settings: Pick<RetrySettings, 'baseDelayMs' | 'maxDelayMs'>,
  random: () => number,
): number {
  const exponent = Math.min(Math.max(Math.floor(attempt), 1) - 1, 40);
  const ceiling = Math.min(settings.maxDelayMs, settings.baseDelayMs * 2 ** exponent);
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.min(Math.floor(r * ceiling), settings.maxDelayMs);
}

export type RetryDecision =
  | { readonly action: 'retry'; readonly delayMs: number }
  | {
      readonly action: 'give_up';
      readonly reason: 'attempts_exhausted' | 'retry_after_exceeds_max_delay';
    };

/**
 * What to do after the retryable failure of attempt number `attempt` (1-based): retry after
 * `delayMs`, or give up because the attempts are spent or the partner asked us (Retry-After) to
 * come back later than `maxDelayMs`.
 */
export function nextDelayMs(input: {
  readonly attempt: number;
  readonly retry: RetrySettings;
  readonly retryAfterMs?: number | undefined;
  readonly random: () => number;
}): RetryDecision {
  const { attempt, retry, retryAfterMs, random } = input;
  if (attempt >= retry.maxAttempts) return { action: 'give_up', reason: 'attempts_exhausted' };
  if (retryAfterMs !== undefined && retryAfterMs > retry.maxDelayMs) {
    return { action: 'give_up', reason: 'retry_after_exceeds_max_delay' };
  }
  const backoff = backoffDelayMs(attempt, retry, random);
  return { action: 'retry', delayMs: Math.max(backoff, retryAfterMs ?? 0) };
}

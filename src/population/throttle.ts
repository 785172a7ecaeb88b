/**
 * How fast we call one partner (pure: the clock is passed in).
 *
 * - `rateWindow`: the platform's `rateLimitPerSecond` as a fixed window that every concurrent
 *   Lambda of the platform counts against (in DynamoDB, see rate-limit-store): at least one
 *   second long, and long enough to hold one call when the rate is below one a second.
 * - `AdaptiveThrottle`: per Lambda container, multiplicative decrease when more than 10% of a
 *   window's tries were answered 429 (x0.7), additive recovery when a window is clean (+10% of
 *   the base rate), and a hold until the partner's Retry-After. It recovers by itself.
 */

export interface RateWindow {
  readonly windowMs: number;
  readonly callsPerWindow: number;
}

export function rateWindow(ratePerSecond: number): RateWindow {
  const windowMs = Math.max(1000, Math.ceil(1000 / ratePerSecond));
  return { windowMs, callsPerWindow: Math.max(1, Math.floor((ratePerSecond * windowMs) / 1000)) };
}

/** The window a time falls in, and when the next one starts. */
export function windowOf(nowMs: number, window: RateWindow): { index: number; endsAt: number } {
  const index = Math.floor(nowMs / window.windowMs);
  return { index, endsAt: (index + 1) * window.windowMs };
}

const DECREASE = 0.7;
const INCREASE = 0.1;
const MIN_FACTOR = 0.02;
const THROTTLED_SHARE = 0.1;
const EVALUATE_EVERY_MS = 1000;

export class AdaptiveThrottle {
  /** Share of the base rate we allow ourselves now (1: the configured rate). */
  private factor = 1;
  private holdUntil = 0;
  private windowStart: number;
  private tries = 0;
  private throttled = 0;
  /** Tries per second seen when the partner first throttled, for partners without a configured rate. */
  private observedRate: number | undefined;
  private lastTries: number[] = [];

  constructor(
    private readonly configuredRate: number | undefined,
    private readonly now: () => number,
  ) {
    this.windowStart = now();
  }

  /** The rate (calls per second) we allow now; undefined: unlimited. */
  rate(): number | undefined {
    this.evaluate();
    const base = this.configuredRate ?? this.observedRate;
    if (base === undefined) return undefined;
    if (this.factor >= 1 && this.configuredRate === undefined) return undefined;
    return Math.max(base * this.factor, 0.01);
  }

  /** Epoch ms before which no call should start (Retry-After), or 0. */
  heldUntil(): number {
    return this.holdUntil > this.now() ? this.holdUntil : 0;
  }

  observe(status: number | undefined, retryAfterMs?: number): void {
    this.evaluate();
    const at = this.now();
    this.tries++;
    this.lastTries.push(at);
    if (this.lastTries.length > 1000) this.lastTries.splice(0, this.lastTries.length - 1000);
    if (status !== 429) return;
    this.throttled++;
    if (this.observedRate === undefined && this.configuredRate === undefined) {
      const recent = this.lastTries.filter((time) => time > at - 1000).length;
      this.observedRate = Math.max(recent, 1);
    }
    if (retryAfterMs !== undefined) this.holdUntil = Math.max(this.holdUntil, at + retryAfterMs);
  }

  private evaluate(): void {
    const at = this.now();
    if (at - this.windowStart < EVALUATE_EVERY_MS) return;
    const windows = Math.floor((at - this.windowStart) / EVALUATE_EVERY_MS);
    if (this.tries > 0 && this.throttled / this.tries > THROTTLED_SHARE) {
      this.factor = Math.max(MIN_FACTOR, this.factor * DECREASE);
    } else {
      // Every clean window (quiet ones included) recovers a tenth of the base rate.
      this.factor = Math.min(1, this.factor + INCREASE * windows);
    }
    this.windowStart += windows * EVALUATE_EVERY_MS;
    this.tries = 0;
    this.throttled = 0;
  }
}

import { describe, expect, it } from 'vitest';
import {
  backoffDelayMs,
  classifyStatus,
  nextDelayMs,
  parseRetryAfter,
  RETRY_AFTER_CAP_MS,
} from '../../../src/connectors/retry.ts';

const RETRYABLE_4XX = [408, 425];
const NOW = Date.UTC(2026, 0, 1, 12, 0, 0);

describe('classifyStatus', () => {
  it.each([
    [200, 'success'],
    [201, 'success'],
    [204, 'success'],
    [299, 'success'],
    [301, 'permanent'],
    [302, 'permanent'],
    [304, 'permanent'],
    [400, 'permanent'],
    [401, 'permanent'],
    [403, 'permanent'],
    [404, 'permanent'],
    [409, 'permanent'],
    [413, 'permanent'],
    [408, 'retryable'],
    [425, 'retryable'],
    [429, 'retryable'],
    [500, 'retryable'],
    [502, 'retryable'],
    [503, 'retryable'],
    [504, 'retryable'],
    [599, 'retryable'],
    [100, 'permanent'],
  ] as const)('%i is %s', (status, expected) => {
    expect(classifyStatus(status, RETRYABLE_4XX)).toBe(expected);
  });

  it('retries the 4xx the connector lists, and only those', () => {
    expect(classifyStatus(409, [409])).toBe('retryable');
    expect(classifyStatus(408, [])).toBe('permanent');
    expect(classifyStatus(429, [])).toBe('retryable');
    expect(classifyStatus(503, [])).toBe('retryable');
  });
});

describe('parseRetryAfter', () => {
  it.each([
    ['0', 0],
    ['1', 1000],
    ['120', 120_000],
    ['  7 ', 7000],
    ['1.5', 1500],
    ['-3', 0],
  ] as const)('reads delta-seconds %j as %i ms', (header, expected) => {
    expect(parseRetryAfter(header, NOW)).toBe(expected);
  });

  it('reads an IMF-fixdate relative to the injected clock', () => {
    expect(parseRetryAfter('Thu, 01 Jan 2026 12:00:30 GMT', NOW)).toBe(30_000);
  });

  it('reads the obsolete RFC 850 and asctime date forms', () => {
    expect(parseRetryAfter('Thursday, 01-Jan-26 12:01:00 GMT', NOW)).toBe(60_000);
    expect(parseRetryAfter('Thu Jan  1 12:00:05 2026', NOW)).toBe(5000);
  });

  it('gives 0 for a date in the past', () => {
    expect(parseRetryAfter('Thu, 01 Jan 2026 11:59:00 GMT', NOW)).toBe(0);
  });

  it('caps absurd values', () => {
    expect(parseRetryAfter('99999999999', NOW)).toBe(RETRY_AFTER_CAP_MS);
    expect(parseRetryAfter('Fri, 01 Jan 2100 00:00:00 GMT', NOW)).toBe(RETRY_AFTER_CAP_MS);
    expect(parseRetryAfter('600', NOW, 60_000)).toBe(60_000);
  });

  it.each([[undefined], [''], ['soon'], ['12abc'], ['1e3']])('ignores %j', (header) => {
    expect(parseRetryAfter(header, NOW)).toBeUndefined();
  });

  it('takes the first of repeated headers', () => {
    expect(parseRetryAfter(['2', '9'], NOW)).toBe(2000);
  });
});

describe('backoffDelayMs', () => {
  const settings = { baseDelayMs: 200, maxDelayMs: 10_000 };

  it.each([
    // attempt, random, expected: floor(random * min(max, base * 2^(attempt-1)))
    [1, 0.999_999, 199],
    [1, 0.5, 100],
    [2, 0.5, 200],
    [3, 0.5, 400],
    [4, 0.5, 800],
    [6, 0.5, 3200],
    [7, 0.5, 5000], // 12 800 capped at 10 000
    [10, 0.999_999, 9999],
    [40, 0.5, 5000],
    [1, 0, 0],
  ] as const)('attempt %i, random %d -> %i ms', (attempt, random, expected) => {
    expect(backoffDelayMs(attempt, settings, () => random)).toBe(expected);
  });

  it('never exceeds maxDelayMs, even with a random() out of range', () => {
    expect(backoffDelayMs(5, settings, () => 7)).toBe(3200);
    expect(backoffDelayMs(50, settings, () => 1)).toBe(10_000);
    expect(backoffDelayMs(3, settings, () => -1)).toBe(0);
  });
});

describe('nextDelayMs', () => {
  const retry = { maxAttempts: 4, baseDelayMs: 200, maxDelayMs: 10_000 };
  const half = () => 0.5;

  it.each([
    // attempt, retryAfterMs, decision
    [1, undefined, { action: 'retry', delayMs: 100 }],
    [2, undefined, { action: 'retry', delayMs: 200 }],
    [3, undefined, { action: 'retry', delayMs: 400 }],
    [4, undefined, { action: 'give_up', reason: 'attempts_exhausted' }],
    [1, 2000, { action: 'retry', delayMs: 2000 }],
    [3, 50, { action: 'retry', delayMs: 400 }], // backoff is longer than the partner asked
    [1, 10_000, { action: 'retry', delayMs: 10_000 }],
    [1, 10_001, { action: 'give_up', reason: 'retry_after_exceeds_max_delay' }],
    [4, 60_000, { action: 'give_up', reason: 'attempts_exhausted' }],
  ] as const)('after attempt %i with Retry-After %j: %j', (attempt, retryAfterMs, expected) => {
    expect(nextDelayMs({ attempt, retry, retryAfterMs, random: half })).toEqual(expected);
  });

  it('gives up at once when only one attempt is allowed', () => {
    expect(nextDelayMs({ attempt: 1, retry: { ...retry, maxAttempts: 1 }, random: half })).toEqual({
      action: 'give_up',
      reason: 'attempts_exhausted',
    });
  });
});

import { describe, expect, it } from 'vitest';
import { type PlatformConfig, PlatformSchema } from '../../src/config/schema.ts';
import { type DueInput, decideDue, jitterFactor, resyncIntervalSeconds } from '../../src/sync/schedule.ts';

const HOUR = 3600;
const DAY = 86_400;
const NOW = 1_767_225_600;
const USER = 'Qm9iQm9iQm9iQm9iQm9iQg';

/** `null`: a platform without sync settings (segments only). */
function platform(id: number, sync: Record<string, unknown> | null = {}): PlatformConfig {
  return PlatformSchema.parse({
    id,
    name: `Platform ${id}`,
    sync: sync === null ? undefined : { urlTemplate: `https://p${id}.example/sync?out={out}`, ...sync },
  });
}

const SEED = platform(99999);

function decide(overrides: Partial<DueInput> = {}) {
  return decideDue({
    platforms: [SEED],
    dmpUserId: USER,
    nowSeconds: NOW,
    mappings: [],
    attempts: new Map(),
    ...overrides,
  });
}

describe('jitterFactor', () => {
  it('is the same for the same user and platform, every time', () => {
    expect(jitterFactor(USER, 99999, 0.1)).toBe(jitterFactor(USER, 99999, 0.1));
  });

  it('is exactly 1 without jitter', () => {
    expect(jitterFactor(USER, 99999, 0)).toBe(1);
  });

  it('stays within 1 ± jitter and spreads a cohort over the whole range', () => {
    const factors = Array.from({ length: 5000 }, (_, index) =>
      jitterFactor(`user-${index}-abcdef`, 99999, 0.1),
    );
    const min = Math.min(...factors);
    const max = Math.max(...factors);
    expect(min).toBeGreaterThanOrEqual(0.9);
    expect(max).toBeLessThanOrEqual(1.1);
    expect(min).toBeLessThan(0.91);
    expect(max).toBeGreaterThan(1.09);
    const mean = factors.reduce((sum, factor) => sum + factor, 0) / factors.length;
    expect(mean).toBeGreaterThan(0.99);
    expect(mean).toBeLessThan(1.01);
    // A cohort synced on one day returns over several days: no single hour holds a tenth of it.
    const byHour = new Map<number, number>();
    for (const factor of factors) {
      const hour = Math.floor((factor * 7 * DAY) / HOUR);
      byHour.set(hour, (byHour.get(hour) ?? 0) + 1);
    }
    expect(Math.max(...byHour.values())).toBeLessThan(factors.length / 10);
  });

  it('differs between platforms for the same user', () => {
    const factors = new Set([1, 2, 3, 4, 5, 6, 7, 8].map((id) => jitterFactor(USER, id, 0.5)));
    expect(factors.size).toBe(8);
  });
});

describe('resyncIntervalSeconds', () => {
  it('is resyncAfterDays stretched by the jitter factor', () => {
    const settings = SEED.sync!;
    const interval = resyncIntervalSeconds(settings, USER, 99999);
    expect(interval).toBeCloseTo(7 * DAY * jitterFactor(USER, 99999, 0.1), 6);
    expect(interval).toBeGreaterThanOrEqual(7 * DAY * 0.9);
    expect(interval).toBeLessThanOrEqual(7 * DAY * 1.1);
  });
});

describe('decideDue', () => {
  it('makes a new user due for every enabled platform', () => {
    expect(decide({ platforms: [SEED, platform(88888)] })).toEqual([
      { platformId: 99999, due: true },
      { platformId: 88888, due: true },
    ]);
  });

  it('skips a platform with sync disabled or without sync settings', () => {
    expect(decide({ platforms: [platform(1, { enabled: false }), platform(2, null)] })).toEqual([
      { platformId: 1, due: false, reason: 'sync_disabled' },
      { platformId: 2, due: false, reason: 'sync_disabled' },
    ]);
  });

  it('does not retry a partner inside retryAfterAttemptHours, and says when it will', () => {
    const attemptedAt = NOW - HOUR;
    expect(decide({ attempts: new Map([[99999, attemptedAt]]) })).toEqual([
      { platformId: 99999, due: false, reason: 'recently_attempted', dueAtSeconds: attemptedAt + 24 * HOUR },
    ]);
  });

  it('retries once retryAfterAttemptHours have passed', () => {
    expect(decide({ attempts: new Map([[99999, NOW - 24 * HOUR]]) })).toEqual([
      { platformId: 99999, due: true },
    ]);
    const sixHours = platform(99999, { retryAfterAttemptHours: 6 });
    expect(decide({ platforms: [sixHours], attempts: new Map([[99999, NOW - 6 * HOUR - 1]]) })).toEqual([
      { platformId: 99999, due: true },
    ]);
  });

  it('ignores attempts recorded for other platforms', () => {
    expect(decide({ attempts: new Map([[88888, NOW]]) })).toEqual([{ platformId: 99999, due: true }]);
  });

  it('is not due while the mapping is fresh, and reports the jittered due time', () => {
    const seen = NOW - DAY;
    const [decision] = decide({ mappings: [{ platformId: 99999, lastSeenSeconds: seen }] });
    expect(decision).toMatchObject({ platformId: 99999, due: false, reason: 'fresh_mapping' });
    expect(decision?.dueAtSeconds).toBe(Math.ceil(seen + resyncIntervalSeconds(SEED.sync!, USER, 99999)));
    expect(decision?.dueAtSeconds).toBeGreaterThanOrEqual(seen + 6.3 * DAY - 1);
    expect(decision?.dueAtSeconds).toBeLessThanOrEqual(seen + 7.7 * DAY);
  });

  it('is due once the mapping is older than the longest jittered interval', () => {
    expect(decide({ mappings: [{ platformId: 99999, lastSeenSeconds: NOW - 8 * DAY }] })).toEqual([
      { platformId: 99999, due: true },
    ]);
  });

  it('turns due exactly at the jittered interval', () => {
    const interval = resyncIntervalSeconds(SEED.sync!, USER, 99999);
    const seen = NOW - 10 * DAY;
    const at = (nowSeconds: number) =>
      decide({ nowSeconds, mappings: [{ platformId: 99999, lastSeenSeconds: seen }] })[0]?.due;
    expect(at(Math.floor(seen + interval) - 1)).toBe(false);
    expect(at(Math.ceil(seen + interval))).toBe(true);
  });

  it('treats users differently: some are due before others on the same day', () => {
    const seen = NOW - 7 * DAY;
    const due = Array.from(
      { length: 200 },
      (_, index) =>
        decideDue({
          platforms: [SEED],
          dmpUserId: `user-${index}-abcdef`,
          nowSeconds: NOW,
          mappings: [{ platformId: 99999, lastSeenSeconds: seen }],
          attempts: new Map(),
        })[0]?.due,
    );
    expect(due.filter(Boolean).length).toBeGreaterThan(40);
    expect(due.filter((value) => !value).length).toBeGreaterThan(40);
  });

  it('reports a recent attempt before a fresh mapping', () => {
    const decisions = decide({
      attempts: new Map([[99999, NOW - HOUR]]),
      mappings: [{ platformId: 99999, lastSeenSeconds: NOW - DAY }],
    });
    expect(decisions[0]?.reason).toBe('recently_attempted');
  });

  it('uses the mapping once the retry window of an old attempt has passed', () => {
    const decisions = decide({
      attempts: new Map([[99999, NOW - 2 * DAY]]),
      mappings: [{ platformId: 99999, lastSeenSeconds: NOW - DAY }],
    });
    expect(decisions[0]?.reason).toBe('fresh_mapping');
  });
});

import { describe, expect, it } from 'vitest';
import {
  decideMappingWrite,
  guessSighting,
  type MappingRecord,
  OUTCOME_OF_WRITE,
} from '../../src/sync/mapping.ts';

const DAY = 86_400;
const NOW = 1_767_225_600; // 2026-01-01T00:00:00Z
const REFRESH_AFTER = 6 * DAY;

const iso = (seconds: number) => new Date(seconds * 1000).toISOString();

function record(overrides: Partial<MappingRecord> = {}): MappingRecord {
  return {
    platformId: 99999,
    partnerUserId: 'abcdef123',
    firstSeen: iso(NOW - 30 * DAY),
    lastSeen: iso(NOW - DAY),
    lastChanged: iso(NOW - 30 * DAY),
    expiresAt: NOW + 89 * DAY,
    version: 4,
    ...overrides,
  };
}

describe('decideMappingWrite', () => {
  it('creates a mapping that does not exist', () => {
    expect(decideMappingWrite(undefined, 'abcdef123', NOW, REFRESH_AFTER)).toEqual({ kind: 'create' });
  });

  it('recreates an expired mapping that TTL has not removed yet, replacing its version', () => {
    const expired = record({ expiresAt: NOW - 1, version: 9 });
    expect(decideMappingWrite(expired, 'abcdef123', NOW, REFRESH_AFTER)).toEqual({
      kind: 'create',
      replacesVersion: 9,
    });
    expect(decideMappingWrite(record({ expiresAt: NOW }), 'other', NOW, REFRESH_AFTER)).toEqual({
      kind: 'create',
      replacesVersion: 4,
    });
  });

  it('records a changed partner id with the previous one', () => {
    expect(decideMappingWrite(record(), 'ghjkl1321', NOW, REFRESH_AFTER)).toEqual({
      kind: 'change',
      previousPartnerUserId: 'abcdef123',
    });
  });

  it('treats ids differing only in case as a change', () => {
    expect(decideMappingWrite(record(), 'ABCDEF123', NOW, REFRESH_AFTER).kind).toBe('change');
  });

  it('writes nothing for the same id seen again inside the refresh window', () => {
    expect(decideMappingWrite(record(), 'abcdef123', NOW, REFRESH_AFTER)).toEqual({ kind: 'none' });
    const almost = record({ lastSeen: iso(NOW - REFRESH_AFTER + 1) });
    expect(decideMappingWrite(almost, 'abcdef123', NOW, REFRESH_AFTER)).toEqual({ kind: 'none' });
  });

  it('refreshes the same id once the refresh window has passed', () => {
    const due = record({ lastSeen: iso(NOW - REFRESH_AFTER) });
    expect(decideMappingWrite(due, 'abcdef123', NOW, REFRESH_AFTER)).toEqual({
      kind: 'refresh',
      expectedVersion: 4,
    });
  });

  it('maps every write to the outcome reported to the caller', () => {
    expect(OUTCOME_OF_WRITE).toEqual({
      none: 'unchanged',
      create: 'stored',
      refresh: 'refreshed',
      change: 'changed',
    });
  });
});

describe('decideMappingWrite for static-token callbacks', () => {
  const staticLimits = { assurance: 'static' as const, staticChangeIntervalSeconds: DAY };

  it('refuses to replace an id a verified callback stored', () => {
    const verified = record({ verifiedAt: iso(NOW - 30 * DAY) });
    expect(decideMappingWrite(verified, 'planted', NOW, REFRESH_AFTER, staticLimits)).toEqual({
      kind: 'refuse',
      reason: 'static_token_cannot_replace',
    });
    expect(decideMappingWrite(verified, 'abcdef123', NOW, REFRESH_AFTER, staticLimits).kind).toBe('none');
  });

  it('changes an id only once the last change is older than the interval', () => {
    const recent = record({ lastChanged: iso(NOW - DAY / 2) });
    expect(decideMappingWrite(recent, 'other', NOW, REFRESH_AFTER, staticLimits)).toEqual({
      kind: 'refuse',
      reason: 'static_token_rate_limited',
    });
    expect(decideMappingWrite(record(), 'other', NOW, REFRESH_AFTER, staticLimits)).toEqual({
      kind: 'change',
      previousPartnerUserId: 'abcdef123',
    });
  });

  it('leaves verified callbacks free to change any id', () => {
    const verified = record({ verifiedAt: iso(NOW), lastChanged: iso(NOW) });
    expect(decideMappingWrite(verified, 'other', NOW, REFRESH_AFTER).kind).toBe('change');
  });
});

describe("guessSighting (the first write, from the browser's dmp_ss entry)", () => {
  const DIGEST = 'AbC-';
  it('no entry: a new mapping', () => {
    expect(guessSighting(undefined, DIGEST, NOW, REFRESH_AFTER)).toBe('new');
  });

  it('an entry naming another id: a change, whenever it was seen', () => {
    for (const atSeconds of [NOW - 60, NOW - 30 * DAY, NOW + 3600]) {
      expect(guessSighting({ atSeconds, idDigest: 'zzzz' }, DIGEST, NOW, REFRESH_AFTER)).toBe('changed');
    }
  });

  it('the same id: a repeat inside the interval, a refresh after it (or from a future time)', () => {
    expect(guessSighting({ atSeconds: NOW - DAY, idDigest: DIGEST }, DIGEST, NOW, REFRESH_AFTER)).toBe(
      'unchanged',
    );
    expect(
      guessSighting({ atSeconds: NOW - REFRESH_AFTER, idDigest: DIGEST }, DIGEST, NOW, REFRESH_AFTER),
    ).toBe('refresh');
    expect(guessSighting({ atSeconds: NOW + 60, idDigest: DIGEST }, DIGEST, NOW, REFRESH_AFTER)).toBe(
      'refresh',
    );
  });

  it('an entry from before digests: time alone decides, as it did', () => {
    expect(guessSighting({ atSeconds: NOW - DAY }, DIGEST, NOW, REFRESH_AFTER)).toBe('unchanged');
    expect(guessSighting({ atSeconds: NOW - 7 * DAY }, DIGEST, NOW, REFRESH_AFTER)).toBe('refresh');
  });
});

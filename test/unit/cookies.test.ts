import { describe, expect, it } from 'vitest';
import {
  COOKIE_DMP_USER,
  COOKIE_OPT_OUT,
  COOKIE_SYNC_ATTEMPTS,
  expireCookie,
  MAX_ATTEMPT_ENTRIES,
  parseCookies,
  parseSyncAttempts,
  recordSyncAttempt,
  serializeCookie,
} from '../../src/sync/cookies.ts';

const DAY = 86_400;
const NOW = 1_767_225_600;

function attributes(header: string): string[] {
  return header.split('; ').slice(1);
}

describe('serializeCookie', () => {
  it('sets Secure, HttpOnly, SameSite=None and Path=/ (third-party pixel context)', () => {
    const header = serializeCookie(COOKIE_DMP_USER, 'Qm9iQm9iQm9iQm9iQm9iQg', { maxAgeSeconds: 395 * DAY });
    expect(header.startsWith('dmp_uid=Qm9iQm9iQm9iQm9iQm9iQg; ')).toBe(true);
    expect(attributes(header)).toEqual(
      expect.arrayContaining(['Secure', 'HttpOnly', 'SameSite=None', 'Path=/', `Max-Age=${395 * DAY}`]),
    );
    expect(header).not.toMatch(/Domain=/);
    expect(header).not.toMatch(/Expires=/);
  });

  it('caps Max-Age at the browsers 400-day limit', () => {
    const header = serializeCookie(COOKIE_DMP_USER, 'x', { maxAgeSeconds: 1000 * DAY });
    expect(attributes(header)).toContain(`Max-Age=${400 * DAY}`);
  });

  it('floors fractional and clamps negative lifetimes', () => {
    expect(attributes(serializeCookie('a', 'b', { maxAgeSeconds: 59.9 }))).toContain('Max-Age=59');
    expect(attributes(serializeCookie('a', 'b', { maxAgeSeconds: -5 }))).toContain('Max-Age=0');
  });

  it('adds the configured domain', () => {
    const header = serializeCookie(COOKIE_OPT_OUT, '1', { maxAgeSeconds: DAY, domain: '.flx1.com' });
    expect(attributes(header)).toContain('Domain=.flx1.com');
  });

  it('expires a cookie with an empty value and Max-Age=0, keeping the same attributes', () => {
    const header = expireCookie(COOKIE_SYNC_ATTEMPTS, '.flx1.com');
    expect(header.startsWith('dmp_sa=; ')).toBe(true);
    expect(attributes(header)).toEqual(
      expect.arrayContaining([
        'Max-Age=0',
        'Secure',
        'HttpOnly',
        'SameSite=None',
        'Path=/',
        'Domain=.flx1.com',
      ]),
    );
  });
});

describe('parseCookies', () => {
  it("reads API Gateway's cookies array", () => {
    const jar = parseCookies(['dmp_uid=abc123abc', 'dmp_optout=1']);
    expect(Object.fromEntries(jar)).toEqual({ dmp_uid: 'abc123abc', dmp_optout: '1' });
  });

  it('splits items that carry several cookies (a=1; b=2)', () => {
    const jar = parseCookies(['a=1; b=2', 'c=3;d=4']);
    expect(Object.fromEntries(jar)).toEqual({ a: '1', b: '2', c: '3', d: '4' });
  });

  it('keeps the first occurrence of a name (the most specific cookie)', () => {
    expect(parseCookies(['dmp_uid=first', 'dmp_uid=second']).get('dmp_uid')).toBe('first');
    expect(parseCookies(['dmp_uid=first; dmp_uid=second']).get('dmp_uid')).toBe('first');
  });

  it('keeps = signs inside the value and an empty value', () => {
    const jar = parseCookies(['tok=a=b==', 'empty=']);
    expect(jar.get('tok')).toBe('a=b==');
    expect(jar.get('empty')).toBe('');
  });

  it('ignores garbage items', () => {
    const jar = parseCookies(['', ';;;', 'novalue', '=nameless', ' ; ok=1']);
    expect(Object.fromEntries(jar)).toEqual({ ok: '1' });
  });

  it('accepts an absent array', () => {
    expect(parseCookies(undefined).size).toBe(0);
  });
});

describe('dmp_sa sync attempts', () => {
  it('round trips an attempt at minute precision', () => {
    const value = recordSyncAttempt(new Map(), 99999, NOW + 59);
    expect(parseSyncAttempts(value)).toEqual(new Map([[99999, NOW]]));
  });

  it('records several platforms and replaces an earlier attempt for the same platform', () => {
    let attempts = parseSyncAttempts(recordSyncAttempt(new Map(), 1, NOW));
    attempts = parseSyncAttempts(recordSyncAttempt(attempts, 2, NOW + 60));
    attempts = parseSyncAttempts(recordSyncAttempt(attempts, 1, NOW + 120));
    expect(attempts).toEqual(
      new Map([
        [2, NOW + 60],
        [1, NOW + 120],
      ]),
    );
  });

  it(`keeps at most ${MAX_ATTEMPT_ENTRIES} entries, dropping the oldest`, () => {
    let value = '';
    for (let platform = 1; platform <= MAX_ATTEMPT_ENTRIES + 8; platform++) {
      value = recordSyncAttempt(parseSyncAttempts(value), platform, NOW + platform * 60);
    }
    const attempts = parseSyncAttempts(value);
    expect(attempts.size).toBe(MAX_ATTEMPT_ENTRIES);
    expect(attempts.has(8)).toBe(false);
    expect(attempts.has(9)).toBe(true);
    expect(attempts.get(MAX_ATTEMPT_ENTRIES + 8)).toBe(NOW + (MAX_ATTEMPT_ENTRIES + 8) * 60);
  });

  it('stays small: the full cookie with the largest ids is far below 4096 bytes', () => {
    let attempts = new Map<number, number>();
    for (let index = 0; index < 100; index++) {
      const value = recordSyncAttempt(attempts, 2_147_483_647 - index, NOW + 400 * DAY + index * 60);
      attempts = parseSyncAttempts(value);
    }
    const value = recordSyncAttempt(attempts, 2_147_483_000, NOW + 400 * DAY + 101 * 60);
    expect(parseSyncAttempts(value).size).toBe(MAX_ATTEMPT_ENTRIES);
    const header = serializeCookie(COOKIE_SYNC_ATTEMPTS, value, {
      maxAgeSeconds: 30 * DAY,
      domain: '.flx1.com',
    });
    expect(value.length).toBeLessThanOrEqual(MAX_ATTEMPT_ENTRIES * 24);
    expect(header.length).toBeLessThan(1024);
  });

  it('only uses characters that need no quoting in a cookie value', () => {
    const value = recordSyncAttempt(new Map([[5, NOW]]), 99999, NOW + 60);
    expect(value).toMatch(/^[0-9a-z:.]+$/);
  });

  it.each([
    [undefined],
    [''],
    ['garbage'],
    ['0:abc'],
    ['-1:abc'],
    ['01:abc'],
    ['99999:'],
    ['99999:ABC'],
    ['99999:123456789'],
    ['99999:abc:def'],
    ['1:abc'.padEnd(MAX_ATTEMPT_ENTRIES * 24 + 1, '.')],
  ])('ignores the malformed value %j', (value) => {
    expect(parseSyncAttempts(value).size).toBe(0);
  });

  it('keeps the readable entries of a partly damaged value', () => {
    const good = recordSyncAttempt(new Map([[7, NOW]]), 99999, NOW + 60);
    expect(parseSyncAttempts(`junk.${good}.%%`)).toEqual(
      new Map([
        [7, NOW],
        [99999, NOW + 60],
      ]),
    );
  });
});

import { describe, expect, it } from 'vitest';
import {
  COOKIE_DMP_USER,
  COOKIE_OPT_OUT,
  COOKIE_SYNC_ATTEMPTS,
  COOKIE_SYNCED,
  expireCookie,
  formatSyncedMappings,
  MAX_ATTEMPT_ENTRIES,
  MAX_SYNCED_LENGTH,
  PARTNER_ID_DIGEST_CHARS,
  parseCookies,
  parseSyncAttempts,
  parseSyncedMappings,
  partnerIdDigest,
  recordSyncAttempt,
  recordSyncedMapping,
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
    ['99999:abc:defg'],
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

describe('dmp_ss synced mappings', () => {
  const DMP = 'Qm9iQm9iQm9iQm9iQm9iQg';

  it('round trips an entry with the digest of the partner id, at minute precision', () => {
    const idDigest = partnerIdDigest(99999, DMP, 'abcdef123');
    const value = recordSyncedMapping(new Map(), 99999, { atSeconds: NOW + 59, idDigest });
    expect(value).toBe(`99999:${Math.floor(NOW / 60).toString(36)}:${idDigest}`);
    expect(parseSyncedMappings(value)).toEqual(new Map([[99999, { atSeconds: NOW, idDigest }]]));
  });

  it('reads cookies written before digests (no digest: the guess falls back on time alone)', () => {
    const old = recordSyncAttempt(new Map([[7, NOW]]), 99999, NOW + 60);
    expect(parseSyncedMappings(old)).toEqual(
      new Map([
        [7, { atSeconds: NOW, idDigest: undefined }],
        [99999, { atSeconds: NOW + 60, idDigest: undefined }],
      ]),
    );
    // Old and new entries side by side (a callback since added one).
    const mixed = recordSyncedMapping(parseSyncedMappings(old), 5, {
      atSeconds: NOW + 120,
      idDigest: 'AAAA',
    });
    expect(parseSyncedMappings(mixed).get(5)).toEqual({ atSeconds: NOW + 120, idDigest: 'AAAA' });
    expect(parseSyncedMappings(mixed).get(7)).toEqual({ atSeconds: NOW, idDigest: undefined });
  });

  it('drops an entry whose digest is of another length, and dmp_sa takes no digest at all', () => {
    const minutes = Math.floor(NOW / 60).toString(36);
    expect(parseSyncedMappings(`1:${minutes}:abc.2:${minutes}:abcde.3:${minutes}:ab_-`)).toEqual(
      new Map([[3, { atSeconds: NOW, idDigest: 'ab_-' }]]),
    );
    expect(parseSyncedMappings(`1:${minutes}:ab.c`).size).toBe(0);
    expect(parseSyncAttempts(`3:${minutes}:ab_-`).size).toBe(0);
  });

  it('the digest is short, cookie-safe, and says nothing readable about the id or the user', () => {
    const digest = partnerIdDigest(99999, DMP, 'abcdef123');
    expect(digest).toMatch(new RegExp(`^[A-Za-z0-9_-]{${PARTNER_ID_DIGEST_CHARS}}$`));
    expect(partnerIdDigest(99999, DMP, 'abcdef123')).toBe(digest);
    // Another id, another platform, another browser: another digest (unlinkable across browsers).
    expect(partnerIdDigest(99999, DMP, 'abcdef124')).not.toBe(digest);
    expect(partnerIdDigest(88888, DMP, 'abcdef123')).not.toBe(digest);
    expect(partnerIdDigest(99999, 'Qm9iQm9iQm9iQm9iQm9iQw', 'abcdef123')).not.toBe(digest);
    const value = formatSyncedMappings([[99999, { atSeconds: NOW, idDigest: digest }]]);
    expect(value).not.toContain('abcdef');
    expect(value).not.toContain(DMP);
  });

  it(`stays bounded: ${MAX_ATTEMPT_ENTRIES} entries with the largest ids and times, under 1 KB with its attributes`, () => {
    let value = '';
    for (let index = 0; index < 100; index++) {
      value = recordSyncedMapping(parseSyncedMappings(value), 2_147_483_647 - index, {
        atSeconds: NOW + 400 * DAY + index * 60,
        idDigest: partnerIdDigest(index, DMP, `partner-${index}`),
      });
    }
    const entries = parseSyncedMappings(value);
    expect(entries.size).toBe(MAX_ATTEMPT_ENTRIES);
    expect([...entries.values()].every((entry) => entry.idDigest !== undefined)).toBe(true);
    expect(value.length).toBeLessThanOrEqual(MAX_SYNCED_LENGTH);
    const header = serializeCookie(COOKIE_SYNCED, value, { maxAgeSeconds: 395 * DAY, domain: '.flx1.com' });
    expect(header.length).toBeLessThan(1024);
  });

  it('ignores a value longer than the bound whole', () => {
    const entry = `1:${Math.floor(NOW / 60).toString(36)}:AAAA`;
    const long = Array.from({ length: Math.ceil(MAX_SYNCED_LENGTH / entry.length) + 1 }, () => entry).join(
      '.',
    );
    expect(long.length).toBeGreaterThan(MAX_SYNCED_LENGTH);
    expect(parseSyncedMappings(long).size).toBe(0);
  });
});

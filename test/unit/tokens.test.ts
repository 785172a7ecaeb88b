import { describe, expect, it } from 'vitest';
import {
  isMintedToken,
  matchesStaticToken,
  mintSyncToken,
  type TokenKeys,
  verifyMintedToken,
} from '../../src/sync/tokens.ts';

const NOW = 1_767_225_600;
const KEYS: TokenKeys = {
  kid: 'k2',
  key: 'current-token-key-0002',
  previous: { k1: 'previous-token-key-001' },
};
const USER = 'Qm9iQm9iQm9iQm9iQm9iQg';
const OTHER_USER = 'QWxpY2VBbGljZUFsaWNlQQ';
const PLATFORM = 99999;
const MAX_AGE = 3600;

function mint(overrides: Partial<Parameters<typeof mintSyncToken>[0]> = {}, keys: TokenKeys = KEYS) {
  return mintSyncToken(
    { platformId: PLATFORM, dmpUserId: USER, nowSeconds: NOW, nonce: 'n0nce-AAAA', ...overrides },
    keys,
  );
}

function verify(
  token: string,
  overrides: Partial<Parameters<typeof verifyMintedToken>[0]> = {},
  keys = KEYS,
) {
  return verifyMintedToken(
    { token, platformId: PLATFORM, dmpUserId: USER, nowSeconds: NOW, maxAgeSeconds: MAX_AGE, ...overrides },
    keys,
  );
}

describe('mintSyncToken', () => {
  it('has the documented shape m1.<kid>.<issuedAt base36>.<nonce>.<mac>', () => {
    const token = mint();
    const [prefix, kid, issuedAt, nonce, mac, ...rest] = token.split('.');
    expect(prefix).toBe('m1');
    expect(kid).toBe('k2');
    expect(Number.parseInt(issuedAt ?? '', 36)).toBe(NOW);
    expect(nonce).toBe('n0nce-AAAA');
    expect(mac).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(rest).toEqual([]);
    expect(isMintedToken(token)).toBe(true);
  });

  it('is deterministic for an injected nonce and time', () => {
    expect(mint()).toBe(mint());
  });

  it('draws a fresh URL-safe nonce when none is injected', () => {
    const tokens = new Set(Array.from({ length: 50 }, () => mint({ nonce: undefined })));
    expect(tokens.size).toBe(50);
    for (const token of tokens) {
      expect(token).toMatch(/^[A-Za-z0-9._-]+$/);
      expect(verify(token)).toEqual({ valid: true });
    }
  });

  it('only uses characters that survive a query string without encoding', () => {
    expect(encodeURIComponent(mint())).toBe(mint());
  });
});

describe('verifyMintedToken', () => {
  it('accepts a token for the browser and platform it was minted for', () => {
    expect(verify(mint())).toEqual({ valid: true });
  });

  it('is bound to the DMP user: a callback URL copied into another browser is refused', () => {
    expect(verify(mint(), { dmpUserId: OTHER_USER })).toEqual({ valid: false, reason: 'token_mismatch' });
  });

  it('is bound to the platform: a token minted for one partner does not work for another', () => {
    expect(verify(mint(), { platformId: 88888 })).toEqual({ valid: false, reason: 'token_mismatch' });
    expect(verify(mint({ platformId: 88888 }))).toEqual({ valid: false, reason: 'token_mismatch' });
  });

  it('expires after maxAgeSeconds, inclusive of the last second', () => {
    expect(verify(mint(), { nowSeconds: NOW + MAX_AGE })).toEqual({ valid: true });
    expect(verify(mint(), { nowSeconds: NOW + MAX_AGE + 1 })).toEqual({
      valid: false,
      reason: 'token_expired',
    });
  });

  it('tolerates a minting clock up to 60 seconds ahead, not more', () => {
    expect(verify(mint({ nowSeconds: NOW + 60 }))).toEqual({ valid: true });
    expect(verify(mint({ nowSeconds: NOW + 61 }))).toEqual({ valid: false, reason: 'token_expired' });
  });

  it('ignores fractions of a second in the issue time', () => {
    expect(verify(mint({ nowSeconds: NOW + 0.999 }))).toEqual({ valid: true });
  });

  it('keeps accepting tokens signed with a previous key during rotation', () => {
    const oldKeys: TokenKeys = { kid: 'k1', key: 'previous-token-key-001', previous: {} };
    const token = mint({}, oldKeys);
    expect(verify(token)).toEqual({ valid: true });
    // Once k1 is retired it is an unknown key.
    expect(verify(token, {}, { ...KEYS, previous: {} })).toEqual({
      valid: false,
      reason: 'token_unknown_key',
    });
  });

  it('refuses a token whose key id is known but whose MAC was made with another key', () => {
    const forged = mint({}, { kid: 'k2', key: 'attacker-guess-key-0000', previous: {} });
    expect(verify(forged)).toEqual({ valid: false, reason: 'token_mismatch' });
  });

  it('refuses key ids that are Object prototype members', () => {
    const token = mint({}, { kid: 'constructor', key: 'whatever-key-000000', previous: {} });
    expect(verify(token)).toEqual({ valid: false, reason: 'token_unknown_key' });
  });

  it('refuses a token whose issue time was moved forward to extend its life', () => {
    const token = mint();
    const [prefix, kid, , nonce, mac] = token.split('.');
    const later = [prefix, kid, (NOW + 3000).toString(36), nonce, mac].join('.');
    expect(verify(later, { nowSeconds: NOW + 3700 })).toEqual({ valid: false, reason: 'token_mismatch' });
  });

  it('refuses a token with an altered nonce or MAC', () => {
    const token = mint();
    const [prefix, kid, issuedAt, nonce, mac] = token.split('.') as [string, string, string, string, string];
    const otherNonce = [prefix, kid, issuedAt, `${nonce.slice(0, -1)}B`, mac].join('.');
    const flipped = mac.startsWith('A') ? `B${mac.slice(1)}` : `A${mac.slice(1)}`;
    const otherMac = [prefix, kid, issuedAt, nonce, flipped].join('.');
    expect(verify(otherNonce)).toEqual({ valid: false, reason: 'token_mismatch' });
    expect(verify(otherMac)).toEqual({ valid: false, reason: 'token_mismatch' });
  });

  it.each([
    ['empty', ''],
    ['the seed static token', 'verysecure'],
    ['another version', 'm2.k2.abc.n0nce-AAAA.AAAAAAAAAAAAAAAAAAAAAA'],
    ['missing the MAC', 'm1.k2.abc.n0nce-AAAA'],
    ['a short MAC', 'm1.k2.abc.n0nce-AAAA.AAAAAAAAAAAAAAAAAAAAA'],
    ['a long MAC', 'm1.k2.abc.n0nce-AAAA.AAAAAAAAAAAAAAAAAAAAAAA'],
    ['a short nonce', 'm1.k2.abc.n0nce.AAAAAAAAAAAAAAAAAAAAAA'],
    ['an upper-case issue time', 'm1.k2.ABC.n0nce-AAAA.AAAAAAAAAAAAAAAAAAAAAA'],
    ['an extra segment', 'm1.k2.abc.n0nce-AAAA.AAAAAAAAAAAAAAAAAAAAAA.x'],
    ['a percent-encoded dot', 'm1%2Ek2.abc.n0nce-AAAA.AAAAAAAAAAAAAAAAAAAAAA'],
    ['a trailing line feed', `${'m1.k2.abc.n0nce-AAAA.AAAAAAAAAAAAAAAAAAAAAA'}\n`],
  ])('refuses a malformed token: %s', (_, token) => {
    expect(verify(token)).toEqual({ valid: false, reason: 'token_malformed' });
  });

  it('refuses a valid token with a line feed appended', () => {
    expect(verify(`${mint()}\n`)).toEqual({ valid: false, reason: 'token_malformed' });
  });
});

describe('isMintedToken', () => {
  it('tells minted tokens from the seed static token', () => {
    expect(isMintedToken('verysecure')).toBe(false);
    expect(isMintedToken('m1verysecure')).toBe(false);
    expect(isMintedToken('m1.x')).toBe(true);
  });
});

describe('matchesStaticToken', () => {
  it('matches the identical token only', () => {
    expect(matchesStaticToken('verysecure', 'verysecure')).toBe(true);
    expect(matchesStaticToken('verysecurf', 'verysecure')).toBe(false);
    expect(matchesStaticToken('VERYSECURE', 'verysecure')).toBe(false);
  });

  it('refuses prefixes, extensions and the empty string', () => {
    expect(matchesStaticToken('verysecur', 'verysecure')).toBe(false);
    expect(matchesStaticToken('verysecure1', 'verysecure')).toBe(false);
    expect(matchesStaticToken('', 'verysecure')).toBe(false);
  });

  it('compares unicode exactly', () => {
    expect(matchesStaticToken('sécurité-token', 'sécurité-token')).toBe(true);
    expect(matchesStaticToken('se\u0301curite\u0301-token', 'sécurité-token')).toBe(false);
  });
});

import { describe, expect, it } from 'vitest';
import {
  canonicalSyncString,
  decodeSignature,
  type SignedFields,
  signSyncCallback,
  type VerifyOptions,
  verifySyncSignature,
} from '../../src/sync/signature.ts';

const SECRET = 'partner-shared-secret-0001';
const NOW = 1_767_225_600; // 2026-01-01T00:00:00Z

const FIELDS: SignedFields = {
  pl: '99999',
  userid: 'abcdef123',
  plsec: 'verysecure',
  ts: String(NOW),
  kid: 'k1',
};

/**
 * What a partner gets by following the documentation with standard tools:
 *   printf 'dmp-sync-v1\n99999\nabcdef123\nverysecure\n1767225600\nk1' | openssl dgst -sha1 -hmac '…'
 */
const OPENSSL_SHA1_HEX = 'a3d78538a3c8432eb664dd9cf40ea731a40449fe';
const OPENSSL_SHA1_BASE64URL = 'o9eFOKPIQy62ZN2c9A6nMaQESf4';
const OPENSSL_SHA256_HEX = '1df6ad4893fa549681610ade3ee2ffaba60a6dfc90c449bd9e356a0a49cc6e7f';

const OPTIONS: VerifyOptions = {
  keys: { k1: SECRET },
  algorithm: 'sha1',
  maxSkewSeconds: 300,
  nowSeconds: NOW,
};

describe('canonicalSyncString', () => {
  it('is the documented version line and fields, joined by line feeds, without a trailing one', () => {
    expect(canonicalSyncString(FIELDS)).toBe('dmp-sync-v1\n99999\nabcdef123\nverysecure\n1767225600\nk1');
  });
});

describe('signSyncCallback', () => {
  it('matches an HMAC-SHA1 computed independently from the documented string', () => {
    expect(signSyncCallback(FIELDS, SECRET, 'sha1')).toBe(OPENSSL_SHA1_HEX);
  });

  it('matches an HMAC-SHA256 where the platform is configured so', () => {
    expect(signSyncCallback(FIELDS, SECRET, 'sha256')).toBe(OPENSSL_SHA256_HEX);
  });
});

describe('decodeSignature', () => {
  it('reads lowercase hex and unpadded base64url of the same MAC as the same bytes', () => {
    const fromHex = decodeSignature(OPENSSL_SHA1_HEX, 'sha1');
    expect(fromHex?.toString('hex')).toBe(OPENSSL_SHA1_HEX);
    expect(decodeSignature(OPENSSL_SHA1_BASE64URL, 'sha1')).toEqual(fromHex);
  });

  it.each([
    ['padded base64', `${OPENSSL_SHA1_BASE64URL}=`],
    ['standard base64 alphabet', 'o9eFOKPIQy62ZN2c9A6nMaQESf+'],
    ['hex one digit short', OPENSSL_SHA1_HEX.slice(1)],
    ['hex one digit long', `${OPENSSL_SHA1_HEX}0`],
    ['non-hex digit', `g${OPENSSL_SHA1_HEX.slice(1)}`],
    ['a SHA-256 length for SHA-1', OPENSSL_SHA256_HEX],
    ['empty', ''],
  ])('refuses %s', (_, sig) => {
    expect(decodeSignature(sig, 'sha1')).toBeUndefined();
  });

  it('expects 32 bytes for SHA-256', () => {
    expect(decodeSignature(OPENSSL_SHA256_HEX, 'sha256')?.length).toBe(32);
    expect(decodeSignature(OPENSSL_SHA1_HEX, 'sha256')).toBeUndefined();
  });
});

describe('verifySyncSignature', () => {
  it('accepts the documented example, signed in hex or base64url', () => {
    const hex = verifySyncSignature({ ...FIELDS, sig: OPENSSL_SHA1_HEX }, OPTIONS);
    const base64url = verifySyncSignature({ ...FIELDS, sig: OPENSSL_SHA1_BASE64URL }, OPTIONS);
    expect(hex).toEqual({ valid: true, timestamp: NOW, macId: OPENSSL_SHA1_BASE64URL });
    // Both spellings of one MAC share one replay key, so re-spelling cannot replay a callback.
    expect(base64url).toEqual(hex);
  });

  it('verifies SHA-256 signatures for a platform configured with sha256, and not SHA-1 ones', () => {
    const sha256 = { ...OPTIONS, algorithm: 'sha256' as const };
    expect(verifySyncSignature({ ...FIELDS, sig: OPENSSL_SHA256_HEX }, sha256).valid).toBe(true);
    expect(verifySyncSignature({ ...FIELDS, sig: OPENSSL_SHA1_HEX }, sha256)).toEqual({
      valid: false,
      reason: 'signature_malformed',
    });
  });

  it('signs the decoded user id, not its percent-encoding', () => {
    const userid = 'AbC+/x==';
    const sig = signSyncCallback({ ...FIELDS, userid }, SECRET, 'sha1');
    expect(verifySyncSignature({ ...FIELDS, userid, sig }, OPTIONS).valid).toBe(true);
    expect(verifySyncSignature({ ...FIELDS, userid: encodeURIComponent(userid), sig }, OPTIONS)).toEqual({
      valid: false,
      reason: 'signature_invalid',
    });
  });

  it.each(['sig', 'ts', 'kid', 'pl', 'userid', 'plsec'] as const)('reports a missing %s', (name) => {
    const fields: Record<string, string | undefined> = { ...FIELDS, sig: OPENSSL_SHA1_HEX };
    delete fields[name];
    expect(verifySyncSignature(fields, OPTIONS)).toEqual({ valid: false, reason: 'signature_missing' });
  });

  it.each([['-1'], ['1.5e9'], ['1767225600.0'], [' 1767225600'], ['1234567890123'], ['']])(
    'refuses the malformed timestamp %j',
    (ts) => {
      const sig = signSyncCallback({ ...FIELDS, ts }, SECRET, 'sha1');
      expect(verifySyncSignature({ ...FIELDS, ts, sig }, OPTIONS)).toEqual({
        valid: false,
        reason: 'signature_malformed',
      });
    },
  );

  it('refuses a signature that is neither hex nor base64url of the right length', () => {
    expect(verifySyncSignature({ ...FIELDS, sig: 'not-a-signature' }, OPTIONS)).toEqual({
      valid: false,
      reason: 'signature_malformed',
    });
  });

  it('refuses an unknown key id, also one that names an Object prototype member', () => {
    for (const kid of ['k2', 'constructor', '__proto__', 'toString']) {
      const sig = signSyncCallback({ ...FIELDS, kid }, SECRET, 'sha1');
      expect(verifySyncSignature({ ...FIELDS, kid, sig }, OPTIONS), kid).toEqual({
        valid: false,
        reason: 'signature_unknown_key',
      });
    }
  });

  it('accepts a signature made with the previous key while both keys are configured (rotation)', () => {
    const keys = { k1: SECRET, k2: 'the-next-shared-secret-02' };
    const withNew = signSyncCallback({ ...FIELDS, kid: 'k2' }, keys.k2, 'sha1');
    expect(verifySyncSignature({ ...FIELDS, sig: OPENSSL_SHA1_HEX }, { ...OPTIONS, keys }).valid).toBe(true);
    expect(verifySyncSignature({ ...FIELDS, kid: 'k2', sig: withNew }, { ...OPTIONS, keys }).valid).toBe(
      true,
    );
    // A signature made with k1's secret but labelled k2 is not valid.
    const mislabelled = signSyncCallback({ ...FIELDS, kid: 'k2' }, SECRET, 'sha1');
    expect(verifySyncSignature({ ...FIELDS, kid: 'k2', sig: mislabelled }, { ...OPTIONS, keys })).toEqual({
      valid: false,
      reason: 'signature_invalid',
    });
  });

  it('accepts a timestamp exactly at the skew limit on either side, and refuses one second beyond', () => {
    for (const [offset, valid] of [
      [-300, true],
      [300, true],
      [-301, false],
      [301, false],
    ] as const) {
      const ts = String(NOW + offset);
      const sig = signSyncCallback({ ...FIELDS, ts }, SECRET, 'sha1');
      const verdict = verifySyncSignature({ ...FIELDS, ts, sig }, OPTIONS);
      expect(verdict, `offset ${offset}`).toEqual(
        valid
          ? { valid: true, timestamp: NOW + offset, macId: expect.any(String) }
          : { valid: false, reason: 'signature_stale' },
      );
    }
  });

  it('refuses a request replayed a day later', () => {
    expect(
      verifySyncSignature({ ...FIELDS, sig: OPENSSL_SHA1_HEX }, { ...OPTIONS, nowSeconds: NOW + 86_400 }),
    ).toEqual({ valid: false, reason: 'signature_stale' });
  });

  it.each([
    ['pl', '88888'],
    ['userid', 'abcdef124'],
    ['plsec', 'verysecurf'],
    ['userid', 'abcdef123 '],
    ['plsec', ''],
  ] as const)('refuses a callback whose %s was altered to %j', (name, value) => {
    expect(verifySyncSignature({ ...FIELDS, [name]: value, sig: OPENSSL_SHA1_HEX }, OPTIONS)).toEqual({
      valid: false,
      reason: 'signature_invalid',
    });
  });

  it('refuses an altered timestamp inside the skew window', () => {
    expect(verifySyncSignature({ ...FIELDS, ts: String(NOW + 1), sig: OPENSSL_SHA1_HEX }, OPTIONS)).toEqual({
      valid: false,
      reason: 'signature_invalid',
    });
  });

  it('refuses a signature made with another secret', () => {
    const sig = signSyncCallback(FIELDS, 'someone-elses-secret-000', 'sha1');
    expect(verifySyncSignature({ ...FIELDS, sig }, OPTIONS)).toEqual({
      valid: false,
      reason: 'signature_invalid',
    });
  });

  /**
   * The replay guard of `/uid` remembers the `sig` text it has seen. Any other spelling of an
   * accepted MAC lets a captured callback be replayed inside the skew window. The documented
   * spellings are lowercase hex and unpadded base64url; other variants of them must not verify.
   */
  it('does not accept the uppercase spelling of a valid hex signature', () => {
    const uppercase = OPENSSL_SHA1_HEX.toUpperCase();
    expect(verifySyncSignature({ ...FIELDS, sig: uppercase }, OPTIONS).valid).toBe(false);
  });

  it('does not accept a base64url signature whose spare trailing bits were changed', () => {
    // 27 base64url characters carry 162 bits for a 160-bit MAC: the last character's low 2 bits are spare.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const index = alphabet.indexOf(OPENSSL_SHA1_BASE64URL.at(-1) ?? '');
    const spareBitsFlipped = `${OPENSSL_SHA1_BASE64URL.slice(0, -1)}${alphabet[index ^ 1]}`;
    expect(spareBitsFlipped).not.toBe(OPENSSL_SHA1_BASE64URL);
    expect(verifySyncSignature({ ...FIELDS, sig: spareBitsFlipped }, OPTIONS).valid).toBe(false);
  });
});

import { describe, expect, it } from 'vitest';
import {
  partnerStringToSign,
  signPartnerRequest,
  verifyPartnerRequestSignature,
} from '../../../src/connectors/auth/hmac.ts';

const KEY = 'example-hmac-key-0123456789abcdef';
const TS = 1_767_225_600; // 2026-01-01T00:00:00Z
const BODY = Buffer.from('[{"segment":12345,"userid":"abcdef123"}]', 'utf8');

/**
 * The documented example (docs/connectors-auth.md), computed independently:
 *   printf 'dmp-request-v1\nPOST\n/v1/segment\n1767225600\n[{"segment":12345,"userid":"abcdef123"}]' \
 *     | openssl dgst -sha256 -hmac 'example-hmac-key-0123456789abcdef'
 */
const EXAMPLE_SHA256 = '93e9ba67fed93b7760ee8f85c4be7640e4a1c6ab0a47d47271565ce08e647666';
const EXAMPLE_SHA1 = 'c9ffe9d51fdd4951afb2742610b1983299729e50';
/** printf 'dmp-request-v1\nPOST\n/v1/segment?title=My%%20segment\n1767225600\n' | openssl dgst -sha256 -hmac … */
const NO_BODY_SHA256 = 'bc602f553f9e17909091f9b6ca94a93296293726f3ba80ea379e2e4bda1ba7a4';

describe('partnerStringToSign', () => {
  it('is the version, upper-case method, path and query, timestamp, each ending in LF, then the body bytes', () => {
    const bytes = partnerStringToSign({
      method: 'post',
      pathAndQuery: '/v1/segment',
      timestamp: TS,
      body: BODY,
    });
    expect(bytes.toString('utf8')).toBe(
      'dmp-request-v1\nPOST\n/v1/segment\n1767225600\n[{"segment":12345,"userid":"abcdef123"}]',
    );
  });

  it('appends nothing when there is no body (the last line still ends in LF)', () => {
    const expected = Buffer.from('dmp-request-v1\nDELETE\n/v1/segment?id=1&userid=a%2Fb\n1767225600\n');
    expect(
      partnerStringToSign({ method: 'DELETE', pathAndQuery: '/v1/segment?id=1&userid=a%2Fb', timestamp: TS }),
    ).toEqual(expected);
    expect(
      partnerStringToSign({
        method: 'DELETE',
        pathAndQuery: '/v1/segment?id=1&userid=a%2Fb',
        timestamp: TS,
        body: new Uint8Array(),
      }),
    ).toEqual(expected);
  });

  it('keeps the percent-encoding of the path as sent', () => {
    const bytes = partnerStringToSign({
      method: 'POST',
      pathAndQuery: '/v1/segment?title=My%20segment',
      timestamp: TS,
    });
    expect(bytes.toString('latin1')).toContain('\n/v1/segment?title=My%20segment\n');
  });

  it('appends a UTF-8 body as its exact bytes', () => {
    const body = Buffer.from('{"name":"Käufer ✓ 🛒"}', 'utf8');
    const bytes = partnerStringToSign({ method: 'POST', pathAndQuery: '/s', timestamp: 5, body });
    const head = Buffer.from('dmp-request-v1\nPOST\n/s\n5\n', 'utf8');
    expect(bytes).toEqual(Buffer.concat([head, body]));
    expect(bytes.length).toBe(head.length + body.length);
    expect(body.length).toBeGreaterThan('{"name":"Käufer ✓ 🛒"}'.length);
  });

  it('appends a binary body untouched (no text decoding, NUL and 0xff kept)', () => {
    const body = new Uint8Array([0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe, 0x00, 0x0a, 0x0d]);
    const bytes = partnerStringToSign({ method: 'PUT', pathAndQuery: '/upload', timestamp: 7, body });
    expect([...bytes.subarray(bytes.length - body.length)]).toEqual([...body]);
    expect(bytes.subarray(0, bytes.length - body.length).toString('utf8')).toBe(
      'dmp-request-v1\nPUT\n/upload\n7\n',
    );
  });

  it.each([
    [{ method: 'POST', pathAndQuery: '/a\nb', timestamp: TS }],
    [{ method: 'PO\rST', pathAndQuery: '/a', timestamp: TS }],
    [{ method: '', pathAndQuery: '/a', timestamp: TS }],
    [{ method: 'POST', pathAndQuery: '/a', timestamp: 1.5 }],
    [{ method: 'POST', pathAndQuery: '/a', timestamp: -1 }],
  ])('refuses an ambiguous input %j', (input) => {
    expect(() => partnerStringToSign(input)).toThrow(TypeError);
  });
});

describe('signPartnerRequest', () => {
  it('matches the documented example vector (HMAC-SHA256, lowercase hex)', () => {
    expect(
      signPartnerRequest({
        method: 'POST',
        pathAndQuery: '/v1/segment',
        timestamp: TS,
        body: BODY,
        keyId: 'partner-key-1',
        key: KEY,
        algorithm: 'sha256',
      }),
    ).toEqual({
      'x-dmp-key-id': 'partner-key-1',
      'x-dmp-timestamp': '1767225600',
      'x-dmp-signature': EXAMPLE_SHA256,
    });
  });

  it('signs with HMAC-SHA1 where configured', () => {
    const headers = signPartnerRequest({
      method: 'POST',
      pathAndQuery: '/v1/segment',
      timestamp: TS,
      body: BODY,
      keyId: 'k',
      key: KEY,
      algorithm: 'sha1',
    });
    expect(headers['x-dmp-signature']).toBe(EXAMPLE_SHA1);
  });

  it('matches an independent vector without a body', () => {
    const headers = signPartnerRequest({
      method: 'POST',
      pathAndQuery: '/v1/segment?title=My%20segment',
      timestamp: TS,
      keyId: 'k',
      key: KEY,
      algorithm: 'sha256',
    });
    expect(headers['x-dmp-signature']).toBe(NO_BODY_SHA256);
  });
});

describe('verifyPartnerRequestSignature', () => {
  const signed = {
    method: 'POST',
    pathAndQuery: '/v1/segment?id=12345',
    body: BODY,
  };
  const headers = signPartnerRequest({
    ...signed,
    timestamp: TS,
    keyId: 'k1',
    key: KEY,
    algorithm: 'sha256',
  });
  const base = {
    ...signed,
    headers,
    keys: { k1: KEY, k0: 'an-older-key-still-accepted' },
    algorithm: 'sha256' as const,
    nowSeconds: TS + 10,
  };

  it('accepts the request as signed, and names the key', () => {
    expect(verifyPartnerRequestSignature(base)).toEqual({ valid: true, keyId: 'k1' });
  });

  it('reads header names in any case and single-element arrays', () => {
    const mixed = {
      'X-DMP-Key-Id': [headers['x-dmp-key-id']!],
      'X-Dmp-Timestamp': headers['x-dmp-timestamp'],
      'x-dmp-signature': headers['x-dmp-signature'],
    };
    expect(verifyPartnerRequestSignature({ ...base, headers: mixed })).toEqual({ valid: true, keyId: 'k1' });
  });

  it.each([
    ['method', { method: 'PUT' }],
    ['path', { pathAndQuery: '/v1/segment?id=12346' }],
    ['query encoding', { pathAndQuery: '/v1/segment?id=%31%32345' }],
    ['body', { body: Buffer.from('[{"segment":12345,"userid":"abcdef124"}]') }],
    ['missing body', { body: undefined }],
    ['algorithm', { algorithm: 'sha1' as const }],
  ])('rejects a tampered %s', (_, change) => {
    const verdict = verifyPartnerRequestSignature({ ...base, ...change });
    expect(verdict.valid).toBe(false);
  });

  it('rejects a tampered timestamp as invalid', () => {
    const verdict = verifyPartnerRequestSignature({
      ...base,
      headers: { ...headers, 'x-dmp-timestamp': String(TS + 1) },
    });
    expect(verdict).toEqual({ valid: false, reason: 'signature_invalid' });
  });

  it('rejects a stale or future timestamp beyond the skew window (default 300 s)', () => {
    expect(verifyPartnerRequestSignature({ ...base, nowSeconds: TS + 300 }).valid).toBe(true);
    expect(verifyPartnerRequestSignature({ ...base, nowSeconds: TS + 301 })).toEqual({
      valid: false,
      reason: 'signature_stale',
    });
    expect(verifyPartnerRequestSignature({ ...base, nowSeconds: TS - 301 })).toEqual({
      valid: false,
      reason: 'signature_stale',
    });
    expect(verifyPartnerRequestSignature({ ...base, nowSeconds: TS + 60, maxSkewSeconds: 30 }).valid).toBe(
      false,
    );
  });

  it('rejects an unknown key id, and a known id with the wrong key', () => {
    expect(verifyPartnerRequestSignature({ ...base, keys: { k2: KEY } })).toEqual({
      valid: false,
      reason: 'signature_unknown_key',
    });
    expect(verifyPartnerRequestSignature({ ...base, keys: { k1: 'another-key-entirely' } })).toEqual({
      valid: false,
      reason: 'signature_invalid',
    });
    expect(
      verifyPartnerRequestSignature({ ...base, headers: { ...headers, 'x-dmp-key-id': '__proto__' } }),
    ).toEqual({ valid: false, reason: 'signature_unknown_key' });
  });

  it('rejects missing and malformed headers', () => {
    const { 'x-dmp-signature': _, ...unsigned } = headers;
    expect(verifyPartnerRequestSignature({ ...base, headers: unsigned })).toEqual({
      valid: false,
      reason: 'signature_missing',
    });
    for (const bad of [
      { 'x-dmp-signature': headers['x-dmp-signature']!.toUpperCase() },
      { 'x-dmp-signature': headers['x-dmp-signature']!.slice(2) },
      { 'x-dmp-timestamp': '1767225600.0' },
      { 'x-dmp-key-id': ['k1', 'k1'] },
    ]) {
      expect(verifyPartnerRequestSignature({ ...base, headers: { ...headers, ...bad } })).toEqual({
        valid: false,
        reason: 'signature_malformed',
      });
    }
  });
});

import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * HMAC request signing for partners that authenticate our calls by a shared key (auth type
 * `hmac`; secret fields `api.keyId`, `api.key`). The signature covers the exact bytes we send.
 *
 * String to sign: the UTF-8 bytes of
 *
 *     dmp-request-v1\n<METHOD>\n<path and query>\n<timestamp>\n
 *
 * immediately followed by the request body's exact bytes (nothing when there is no body), where
 * `<METHOD>` is upper-case, `<path and query>` is the request target exactly as on the request
 * line (`/v1/segment?id=12345`, with the base URL's path prefix, percent-encoding untouched) and
 * `<timestamp>` the signing time in Unix seconds. Headers sent:
 *
 *     x-dmp-key-id: <keyId>
 *     x-dmp-timestamp: <timestamp>
 *     x-dmp-signature: <lowercase hex HMAC-SHA256 (or HMAC-SHA1) of the string to sign>
 *
 * See docs/connectors-auth.md for a worked example.
 */
export const PARTNER_SIGNATURE_VERSION = 'dmp-request-v1';

export const HEADER_KEY_ID = 'x-dmp-key-id';
export const HEADER_TIMESTAMP = 'x-dmp-timestamp';
export const HEADER_SIGNATURE = 'x-dmp-signature';

export type HmacAlgorithm = 'sha1' | 'sha256';

export interface StringToSignInput {
  readonly method: string;
  readonly pathAndQuery: string;
  readonly timestamp: number;
  readonly body?: Uint8Array | undefined;
}

const LINE_BREAK = /[\r\n]/;

export function partnerStringToSign(input: StringToSignInput): Buffer {
  const { method, pathAndQuery, timestamp, body } = input;
  if (!method || LINE_BREAK.test(method))
    throw new TypeError('method must be non-empty, without line breaks');
  if (LINE_BREAK.test(pathAndQuery)) throw new TypeError('pathAndQuery must not contain line breaks');
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) {
    throw new TypeError('timestamp must be a non-negative integer (Unix seconds)');
  }
  const head = Buffer.from(
    `${PARTNER_SIGNATURE_VERSION}\n${method.toUpperCase()}\n${pathAndQuery}\n${timestamp}\n`,
    'utf8',
  );
  return body && body.byteLength > 0 ? Buffer.concat([head, body]) : head;
}

function mac(input: StringToSignInput, key: string, algorithm: HmacAlgorithm): Buffer {
  return createHmac(algorithm, key).update(partnerStringToSign(input)).digest();
}

export function signPartnerRequest(
  input: StringToSignInput & {
    readonly keyId: string;
    readonly key: string;
    readonly algorithm: HmacAlgorithm;
  },
): Record<string, string> {
  if (!input.keyId || /[\r\n\0]/.test(input.keyId)) {
    throw new TypeError('keyId must be non-empty, without CR, LF or NUL');
  }
  return {
    [HEADER_KEY_ID]: input.keyId,
    [HEADER_TIMESTAMP]: String(input.timestamp),
    [HEADER_SIGNATURE]: mac(input, input.key, input.algorithm).toString('hex'),
  };
}

export type PartnerSignatureVerdict =
  | { readonly valid: true; readonly keyId: string }
  | { readonly valid: false; readonly reason: string };

const HEX_LENGTH: Record<HmacAlgorithm, number> = { sha1: 40, sha256: 64 };

function header(headers: Readonly<Record<string, string | string[] | undefined>>, name: string) {
  const values: string[] = [];
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== name || value === undefined) continue;
    values.push(...(Array.isArray(value) ? value : [value]));
  }
  return values;
}

/**
 * What a partner (and our reference partner) runs to check a signed request: a known key id, a
 * timestamp within `maxSkewSeconds` (default 300) of `nowSeconds`, and a MAC that matches in
 * constant time. `pathAndQuery` must be the request target as received (Node: `req.url`) and
 * `body` the raw body bytes, before any parsing. Replays inside the skew window are not caught
 * here: a partner that cares keeps the signatures it has seen for that long.
 */
export function verifyPartnerRequestSignature(input: {
  readonly method: string;
  readonly pathAndQuery: string;
  readonly body?: Uint8Array | undefined;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly keys: Readonly<Record<string, string>>;
  readonly algorithm: HmacAlgorithm;
  readonly nowSeconds: number;
  readonly maxSkewSeconds?: number;
}): PartnerSignatureVerdict {
  const keyIds = header(input.headers, HEADER_KEY_ID);
  const timestamps = header(input.headers, HEADER_TIMESTAMP);
  const signatures = header(input.headers, HEADER_SIGNATURE);
  if (keyIds.length === 0 || timestamps.length === 0 || signatures.length === 0) {
    return { valid: false, reason: 'signature_missing' };
  }
  if (keyIds.length > 1 || timestamps.length > 1 || signatures.length > 1) {
    return { valid: false, reason: 'signature_malformed' };
  }
  const keyId = keyIds[0]!;
  const ts = timestamps[0]!;
  const signature = signatures[0]!;
  if (!/^\d{1,12}$/.test(ts)) return { valid: false, reason: 'signature_malformed' };
  if (signature.length !== HEX_LENGTH[input.algorithm] || !/^[0-9a-f]+$/.test(signature)) {
    return { valid: false, reason: 'signature_malformed' };
  }
  const key = Object.hasOwn(input.keys, keyId) ? input.keys[keyId] : undefined;
  if (key === undefined) return { valid: false, reason: 'signature_unknown_key' };
  const timestamp = Number(ts);
  if (Math.abs(input.nowSeconds - timestamp) > (input.maxSkewSeconds ?? 300)) {
    return { valid: false, reason: 'signature_stale' };
  }
  let expected: Buffer;
  try {
    expected = mac(
      { method: input.method, pathAndQuery: input.pathAndQuery, timestamp, body: input.body },
      key,
      input.algorithm,
    );
  } catch {
    return { valid: false, reason: 'signature_malformed' };
  }
  if (!timingSafeEqual(expected, Buffer.from(signature, 'hex'))) {
    return { valid: false, reason: 'signature_invalid' };
  }
  return { valid: true, keyId };
}

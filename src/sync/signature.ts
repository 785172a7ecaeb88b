import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Signed sync callbacks. The partner proves that it, and not a third page, produced the `/uid`
 * redirect: it signs the decoded values of the callback's parameters with a secret shared per
 * platform, identified by a key id so keys can rotate. The secret never travels.
 *
 * String to sign (UTF-8, fields joined by a line feed, no trailing line feed):
 *
 *     dmp-sync-v1
 *     <pl>
 *     <userid>
 *     <plsec>
 *     <ts>
 *     <kid>
 *
 * where each value is the parameter as decoded from the query string (the partner's user id as it
 * means it, not its percent-encoding), `ts` is the signing time in Unix seconds and `kid` the key
 * id. `sig` is HMAC-SHA1 (or HMAC-SHA256 where the platform is configured so) of that string,
 * sent as lowercase hex or as unpadded base64url.
 */
export const SIGNATURE_VERSION = 'dmp-sync-v1';

export type SignatureAlgorithm = 'sha1' | 'sha256';

export interface SignedFields {
  readonly pl: string;
  readonly userid: string;
  readonly plsec: string;
  readonly ts: string;
  readonly kid: string;
}

export function canonicalSyncString(fields: SignedFields): string {
  return [SIGNATURE_VERSION, fields.pl, fields.userid, fields.plsec, fields.ts, fields.kid].join('\n');
}

function mac(fields: SignedFields, secret: string, algorithm: SignatureAlgorithm): Buffer {
  return createHmac(algorithm, secret).update(canonicalSyncString(fields), 'utf8').digest();
}

/** What a partner computes; also used by the reference partner and the tests. */
export function signSyncCallback(
  fields: SignedFields,
  secret: string,
  algorithm: SignatureAlgorithm,
): string {
  return mac(fields, secret, algorithm).toString('hex');
}

const DIGEST_BYTES: Record<SignatureAlgorithm, number> = { sha1: 20, sha256: 32 };

/**
 * Decodes `sig` from lowercase hex or unpadded base64url; undefined when it is neither, of the wrong
 * length, or not the one canonical spelling (base64url's spare trailing bits must be zero), so
 * that a signature cannot be re-spelled to slip past the replay guard.
 */
export function decodeSignature(sig: string, algorithm: SignatureAlgorithm): Buffer | undefined {
  const bytes = DIGEST_BYTES[algorithm];
  if (sig.length === bytes * 2 && /^[0-9a-f]+$/.test(sig)) return Buffer.from(sig, 'hex');
  if (sig.length === Math.ceil((bytes * 4) / 3) && /^[A-Za-z0-9_-]+$/.test(sig)) {
    const decoded = Buffer.from(sig, 'base64url');
    return decoded.length === bytes && decoded.toString('base64url') === sig ? decoded : undefined;
  }
  return undefined;
}

export type SignatureVerdict =
  | {
      readonly valid: true;
      readonly timestamp: number;
      /** The MAC's bytes, base64url: the same whichever spelling the partner sent (replay key). */
      readonly macId: string;
    }
  | { readonly valid: false; readonly reason: SignatureRejection };

export type SignatureRejection =
  | 'signature_missing'
  | 'signature_malformed'
  | 'signature_unknown_key'
  | 'signature_stale'
  | 'signature_invalid';

export interface VerifyOptions {
  readonly keys: Readonly<Record<string, string>>;
  readonly algorithm: SignatureAlgorithm;
  readonly maxSkewSeconds: number;
  readonly nowSeconds: number;
}

/**
 * Checks a callback's signature: known key id, timestamp inside the skew window, and a MAC that
 * matches in constant time. Replays inside the window are the caller's: a replay guard for
 * signatures over the static token, the minted token's binding to one browser otherwise.
 */
export function verifySyncSignature(
  fields: Partial<SignedFields> & { readonly sig?: string | undefined },
  options: VerifyOptions,
): SignatureVerdict {
  const { pl, userid, plsec, ts, kid, sig } = fields;
  if (sig === undefined || ts === undefined || kid === undefined)
    return { valid: false, reason: 'signature_missing' };
  if (pl === undefined || userid === undefined || plsec === undefined) {
    return { valid: false, reason: 'signature_missing' };
  }
  if (!/^\d{1,12}$/.test(ts)) return { valid: false, reason: 'signature_malformed' };
  const given = decodeSignature(sig, options.algorithm);
  if (!given) return { valid: false, reason: 'signature_malformed' };
  const secret = Object.hasOwn(options.keys, kid) ? options.keys[kid] : undefined;
  if (secret === undefined) return { valid: false, reason: 'signature_unknown_key' };
  const timestamp = Number(ts);
  if (Math.abs(options.nowSeconds - timestamp) > options.maxSkewSeconds) {
    return { valid: false, reason: 'signature_stale' };
  }
  const expected = mac({ pl, userid, plsec, ts, kid }, secret, options.algorithm);
  if (!timingSafeEqual(expected, given)) return { valid: false, reason: 'signature_invalid' };
  return { valid: true, timestamp, macId: given.toString('base64url') };
}

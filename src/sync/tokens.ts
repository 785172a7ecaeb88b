import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * The `plsec` value of a sync callback is one of two kinds:
 *
 * - the seed's static per-platform token, for partner-initiated syncs: proves the caller knows
 *   the platform's secret, nothing more;
 * - a token `/sync` mints for the one redirect it starts: `m1.<kid>.<issuedAt>.<nonce>.<mac>`,
 *   an HMAC-SHA256 (truncated to 128 bits) over platform, DMP user, issue time and a nonce. It is
 *   only valid for that browser's DMP user and platform, so a callback URL taken from one browser
 *   cannot plant a partner id on another.
 */
const MINTED_PREFIX = 'm1';
const MAC_BYTES = 16;

export interface TokenKeys {
  /** Key id and key that sign new tokens. */
  readonly kid: string;
  readonly key: string;
  /** Earlier keys still accepted, by key id. */
  readonly previous: Readonly<Record<string, string>>;
}

export interface MintInput {
  readonly platformId: number;
  readonly dmpUserId: string;
  readonly nowSeconds: number;
  /** Injected for deterministic tests; random otherwise. */
  readonly nonce?: string;
}

function tokenMac(
  key: string,
  kid: string,
  platformId: number,
  dmpUserId: string,
  issuedAt: string,
  nonce: string,
) {
  return createHmac('sha256', key)
    .update([MINTED_PREFIX, kid, String(platformId), dmpUserId, issuedAt, nonce].join('\n'), 'utf8')
    .digest()
    .subarray(0, MAC_BYTES);
}

/**
 * Nonces come from a pooled random buffer, refilled 512 nonces at a time: one `randomBytes` call
 * per token was the largest single cost of a callback (docs/performance.md). Still 64
 * unpredictable bits each, never reused.
 */
const NONCE_BYTES = 8;
let noncePool = Buffer.alloc(0);
let nonceOffset = 0;

function nextNonce(): string {
  if (nonceOffset + NONCE_BYTES > noncePool.length) {
    noncePool = randomBytes(NONCE_BYTES * 512);
    nonceOffset = 0;
  }
  const nonce = noncePool.subarray(nonceOffset, nonceOffset + NONCE_BYTES).toString('base64url');
  nonceOffset += NONCE_BYTES;
  return nonce;
}

export function mintSyncToken(input: MintInput, keys: TokenKeys): string {
  const issuedAt = Math.floor(input.nowSeconds).toString(36);
  const nonce = input.nonce ?? nextNonce();
  const mac = tokenMac(keys.key, keys.kid, input.platformId, input.dmpUserId, issuedAt, nonce);
  return [MINTED_PREFIX, keys.kid, issuedAt, nonce, mac.toString('base64url')].join('.');
}

export function isMintedToken(token: string): boolean {
  return token.startsWith(`${MINTED_PREFIX}.`);
}

export type TokenRejection = 'token_malformed' | 'token_unknown_key' | 'token_expired' | 'token_mismatch';

export type TokenVerdict =
  | { readonly valid: true }
  | { readonly valid: false; readonly reason: TokenRejection };

const MINTED_SHAPE =
  /^m1\.([A-Za-z0-9_-]{1,16})\.([0-9a-z]{1,10})\.([A-Za-z0-9_-]{6,32})\.([A-Za-z0-9_-]{22})$/;

export interface VerifyMintedInput {
  readonly token: string;
  readonly platformId: number;
  /** The DMP user of the browser presenting the callback (its cookie), not anything in the URL. */
  readonly dmpUserId: string;
  readonly nowSeconds: number;
  readonly maxAgeSeconds: number;
}

/** Allows this much clock difference between the Lambda that minted and the one verifying. */
const FUTURE_TOLERANCE_SECONDS = 60;

export function verifyMintedToken(input: VerifyMintedInput, keys: TokenKeys): TokenVerdict {
  const match = MINTED_SHAPE.exec(input.token);
  if (!match) return { valid: false, reason: 'token_malformed' };
  const [, kid, issuedAt, nonce, macText] = match as unknown as [string, string, string, string, string];
  const key =
    kid === keys.kid ? keys.key : Object.hasOwn(keys.previous, kid) ? keys.previous[kid] : undefined;
  if (key === undefined) return { valid: false, reason: 'token_unknown_key' };
  const issuedSeconds = Number.parseInt(issuedAt, 36);
  const age = input.nowSeconds - issuedSeconds;
  if (age > input.maxAgeSeconds || age < -FUTURE_TOLERANCE_SECONDS)
    return { valid: false, reason: 'token_expired' };
  const expected = tokenMac(key, kid, input.platformId, input.dmpUserId, issuedAt, nonce);
  const given = Buffer.from(macText, 'base64url');
  if (given.length !== MAC_BYTES || !timingSafeEqual(expected, given))
    return { valid: false, reason: 'token_mismatch' };
  return { valid: true };
}

/**
 * Compares a presented static token with the platform's in constant time: both are hashed first,
 * so neither the content nor the length of the secret leaks through timing.
 */
export function matchesStaticToken(presented: string, expected: string): boolean {
  const a = createHash('sha256').update(presented, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}

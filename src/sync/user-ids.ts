import { randomBytes } from 'node:crypto';

/**
 * Partner user ids arrive from whatever a partner's redirect produced: unreplaced macros, sentinel
 * values for "no id", double-encoded junk and oversized strings all show up in the wild. Only a
 * plausible id is stored.
 */

/** Values partners send when they have no id. Compared case-insensitively. */
const SENTINEL_IDS = new Set([
  '0',
  '-1',
  'null',
  'undefined',
  'nil',
  'none',
  'nan',
  'false',
  'true',
  'unknown',
  'optout',
  'opt-out',
  'opt_out',
  '00000000-0000-0000-0000-000000000000',
]);

/**
 * Printable ASCII without space, quotes, ampersand, angle brackets, backslash, backtick, braces,
 * brackets, `%`, `$`, `#` or `|`: covers UUIDs, base64/base64url, hex, numeric and dotted ids while ruling
 * out unreplaced macros (`[[USERID]]`, `${UID}`, `{{uid}}`, `$UID`, `#PMUID`, `%%ID%%`) and
 * anything that is still percent-encoded.
 */
const PARTNER_ID_CHARSET = /^[A-Za-z0-9._~+/=:@!*,;()-]+$/;

export type PartnerIdRejection =
  | 'userid_missing'
  | 'userid_too_long'
  | 'userid_charset'
  | 'userid_unreplaced_macro'
  | 'userid_sentinel';

export type Validated<T, R> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly reason: R };

export interface PartnerIdRules {
  readonly maxUserIdLength: number;
  readonly userIdMacro: string;
  readonly sentinelUserIds: readonly string[];
}

const MACRO_SHAPES = [/\[\[.*\]\]/, /\{\{.*\}\}/, /\$\{.*\}/, /\$[A-Z_]{2,}/, /%%.*%%/, /#[A-Z_]{3,}/];

export function validatePartnerUserId(
  raw: string | undefined,
  rules: PartnerIdRules,
): Validated<string, PartnerIdRejection> {
  if (raw === undefined || raw.length === 0) return { ok: false, reason: 'userid_missing' };
  if (raw.length > rules.maxUserIdLength) return { ok: false, reason: 'userid_too_long' };
  if (raw === rules.userIdMacro || MACRO_SHAPES.some((shape) => shape.test(raw))) {
    return { ok: false, reason: 'userid_unreplaced_macro' };
  }
  if (!PARTNER_ID_CHARSET.test(raw)) return { ok: false, reason: 'userid_charset' };
  const lower = raw.toLowerCase();
  if (
    SENTINEL_IDS.has(lower) ||
    /^0+$/.test(raw) ||
    rules.sentinelUserIds.some((s) => s.toLowerCase() === lower)
  ) {
    return { ok: false, reason: 'userid_sentinel' };
  }
  return { ok: true, value: raw };
}

/** The DMP's own user id, as carried by the `dmp_uid` cookie. Existing DMP ids are opaque too. */
const DMP_USER_ID = /^[A-Za-z0-9._-]{8,128}$/;

export function isValidDmpUserId(value: string | undefined): value is string {
  return value !== undefined && DMP_USER_ID.test(value);
}

/** 128 random bits, base64url: 22 characters, unguessable, no personal data. */
export function mintDmpUserId(): string {
  return randomBytes(16).toString('base64url');
}

/** Platform ids in query strings: a positive decimal integer without sign or leading zeros. */
export function parsePlatformId(raw: string | undefined): number | undefined {
  if (raw === undefined || !/^[1-9]\d{0,9}$/.test(raw)) return undefined;
  const value = Number(raw);
  return value <= 2_147_483_647 ? value : undefined;
}

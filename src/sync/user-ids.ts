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
  '(null)',
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
  'n/a',
  'na',
  'n.a.',
  'empty',
  'blank',
  'void',
  'anonymous',
  'guest',
  'notset',
  'not_set',
  'not-set',
  'noid',
  'no_id',
  'no-id',
  'nouser',
  'no_user',
  'invalid',
  'error',
  'test',
  'userid',
  'user_id',
  'uid',
  'id',
  '00000000-0000-0000-0000-000000000000',
]);

/**
 * The strict default alphabet: letters, digits and `. _ ~ -` (UUIDs, hex, numeric, dotted and
 * base64url ids). Safe in a URL, a TSV or a CSV file without quoting. A platform may add some of
 * `+ / = : @ ! * ( )` (`sync.userIdExtraCharacters`, e.g. `+/=` for base64 ids); whitespace,
 * control characters, `,` `;` quotes, `&` `<` `>` `%` `$` `#` `|` `\` and brackets never pass.
 */
const STRICT_ALPHABET = 'A-Za-z0-9._~\\-';
const alphabets = new Map<string, RegExp>();
function alphabetOf(extra: string): RegExp {
  let pattern = alphabets.get(extra);
  if (!pattern) {
    const escaped = [...new Set(extra)].map((char) => `\\${char}`).join('');
    pattern = new RegExp(`^[${STRICT_ALPHABET}${escaped}]+$`);
    alphabets.set(extra, pattern);
  }
  return pattern;
}

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
  /** Characters allowed besides the strict alphabet (see above); none by default. */
  readonly userIdExtraCharacters?: string;
}

/**
 * Unreplaced macros, in the spellings partners and ad servers use: `[[USERID]]`, `{{uid}}`,
 * `${UID}`, `$UID`, `#PMUID`, `%%ID%%`, `@@USERID@@`, `__UID__`, `!!UID!!`, `##UID##`, `[UID]`,
 * `{UID}`, `<UID>`, `%UID%`, and a bare upper-case macro name such as `USERID` or `PARTNER_UID`.
 */
const MACRO_SHAPES = [
  /\[\[.*\]\]/,
  /\{\{.*\}\}/,
  /\$\{.*\}/,
  /\$[A-Z_]{2,}/,
  /%%.*%%/,
  /#[A-Z_]{3,}/,
  /^(@@|__|!!|##|\*\*|~~|--|\.\.)[A-Za-z_][A-Za-z0-9_]*\1$/,
  /^[[{<%][A-Z_][A-Z0-9_]*[\]}>%]$/,
  /^_[A-Z][A-Z0-9_]*_$/,
  /^[A-Z_]*(USER|UID|_ID$|^ID$|BUYER|PUID|MACRO)[A-Z_]*$/,
];

/** Values that would be a URL (or script) rather than an id, whatever the alphabet allows. */
const SCHEME = /^(javascript|vbscript|data|https?|file|about|blob):/i;

export function validatePartnerUserId(
  raw: string | undefined,
  rules: PartnerIdRules,
): Validated<string, PartnerIdRejection> {
  if (raw === undefined || raw.length === 0) return { ok: false, reason: 'userid_missing' };
  if (raw.length > rules.maxUserIdLength) return { ok: false, reason: 'userid_too_long' };
  const macroName = rules.userIdMacro.replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '');
  if (
    raw === rules.userIdMacro ||
    (macroName !== '' && raw.toLowerCase() === macroName.toLowerCase()) ||
    MACRO_SHAPES.some((shape) => shape.test(raw))
  ) {
    return { ok: false, reason: 'userid_unreplaced_macro' };
  }
  const lower = raw.toLowerCase();
  if (
    SENTINEL_IDS.has(lower) ||
    /^(.)\1{3,}$/.test(raw) ||
    /^[0-]+$/.test(raw) ||
    rules.sentinelUserIds.some((s) => s.toLowerCase() === lower)
  ) {
    return { ok: false, reason: 'userid_sentinel' };
  }
  if (SCHEME.test(raw) || !alphabetOf(rules.userIdExtraCharacters ?? '').test(raw))
    return { ok: false, reason: 'userid_charset' };
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

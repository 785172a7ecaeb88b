import { describe, expect, it } from 'vitest';
import {
  isValidDmpUserId,
  mintDmpUserId,
  type PartnerIdRules,
  parsePlatformId,
  validatePartnerUserId,
} from '../../src/sync/user-ids.ts';

const RULES: PartnerIdRules = { maxUserIdLength: 256, userIdMacro: '[[USERID]]', sentinelUserIds: [] };

const rejection = (raw: string | undefined, rules: PartnerIdRules = RULES) => {
  const result = validatePartnerUserId(raw, rules);
  return result.ok ? undefined : result.reason;
};

describe('validatePartnerUserId accepts plausible ids', () => {
  it.each([
    ['the seed example', 'abcdef123'],
    ['a UUID', '3f2b8c1e-9d4a-4e7b-8f6c-2a1d0e9b7c55'],
    ['an upper-case UUID', '3F2B8C1E-9D4A-4E7B-8F6C-2A1D0E9B7C55'],
    ['base64url', 'q83vEjRWeJA-_w'],
    ['a numeric id', '8237498237492834'],
    ['a dotted id', 'AMsySZa.1745838000.3'],
    ['hex', 'deadbeef00'],
    ['a single character', 'x'],
    ['an id containing 0 and null as parts', 'null0-user'],
  ])('%s', (_, id) => {
    expect(validatePartnerUserId(id, RULES)).toEqual({ ok: true, value: id });
  });

  it('accepts an id exactly at the configured maximum length', () => {
    expect(validatePartnerUserId('ab'.repeat(128), RULES).ok).toBe(true);
    expect(validatePartnerUserId('ab'.repeat(8), { ...RULES, maxUserIdLength: 16 }).ok).toBe(true);
  });

  it('accepts base64 with padding where the platform adds + / = to the alphabet', () => {
    const base64 = 'q83vEjRWeJA+/w==';
    expect(validatePartnerUserId(base64, { ...RULES, userIdExtraCharacters: '+/=' })).toEqual({
      ok: true,
      value: base64,
    });
    expect(rejection(base64)).toBe('userid_charset');
  });
});

describe('validatePartnerUserId refuses', () => {
  it('a missing or empty id', () => {
    expect(rejection(undefined)).toBe('userid_missing');
    expect(rejection('')).toBe('userid_missing');
  });

  it('an id one character over the configured maximum', () => {
    expect(rejection('a'.repeat(257))).toBe('userid_too_long');
    expect(rejection('a'.repeat(17), { ...RULES, maxUserIdLength: 16 })).toBe('userid_too_long');
  });

  it.each([
    '[[USERID]]',
    '[[UID]]',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a partner's macro spelling, not a template
    '${UID}',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a partner's macro spelling, not a template
    '${user_id}',
    '{{uid}}',
    '{{ USER_ID }}',
    '$UID',
    '$USER_ID',
    '#PMUID',
    '%%ID%%',
    '%%USER_ID%%',
    'abc[[USERID]]',
  ])('the unreplaced macro %s', (raw) => {
    expect(rejection(raw)).toBe('userid_unreplaced_macro');
  });

  it("the partner's configured custom macro, left as it was", () => {
    expect(rejection('__PARTNER_UID__', { ...RULES, userIdMacro: '__PARTNER_UID__' })).toBe(
      'userid_unreplaced_macro',
    );
    expect(rejection('PARTNER-UID-1', { ...RULES, userIdMacro: '{PARTNER-UID-1}' })).toBe(
      'userid_unreplaced_macro',
    );
    expect(rejection('partner-uid-1')).toBeUndefined();
  });

  it.each([
    ['javascript:alert(1)', 'userid_charset'],
    ['@@USERID@@', 'userid_unreplaced_macro'],
    ['__UID__', 'userid_unreplaced_macro'],
    ['!!UID!!', 'userid_unreplaced_macro'],
    ['##UID##', 'userid_unreplaced_macro'],
    ['<UID>', 'userid_unreplaced_macro'],
    ['USERID', 'userid_unreplaced_macro'],
    ['PARTNER_UID', 'userid_unreplaced_macro'],
    ['(null)', 'userid_sentinel'],
    ['N/A', 'userid_sentinel'],
    ['a,b', 'userid_charset'],
    ['a;b', 'userid_charset'],
    ['a=b', 'userid_charset'],
    ['a+b', 'userid_charset'],
    ['a\tb', 'userid_charset'],
    ['xxxx', 'userid_sentinel'],
    ['----', 'userid_sentinel'],
  ])('the junk id %j: %s', (id, reason) => {
    expect(rejection(id.replace('\\t', '\t'))).toBe(reason);
  });

  it('never lets a tab, comma or semicolon through, whatever the platform adds', () => {
    const rules = { ...RULES, userIdExtraCharacters: '+/=:@!*()' };
    for (const id of ['a\tb', 'a,b', 'a;b', 'a b', 'a"b', 'a%2Cb'])
      expect(rejection(id, rules)).toBe('userid_charset');
    expect(rejection('javascript:alert(1)', rules)).toBe('userid_charset');
    expect(validatePartnerUserId('a:b@c', rules).ok).toBe(true);
  });

  it.each([
    '0',
    '-1',
    'null',
    'NULL',
    'Null',
    'undefined',
    'nil',
    'none',
    'NaN',
    'false',
    'true',
    'unknown',
    'optout',
    'OPT-OUT',
    'opt_out',
    '00000000-0000-0000-0000-000000000000',
    '000000000000',
    '00000000000000000000000000000000',
  ])('the "no id" sentinel %s', (raw) => {
    expect(rejection(raw)).toBe('userid_sentinel');
  });

  it('sentinels configured for the platform, case-insensitively', () => {
    const rules = { ...RULES, sentinelUserIds: ['NO_COOKIE', 'xxx'] };
    expect(rejection('no_cookie', rules)).toBe('userid_sentinel');
    expect(rejection('XXX', rules)).toBe('userid_sentinel');
    expect(rejection('no_cookie')).toBeUndefined();
  });

  it.each([
    ['a space', 'abc def'],
    ['a leading space', ' abcdef'],
    ['a tab', 'abc\tdef'],
    ['a line feed', 'abc\ndef'],
    ['a double quote', 'abc"def'],
    ['a single quote', "abc'def"],
    ['a backtick', 'abc`def'],
    ['an angle bracket', 'abc<script>'],
    ['a percent-encoded value', 'abc%20def'],
    ['a double-encoded value', 'abc%2520def'],
    ['a backslash', 'abc\\def'],
    ['a pipe', 'abc|def'],
    ['a dollar sign', 'abc$def'],
    ['a hash', 'abc#def'],
    ['a single brace', 'abc{def'],
    ['a single bracket', 'abc[def'],
    ['non-ASCII letters', 'abcdéf'],
    ['an emoji', 'abc🙂'],
    ['a NUL byte', 'abc\u0000def'],
    ['a zero-width space', 'abc\u200bdef'],
  ])('an id containing %s', (_, raw) => {
    expect(rejection(raw)).toBe('userid_charset');
  });
});

describe('isValidDmpUserId', () => {
  it.each(['Qm9iQm9iQm9iQm9iQm9iQg', 'legacy.dmp.user-0001', 'abcdefgh', 'a'.repeat(128)])(
    'accepts %s',
    (id) => {
      expect(isValidDmpUserId(id)).toBe(true);
    },
  );

  it.each([
    undefined,
    '',
    'short',
    'abcdefg',
    'a'.repeat(129),
    'has space1',
    'semi;colon',
    'quote"quote',
    'plus+plus1',
    'slash/slash',
    'équipe-0001',
  ])('refuses %j', (id) => {
    expect(isValidDmpUserId(id)).toBe(false);
  });
});

describe('mintDmpUserId', () => {
  it('is 22 base64url characters (128 bits) and a valid DMP user id', () => {
    const id = mintDmpUserId();
    expect(id).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(Buffer.from(id, 'base64url')).toHaveLength(16);
    expect(isValidDmpUserId(id)).toBe(true);
  });

  it('does not repeat', () => {
    const ids = new Set(Array.from({ length: 10_000 }, () => mintDmpUserId()));
    expect(ids.size).toBe(10_000);
  });
});

describe('parsePlatformId', () => {
  it.each([
    ['1', 1],
    ['99999', 99999],
    ['2147483647', 2_147_483_647],
  ])('reads %s', (raw, id) => {
    expect(parsePlatformId(raw)).toBe(id);
  });

  it.each([
    undefined,
    '',
    '0',
    '-1',
    '+1',
    '01',
    '00099999',
    '1e3',
    '1.0',
    '0x10',
    ' 1',
    '1 ',
    '1\n',
    '99999,88888',
    '2147483648',
    '9999999999',
    '99999999999',
    '١٢٣',
  ])('refuses %j', (raw) => {
    expect(parsePlatformId(raw)).toBeUndefined();
  });
});

import { describe, expect, it } from 'vitest';
import { basicAuthForms, redact, secretForms } from '../../../src/connectors/http/redact.ts';

describe('redact', () => {
  it('replaces every occurrence of every secret', () => {
    expect(redact('a=s3cret b=s3cret c=t0ken', ['s3cret', 't0ken'])).toBe('a=*** b=*** c=***');
  });

  it('replaces the longest secrets first, so that no tail of a longer one survives', () => {
    expect(redact('abcdef', ['abc', 'abcdef'])).toBe('***');
  });

  it('ignores empty secrets and leaves other text alone', () => {
    expect(redact('nothing to hide', ['', 'absent'])).toBe('nothing to hide');
  });

  it("finds a token echoed with / escaped as \\/ (PHP's json_encode default)", () => {
    const token = 'eyJhbGciOi/JIUzI1NiJ9.a/b+c';
    const echo = JSON.stringify({ headers: { authorization: `Bearer ${token}` } }).replaceAll('/', '\\/');
    expect(echo).toContain('eyJhbGciOi\\/JIUzI1NiJ9');
    const out = redact(echo, secretForms(token));
    expect(out).toBe('{"headers":{"authorization":"Bearer ***"}}');
  });

  it("finds a non-ASCII secret echoed as \\uXXXX (Python's and PHP's default), in either case of hex", () => {
    const password = 'pässwörd-秘密-😀';
    const ascii = (text: string, upper: boolean) =>
      text.replaceAll(/[^ -~]/g, (c) => {
        const hex = c.charCodeAt(0).toString(16).padStart(4, '0');
        return `\\u${upper ? hex.toUpperCase() : hex}`;
      });
    for (const upper of [false, true]) {
      const echo = ascii(JSON.stringify({ password }), upper);
      expect(echo).not.toContain('ä');
      expect(redact(echo, secretForms(password))).toBe('{"password":"***"}');
    }
  });

  it('finds a secret whose characters are escaped in a mix of ways, and in lower-case percent-escapes', () => {
    const key = 'k/ey"é';
    expect(redact('x="k\\/ey\\"\\u00e9" y', [key])).toBe('x="***" y');
    expect(redact('body=k%2fey%22%c3%a9&z=1', [key])).toBe('body=***&z=1');
  });

  it('still finds a secret holding a backslash, written as is or JSON-escaped', () => {
    const secret = 'a\\nb';
    expect(redact(`raw ${secret} json ${JSON.stringify(secret)}`, secretForms(secret))).toBe(
      'raw *** json "***"',
    );
  });
});

describe('secretForms', () => {
  it('covers the raw, percent-encoded, form-encoded, JSON-escaped and base64 spellings', () => {
    const forms = secretForms('p@ss w+rd/"x"');
    expect(forms).toEqual(
      expect.arrayContaining([
        'p@ss w+rd/"x"',
        'p%40ss%20w%2Brd%2F%22x%22',
        'p%40ss+w%2Brd%2F%22x%22',
        'p@ss w+rd/\\"x\\"',
        Buffer.from('p@ss w+rd/"x"').toString('base64'),
        Buffer.from('p@ss w+rd/"x"').toString('base64url'),
      ]),
    );
  });

  it('covers the Basic credentials of a pair', () => {
    expect(basicAuthForms('foo', 'bar')).toEqual(expect.arrayContaining(['foo:bar', 'Zm9vOmJhcg==']));
  });
});

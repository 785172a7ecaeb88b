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

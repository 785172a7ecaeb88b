import { describe, expect, it } from 'vitest';
import { parseJsonExact, stringifyJsonExact } from '../../../src/connectors/json.ts';
import { renderRequest } from '../../../src/connectors/templates.ts';
import { asSegmentId } from '../../../src/segments/segment.ts';

describe('parseJsonExact', () => {
  it('keeps integers beyond 2^53 as bigints with the digits sent, where JSON.parse rounds them', () => {
    const text = '{"segment_id":90071992547412345,"negative":-90071992547412345,"n":12}';
    expect(String((JSON.parse(text) as { segment_id: number }).segment_id)).toBe('90071992547412350');
    expect(parseJsonExact(text)).toEqual({
      segment_id: 90071992547412345n,
      negative: -90071992547412345n,
      n: 12,
    });
    expect(asSegmentId((parseJsonExact(text) as { segment_id: unknown }).segment_id)).toBe(
      '90071992547412345',
    );
  });

  it('leaves every other value as JSON.parse gives it', () => {
    const text = '{"a":[1.5,1e400,1.0e20,9007199254740991,"90071992547412345",null,true]}';
    expect(parseJsonExact(text)).toEqual(JSON.parse(text));
  });

  it('throws on what is not JSON, like JSON.parse', () => {
    expect(() => parseJsonExact('{"segment_id":')).toThrow(SyntaxError);
  });

  it('writes a bigint back as the same JSON number', () => {
    expect(stringifyJsonExact({ segment: 90071992547412345n, userid: 'u' })).toBe(
      '{"segment":90071992547412345,"userid":"u"}',
    );
  });
});

describe('asSegmentId', () => {
  it('takes strings and non-negative integers, never a rounded or fractional number', () => {
    expect(asSegmentId('23850000000000001')).toBe('23850000000000001');
    expect(asSegmentId(12345)).toBe('12345');
    expect(asSegmentId(90071992547412345n)).toBe('90071992547412345');
    expect([1.5, -1, -1n, '', null, {}, 2 ** 60].map(asSegmentId)).toEqual(Array(7).fill(undefined));
  });
});

describe('templates with a 17-digit id', () => {
  it('insert {segmentIdNumber} as a JSON number of the exact digits', () => {
    const request = renderRequest(
      {
        method: 'POST',
        path: '/v1/segment',
        headers: {},
        body: [{ segment: '{segmentIdNumber}' }],
        bodyFormat: 'json',
      },
      { segmentIdNumber: 90071992547412345n },
    );
    expect(request.body?.toString()).toBe('[{"segment":90071992547412345}]');
  });
});

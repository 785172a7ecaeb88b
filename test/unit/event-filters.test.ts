import { describe, expect, it } from 'vitest';
import {
  type FilterPattern,
  matchesFilter,
  passesFilters,
  validateFilterPattern,
} from '../../src/infra/event-filters.ts';
import { eventSourcesOf } from '../../src/infra/event-sources.ts';
import { RELEASE_STREAM_FILTERS } from '../../src/infra/population.ts';
import { MAPPING_TABLE } from '../../src/infra/resources.ts';

/** Lambda event filtering as the local event sources apply it (the subset of the syntax used). */

const record = (
  eventName: string,
  keys: Record<string, string>,
  newImage?: Record<string, unknown>,
  oldImage?: Record<string, unknown>,
) => ({
  eventName,
  dynamodb: {
    Keys: Object.fromEntries(Object.entries(keys).map(([name, value]) => [name, { S: value }])),
    ...(newImage ? { NewImage: newImage } : {}),
    ...(oldImage ? { OldImage: oldImage } : {}),
  },
});

describe('matchesFilter', () => {
  it('matches literals (OR within a list, AND across fields)', () => {
    const pattern: FilterPattern = {
      eventName: ['INSERT', 'MODIFY'],
      dynamodb: { Keys: { pk: { S: ['a'] } } },
    };
    expect(matchesFilter(pattern, record('INSERT', { pk: 'a' }))).toBe(true);
    expect(matchesFilter(pattern, record('MODIFY', { pk: 'a' }))).toBe(true);
    expect(matchesFilter(pattern, record('REMOVE', { pk: 'a' }))).toBe(false);
    expect(matchesFilter(pattern, record('INSERT', { pk: 'b' }))).toBe(false);
    expect(matchesFilter({ n: [5] }, { n: 5 })).toBe(true);
    expect(matchesFilter({ n: [5] }, { n: '5' })).toBe(false);
  });

  it('matches exists on leaves only, exists false on absence, and prefixes', () => {
    const present: FilterPattern = { image: { id: { S: [{ exists: true }] } } };
    expect(matchesFilter(present, { image: { id: { S: 'x' } } })).toBe(true);
    expect(matchesFilter(present, { image: { other: { S: 'x' } } })).toBe(false);
    // Lambda's exists looks at leaf nodes: an object is not a value.
    expect(matchesFilter({ image: { id: [{ exists: true }] } }, { image: { id: { S: 'x' } } })).toBe(false);
    const absent: FilterPattern = { image: { mark: { BOOL: [{ exists: false }] } } };
    expect(matchesFilter(absent, { image: {} })).toBe(true);
    expect(matchesFilter(absent, {})).toBe(true);
    expect(matchesFilter(absent, { image: { mark: { BOOL: true } } })).toBe(false);
    expect(matchesFilter({ pk: [{ prefix: 'forget#' }] }, { pk: 'forget#u1' })).toBe(true);
    expect(matchesFilter({ pk: [{ prefix: 'forget#' }] }, { pk: 'user#u1' })).toBe(false);
    expect(matchesFilter({ pk: [{ prefix: 'forget#' }] }, {})).toBe(false);
  });

  it('keeps every record without patterns, and a record matching any one of them', () => {
    expect(passesFilters(undefined, { any: 1 })).toBe(true);
    expect(passesFilters([], { any: 1 })).toBe(true);
    expect(passesFilters([{ a: [1] }, { b: [2] }], { b: 2 })).toBe(true);
    expect(passesFilters([{ a: [1] }, { b: [2] }], { c: 3 })).toBe(false);
  });

  it('refuses operators it does not implement and patterns Lambda would refuse', () => {
    expect(() => validateFilterPattern({ a: [{ 'anything-but': ['x'] } as never] })).toThrow(
      /\$\.a: .* not a condition/,
    );
    expect(() => validateFilterPattern({ a: [{ numeric: ['>', 1] } as never] })).toThrow(/not a condition/);
    expect(() => validateFilterPattern({ a: [] })).toThrow(/empty list/);
    expect(() => validateFilterPattern({ a: 'INSERT' as never })).toThrow(/list of conditions/);
    expect(() => validateFilterPattern({ a: [`${'x'.repeat(5000)}`] })).toThrow(/4096/);
    expect(() =>
      eventSourcesOf({} as never, [
        () => [
          {
            kind: 'tableStream',
            function: 'releasePending',
            table: MAPPING_TABLE,
            batchSize: 10,
            maxBatchingWindowSeconds: 0,
            filters: Array.from({ length: 6 }, () => ({ a: ['x'] })),
          },
        ],
      ]),
    ).toThrow(/6 filter patterns, Lambda takes 5/);
  });
});

describe('RELEASE_STREAM_FILTERS', () => {
  const passes = (event: unknown) => passesFilters(RELEASE_STREAM_FILTERS, event);
  const mapping = (extra: Record<string, unknown> = {}) => ({
    pk: { S: 'user#u1' },
    sk: { S: 'platform#7' },
    partnerUserId: { S: 'p1' },
    expiresAt: { N: '2000000000' },
    ...extra,
  });
  const keys = { pk: 'user#u1', sk: 'platform#7' };

  it('passes a new mapping, a changed id and an expired mapping replaced whole', () => {
    expect(passes(record('INSERT', keys, mapping()))).toBe(true);
    expect(passes(record('MODIFY', keys, mapping({ partnerUserId: { S: 'p2' } }), mapping()))).toBe(true);
    expect(passes(record('MODIFY', keys, mapping(), mapping({ refreshed: { BOOL: true } })))).toBe(true);
  });

  it('drops refreshes, deletions, replay guards and forget markers', () => {
    expect(passes(record('MODIFY', keys, mapping({ refreshed: { BOOL: true } }), mapping()))).toBe(false);
    expect(passes(record('REMOVE', keys, undefined, mapping()))).toBe(false);
    expect(passes(record('INSERT', { pk: 'replay#7#abc', sk: 'replay' }, { expiresAt: { N: '1' } }))).toBe(
      false,
    );
    expect(passes(record('INSERT', keys, { forgotten: { BOOL: true }, expiresAt: { N: '1' } }))).toBe(false);
  });

  it("passes an opt-out's request when it is written, not when it is deleted", () => {
    const request = { pk: 'forget#u1', sk: 'request' };
    expect(passes(record('INSERT', request, { expiresAt: { N: '1' } }))).toBe(true);
    expect(passes(record('REMOVE', request, undefined, { expiresAt: { N: '1' } }))).toBe(false);
  });

  it('is valid for Lambda', () => {
    for (const pattern of RELEASE_STREAM_FILTERS) expect(() => validateFilterPattern(pattern)).not.toThrow();
  });
});

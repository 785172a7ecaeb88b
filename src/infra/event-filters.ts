/**
 * Lambda event filtering (an event source mapping's `FilterCriteria`): the patterns are declared
 * once with the event source (src/infra/event-sources.ts); the CDK stack hands them to Lambda
 * (`FilterCriteria.filter`) and the local stack's event sources apply them with `matchesFilter`
 * below, so a record Lambda would drop never reaches the local function either.
 *
 * Only the part of Lambda's filter rule syntax this project uses is implemented, exactly: a
 * pattern is an object whose keys must all match (AND); a leaf is an array of conditions of which
 * one must match (OR): a literal (string, number, boolean, null: equality), `{ exists: true }` (the
 * field is there with a scalar value; Lambda's `exists` looks at leaf nodes only, so DynamoDB
 * images are matched down to their type key, e.g. `{ S: [{ exists: true }] }`), `{ exists: false }`
 * (the field is absent) or `{ prefix: "..." }` (a string starting with it). Any other operator is
 * refused by `validateFilterPattern` rather than matched loosely.
 * https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventfiltering.html
 */

export type FilterCondition = string | number | boolean | null | { exists: boolean } | { prefix: string };

export interface FilterPattern {
  readonly [field: string]: FilterPattern | readonly FilterCondition[];
}

/** Lambda takes up to five patterns per event source mapping by default, each up to 4096 characters. */
export const FILTER_LIMITS = { patternsPerSource: 5, patternCharacters: 4096 } as const;

const isScalar = (value: unknown): value is string | number | boolean | null =>
  value === null || ['string', 'number', 'boolean'].includes(typeof value);

function conditionError(path: string, condition: unknown): Error {
  return new Error(
    `filter pattern, ${path}: ${JSON.stringify(condition)} is not a condition this project uses (a literal, exists, prefix)`,
  );
}

/** Throws, naming the field, for a pattern Lambda would refuse or that uses an unsupported operator. */
export function validateFilterPattern(pattern: FilterPattern, path = '$'): void {
  if (path === '$' && JSON.stringify(pattern).length > FILTER_LIMITS.patternCharacters) {
    throw new Error(`filter pattern longer than ${FILTER_LIMITS.patternCharacters} characters`);
  }
  const entries = Object.entries(pattern);
  if (entries.length === 0) throw new Error(`filter pattern, ${path}: an empty object matches nothing`);
  for (const [field, value] of entries) {
    const at = `${path}.${field}`;
    if (Array.isArray(value)) {
      if (value.length === 0) throw new Error(`filter pattern, ${at}: an empty list matches nothing`);
      for (const condition of value as unknown[]) {
        if (isScalar(condition)) continue;
        const keys = condition && typeof condition === 'object' ? Object.keys(condition) : [];
        const only = keys.length === 1 ? keys[0] : undefined;
        const operand = only ? (condition as Record<string, unknown>)[only] : undefined;
        if (only === 'exists' && typeof operand === 'boolean') continue;
        if (only === 'prefix' && typeof operand === 'string') continue;
        throw conditionError(at, condition);
      }
    } else if (value && typeof value === 'object') {
      validateFilterPattern(value as FilterPattern, at);
    } else {
      throw new Error(`filter pattern, ${at}: a leaf must be a list of conditions`);
    }
  }
}

function conditionMatches(condition: FilterCondition, present: boolean, value: unknown): boolean {
  if (isScalar(condition)) return present && value === condition;
  if ('exists' in condition) return condition.exists ? present && isScalar(value) : !present;
  return present && typeof value === 'string' && value.startsWith(condition.prefix);
}

/** Whether `event` (a stream record, a queue message) matches `pattern`, as Lambda decides. */
export function matchesFilter(pattern: FilterPattern, event: unknown): boolean {
  return Object.entries(pattern).every(([field, expected]) => {
    const container = event && typeof event === 'object' ? (event as Record<string, unknown>) : undefined;
    const present = container !== undefined && Object.hasOwn(container, field);
    const value = present ? container[field] : undefined;
    if (Array.isArray(expected)) {
      return (expected as readonly FilterCondition[]).some((condition) =>
        conditionMatches(condition, present, value),
      );
    }
    // A nested pattern: an absent field matches only if every condition below it is `exists: false`.
    return matchesFilter(expected as FilterPattern, value);
  });
}

/** Lambda keeps a record that matches any of the patterns; without patterns, every record. */
export function passesFilters(patterns: readonly FilterPattern[] | undefined, event: unknown): boolean {
  return !patterns || patterns.length === 0 || patterns.some((pattern) => matchesFilter(pattern, event));
}

/**
 * JSON from partners, parsed without losing digits. `JSON.parse` turns `90071992547412345` into
 * the nearest double, 90071992547412350: a partner's segment id read that way names another
 * segment. Node 24's `JSON.parse` hands the reviver each primitive's source text (TC39 "JSON.parse
 * source text access"), so an integer literal that a number cannot hold exactly becomes a bigint
 * with the same digits; every other value is what `JSON.parse` gives.
 */

/** The third argument Node 24 passes to a `JSON.parse` reviver (not yet in TypeScript's lib). */
interface ReviverContext {
  readonly source?: string;
}

const INTEGER_LITERAL = /^-?(0|[1-9]\d*)$/;

function exactIntegers(this: unknown, _key: string, value: unknown, context?: ReviverContext): unknown {
  if (typeof value !== 'number' || Number.isSafeInteger(value)) return value;
  const source = context?.source;
  if (source === undefined) {
    throw new Error('JSON.parse does not give the source text here: Node.js 24 or later is needed');
  }
  return INTEGER_LITERAL.test(source) ? BigInt(source) : value;
}

/** Like `JSON.parse`, but integers beyond ±(2^53 - 1) are bigints holding exactly the digits sent. */
export function parseJsonExact(text: string): unknown {
  return JSON.parse(text, exactIntegers as (this: unknown, key: string, value: unknown) => unknown);
}

/** `JSON.rawJSON` (Node 21+; not yet in TypeScript's lib). */
const rawJson = (JSON as unknown as { rawJSON(text: string): unknown }).rawJSON;

/** Like `JSON.stringify`, but a bigint is written as the JSON number it is (`JSON.stringify` throws). */
export function stringifyJsonExact(value: unknown): string {
  return JSON.stringify(value, (_key, item: unknown) =>
    typeof item === 'bigint' ? rawJson(item.toString()) : item,
  );
}

/**
 * Keeps credentials out of errors and logs. A partner may echo what we sent (an Authorization
 * header, a form body, a JSON dump of the request) in an error body, so every text taken from an
 * answer, and every message we build, is passed through {@link redact} with all the forms a
 * credential can take on the wire.
 *
 * Echoes come escaped in ways we cannot list in advance: PHP writes `/` as `\/`, Python and PHP
 * write every non-ASCII character as `\uXXXX`, some servers lower-case percent-escapes. So the
 * secrets are looked for not only in the text as it is, but in the text read through each
 * escaping (JSON string escapes, percent-escapes): a match in a decoded reading hides the
 * original characters it came from, whatever mix of escaped and plain characters they were.
 */

export const REDACTED = '***';

/** A reading of the text: `text[i]` came from `original.slice(starts[i], ends[i])`. */
interface Reading {
  readonly text: string;
  readonly starts: readonly number[];
  readonly ends: readonly number[];
}

function plain(text: string): Reading {
  const starts = Array.from({ length: text.length }, (_, i) => i);
  return { text, starts, ends: starts.map((i) => i + 1) };
}

const JSON_SIMPLE_ESCAPES: Readonly<Record<string, string>> = {
  '"': '"',
  '\\': '\\',
  '/': '/',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
};

/** The text with JSON string escapes (`\/`, `\"`, `\u00e9`, ...) decoded; other text as is. */
function jsonUnescaped(text: string): Reading {
  let out = '';
  const starts: number[] = [];
  const ends: number[] = [];
  for (let i = 0; i < text.length; ) {
    if (text[i] === '\\') {
      const next = text[i + 1] ?? '';
      const simple = JSON_SIMPLE_ESCAPES[next];
      if (simple !== undefined) {
        out += simple;
        starts.push(i);
        ends.push(i + 2);
        i += 2;
        continue;
      }
      const hex = /^u([0-9A-Fa-f]{4})/.exec(text.slice(i + 1, i + 6));
      if (hex) {
        out += String.fromCharCode(Number.parseInt(hex[1] as string, 16));
        starts.push(i);
        ends.push(i + 6);
        i += 6;
        continue;
      }
    }
    out += text[i];
    starts.push(i);
    ends.push(i + 1);
    i += 1;
  }
  return { text: out, starts, ends };
}

/** The text with runs of percent-escapes (either case, `+` as space) decoded as UTF-8. */
function percentDecoded(text: string): Reading {
  let out = '';
  const starts: number[] = [];
  const ends: number[] = [];
  const runs = /(?:%[0-9A-Fa-f]{2})+|\+|[^%+]+|%/g;
  for (const match of text.matchAll(runs)) {
    const start = match.index;
    const run = match[0];
    let decoded: string;
    if (run === '+') decoded = ' ';
    else if (run.startsWith('%') && run.length >= 3) {
      const bytes = Buffer.from(run.replaceAll('%', ''), 'hex');
      decoded = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
    } else decoded = run;
    const single = run === decoded;
    for (let i = 0; i < decoded.length; i++) {
      out += decoded[i];
      // A decoded multi-byte run maps, character by character, to the whole run.
      starts.push(single ? start + i : start);
      ends.push(single ? start + i + 1 : start + run.length);
    }
  }
  return { text: out, starts, ends };
}

/** Replaces every occurrence of each secret in `text` by `***`, in any JSON or URL escaping. */
export function redact(text: string, secrets: Iterable<string>): string {
  const ordered = [...new Set(secrets)].filter((secret) => secret.length > 0);
  if (ordered.length === 0 || text.length === 0) return text;
  const ranges: [number, number][] = [];
  const readings = [plain(text)];
  if (text.includes('\\')) readings.push(jsonUnescaped(text));
  if (text.includes('%') || text.includes('+')) readings.push(percentDecoded(text));
  for (const reading of readings) {
    for (const secret of ordered) {
      for (let at = reading.text.indexOf(secret); at !== -1; at = reading.text.indexOf(secret, at + 1)) {
        ranges.push([reading.starts[at] as number, reading.ends[at + secret.length - 1] as number]);
      }
    }
  }
  if (ranges.length === 0) return text;
  ranges.sort((a, b) => a[0] - b[0] || b[1] - a[1]);
  let out = '';
  let cursor = 0;
  for (const [start, end] of ranges) {
    if (end <= cursor) continue;
    if (start >= cursor) {
      out += text.slice(cursor, start) + REDACTED;
    }
    // Overlapping matches (a secret inside a longer one) extend the hidden span.
    cursor = end;
  }
  return out + text.slice(cursor);
}

/**
 * The spellings of a secret value worth hiding: as is, percent-encoded (URL and form), escaped
 * inside a JSON string, and base64 / base64url. Other escapings of these are caught by
 * {@link redact}'s decoded readings.
 */
export function secretForms(value: string): string[] {
  if (!value) return [];
  const forms = [
    value,
    encodeURIComponent(value),
    new URLSearchParams({ v: value }).toString().slice(2),
    JSON.stringify(value).slice(1, -1),
    Buffer.from(value, 'utf8').toString('base64'),
    Buffer.from(value, 'utf8').toString('base64url'),
  ];
  return [...new Set(forms)].filter((form) => form.length > 0);
}

/** `Basic` credentials (RFC 7617): base64 of `user:password`, and the pair itself. */
export function basicAuthForms(user: string, password: string): string[] {
  const pair = `${user}:${password}`;
  return [...secretForms(pair), `Basic ${Buffer.from(pair, 'utf8').toString('base64')}`];
}

import type { RequestTemplate } from '../config/connector.ts';
import { stringifyJsonExact } from './json.ts';

/**
 * Rendering of a connector's declarative requests. Each placeholder is escaped for the place it
 * stands in, so that a segment name like `Cart & "VIP" / 50%` reaches the partner intact:
 *
 * - path and query: percent-encoded as one component (`/` and `&` included; space as `%20`);
 * - headers: inserted as is, refused if they would contain CR, LF or NUL;
 * - JSON bodies: a string that is exactly one placeholder takes the value itself (a number stays
 *   a number, a bigint a number of the same digits, an array an array); inside a longer string the value is inserted as text, and the
 *   JSON serializer escapes it;
 * - form bodies: fields rendered as text, then form-encoded.
 *
 * An unknown placeholder is an error, never an empty string sent to a partner.
 */

export type TemplateValue =
  | string
  | number
  | bigint
  | boolean
  | null
  | readonly unknown[]
  | Readonly<Record<string, unknown>>;
export type TemplateValues = Readonly<Record<string, TemplateValue | undefined>>;

const PLACEHOLDER = /\{([A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)?)\}/g;
const WHOLE_PLACEHOLDER = /^\{([A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)?)\}$/;

export class TemplateError extends Error {
  override readonly name = 'TemplateError';
}

function lookup(values: TemplateValues, name: string): TemplateValue {
  const value = Object.hasOwn(values, name) ? values[name] : undefined;
  if (value === undefined) throw new TemplateError(`unknown placeholder {${name}}`);
  return value;
}

function asText(value: TemplateValue, name: string): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean')
    return String(value);
  throw new TemplateError(`placeholder {${name}} is not text and cannot stand inside a string`);
}

/** Replaces placeholders in text, escaping each value with `escapeValue`. */
export function renderText(
  template: string,
  values: TemplateValues,
  escapeValue: (text: string) => string,
): string {
  return template.replaceAll(PLACEHOLDER, (_, name: string) =>
    escapeValue(asText(lookup(values, name), name)),
  );
}

export function renderPath(template: string, values: TemplateValues): string {
  return renderText(template, values, encodeURIComponent);
}

export function renderHeader(template: string, values: TemplateValues): string {
  const text = renderText(template, values, (value) => value);
  if (/[\r\n\0]/.test(text)) throw new TemplateError('a header value would contain CR, LF or NUL');
  return text;
}

/** Renders a JSON template value (deeply). */
export function renderJson(template: unknown, values: TemplateValues): unknown {
  if (typeof template === 'string') {
    const whole = WHOLE_PLACEHOLDER.exec(template);
    if (whole) return lookup(values, whole[1] as string);
    return renderText(template, values, (value) => value);
  }
  if (Array.isArray(template)) return template.map((item) => renderJson(item, values));
  if (template !== null && typeof template === 'object') {
    return Object.fromEntries(
      Object.entries(template).map(([key, value]) => [key, renderJson(value, values)]),
    );
  }
  return template;
}

export interface RenderedRequest {
  readonly method: string;
  readonly pathAndQuery: string;
  readonly headers: Readonly<Record<string, string>>;
  /** The exact bytes to send (and to sign). */
  readonly body?: Buffer;
}

export function renderRequest(template: RequestTemplate, values: TemplateValues): RenderedRequest {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(template.headers))
    headers[name.toLowerCase()] = renderHeader(value, values);
  if (template.body === undefined) {
    return { method: template.method, pathAndQuery: renderPath(template.path, values), headers };
  }
  const rendered = renderJson(template.body, values);
  let body: Buffer;
  if (template.bodyFormat === 'form') {
    if (rendered === null || typeof rendered !== 'object' || Array.isArray(rendered)) {
      throw new TemplateError('a form body must be an object of fields');
    }
    const form = new URLSearchParams();
    for (const [name, value] of Object.entries(rendered)) {
      form.append(name, typeof value === 'string' ? value : stringifyJsonExact(value));
    }
    body = Buffer.from(form.toString(), 'utf8');
    headers['content-type'] ??= 'application/x-www-form-urlencoded';
  } else {
    body = Buffer.from(stringifyJsonExact(rendered), 'utf8');
    headers['content-type'] ??= 'application/json';
  }
  return { method: template.method, pathAndQuery: renderPath(template.path, values), headers, body };
}

/**
 * Reads a value at a path like `data.items[0].id` from a parsed JSON answer; undefined when any
 * step is missing. Paths are validated by the connector schema.
 */
export function readJsonPath(document: unknown, path: string): unknown {
  let current: unknown = document;
  for (const step of path.split('.')) {
    const match = /^([^[\]]+)((?:\[\d+\])*)$/.exec(step);
    if (!match) return undefined;
    current = propertyOf(current, match[1] as string);
    for (const index of (match[2] ?? '').matchAll(/\[(\d+)\]/g)) {
      current = Array.isArray(current) ? current[Number(index[1])] : undefined;
    }
    if (current === undefined) return undefined;
  }
  return current;
}

function propertyOf(value: unknown, key: string): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  return Object.hasOwn(value, key) ? (value as Record<string, unknown>)[key] : undefined;
}

import type { IncomingMessage } from 'node:http';
import { parseJsonExact, stringifyJsonExact } from '../../src/connectors/json.ts';

/** Shared request, answer and log shapes of the reference partner's modules. */

/** How a request proved who it is (never the secret itself). */
export type AuthMethod = 'basic' | 'bearer' | 'oauth2' | 'apiKey' | 'hmac' | 'oauth2Client';

/** A fault switch as it was applied to one request (see faults.ts). */
export interface AppliedFault {
  readonly id: number;
  /** `status`, `reset`, `malformed`, `delay` and/or `hold`. */
  readonly kinds: readonly string[];
  readonly status?: number;
  readonly delayMs?: number;
  /** Whether the request reached the route's handler (state changed) despite the fault. */
  readonly processed: boolean;
}

export interface RecordedRequest {
  readonly time: string;
  readonly method: string;
  readonly url: string;
  readonly path: string;
  readonly query: Record<string, string>;
  /** As received, except credentials (authorization, API key, signature): `[redacted]`. */
  readonly headers: Record<string, string | string[] | undefined>;
  /** The answer's status; 0 when the connection was reset without an answer. */
  status: number;
  /** The partner's user id for this browser (`/sync`). */
  partnerUserId?: string;
  /** Where the browser was sent (`/sync`). */
  location?: string;
  /** Request body as UTF-8 text (the first 64 KiB; OAuth client secrets redacted). */
  body?: string;
  /** Size of the whole body in bytes. */
  bodyBytes?: number;
  bodyTruncated?: boolean;
  /** The credential that authenticated the request (API routes and `/oauth/token`). */
  auth?: AuthMethod;
  /** Non-secret detail of the credential: HMAC key id and algorithm, OAuth client id. */
  authDetail?: string;
  /** Why a request was refused with 401. */
  authError?: string;
  fault?: AppliedFault;
}

export interface PartnerRequest {
  readonly request: IncomingMessage;
  readonly url: URL;
  /** Named groups of the route's path pattern. */
  readonly params: Readonly<Record<string, string>>;
  /** The query, percent-decoded strictly (first value of each name). */
  readonly query: ReadonlyMap<string, string>;
  readonly cookies: ReadonlyMap<string, string>;
  readonly body: Buffer;
  readonly record: RecordedRequest;
  /** The fault switch applied to this request, for faults a route carries out itself (`bigId`). */
  readonly fault?: { readonly bigId?: boolean | undefined };
}

export interface PartnerResponse {
  readonly status: number;
  readonly headers?: Record<string, string | string[]>;
  readonly body?: string;
}

/**
 * Who may call a route: `api` needs a credential and takes faults; `oauth` (the token endpoint)
 * takes only faults aimed at it; `public` (`/sync`) and `control` (`/__*`) take neither, and
 * control routes are not logged.
 */
export type RouteAccess = 'api' | 'oauth' | 'public' | 'control';

export interface PartnerRoute {
  readonly method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** An exact path, or a pattern whose named groups become `params`. */
  readonly path: string | RegExp;
  readonly access: RouteAccess;
  handle(request: PartnerRequest): PartnerResponse | Promise<PartnerResponse>;
}

/** A JSON answer; a bigint is written as a number of the same digits (ids beyond 2^53). */
export function json(status: number, body: unknown, headers: Record<string, string> = {}): PartnerResponse {
  return {
    status,
    headers: { 'content-type': 'application/json', ...headers },
    body: stringifyJsonExact(body),
  };
}

export function text(status: number, body: string): PartnerResponse {
  return { status, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: `${body}\n` };
}

/** The seed API's error shape. */
export function seedError(
  status: number,
  error: string,
  extra: Record<string, unknown> = {},
): PartnerResponse {
  return json(status, { status: 'ERROR', error, ...extra });
}

/**
 * Parses a raw query string (`a=1&b=x%20y`) strictly: `+` is a space (form style), and a broken
 * percent-escape or invalid UTF-8 makes the whole query unreadable (`undefined`) instead of
 * silently turning into replacement characters. The first value of a repeated name wins.
 */
export function parseQuery(search: string): Map<string, string> | undefined {
  const query = new Map<string, string>();
  const raw = search.startsWith('?') ? search.slice(1) : search;
  if (raw === '') return query;
  for (const pair of raw.split('&')) {
    if (pair === '') continue;
    const index = pair.indexOf('=');
    const rawName = index === -1 ? pair : pair.slice(0, index);
    const rawValue = index === -1 ? '' : pair.slice(index + 1);
    try {
      const name = decodeURIComponent(rawName.replaceAll('+', ' '));
      const value = decodeURIComponent(rawValue.replaceAll('+', ' '));
      if (!query.has(name)) query.set(name, value);
    } catch {
      return undefined;
    }
  }
  return query;
}

export type JsonResult = { readonly ok: true; readonly value: unknown } | { readonly ok: false };

export function parseJson(body: Buffer): JsonResult {
  try {
    // Integers beyond 2^53 (segment ids) are read exactly, as bigints.
    return { ok: true, value: parseJsonExact(body.toString('utf8')) };
  } catch {
    return { ok: false };
  }
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isFormBody(request: IncomingMessage): boolean {
  return (request.headers['content-type'] ?? '')
    .toLowerCase()
    .startsWith('application/x-www-form-urlencoded');
}

/**
 * Reads a body that may be a JSON object or form fields (the Graph API takes both): form when the
 * content type says so, JSON otherwise; an empty body is no fields. `undefined` when unreadable.
 */
export function parseFields(request: IncomingMessage, body: Buffer): Record<string, unknown> | undefined {
  if (body.length === 0) return {};
  if (isFormBody(request)) {
    const fields = parseQuery(body.toString('utf8'));
    return fields ? Object.fromEntries(fields) : undefined;
  }
  const parsed = parseJson(body);
  return parsed.ok && isRecord(parsed.value) ? parsed.value : undefined;
}

import { setTimeout as delay } from 'node:timers/promises';
import type { ApiSettings } from '../../config/connector.ts';
import {
  type Authenticator,
  type AuthRequest,
  createAuthenticator,
  TokenEndpointError,
} from '../auth/index.ts';
import { parseJsonExact } from '../json.ts';
import { classifyStatus, nextDelayMs, parseRetryAfter } from '../retry.ts';
import { classifyTransportError } from './errors.ts';
import { redact } from './redact.ts';
import { createHttpSend, type HttpResponse, type HttpSend } from './send.ts';

/**
 * One partner's API as the rest of the service sees it: `call()` sends a request to
 * `api.baseUrl` + `pathAndQuery` with the platform's credentials, retries what is worth retrying
 * (429, 5xx, the connector's retryable 4xx, timeouts, resets, refused connections) with backoff,
 * renews an OAuth2 token once on a 401, and either answers with the partner's 2xx answer or throws
 * a {@link PartnerCallError} whose texts carry no credential.
 */

export interface PartnerRequest {
  readonly method: string;
  /** Relative to `api.baseUrl`, percent-encoded ASCII: `/v1/segment?title=My%20segment`. */
  readonly pathAndQuery: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** Sent, and signed, byte for byte. */
  readonly body?: Buffer;
  /**
   * Whether sending it twice has the effect of sending it once (RFC 9110 9.2.2). Defaults by
   * method: GET, HEAD, OPTIONS, PUT and DELETE are, POST and PATCH are not. A request that is not
   * is never repeated after a try whose outcome is unknown (a 5xx, a timeout or a reset once the
   * request may have been sent): the call ends with kind `unknown_outcome` and the caller looks
   * before it repeats. Set it for a POST whose repetition is harmless (adding users to a
   * segment, a create carrying an idempotency key the partner honours).
   */
  readonly idempotent?: boolean;
}

const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);

/** Whether the request may be repeated after an unknown outcome (see PartnerRequest.idempotent). */
export function isIdempotent(request: Pick<PartnerRequest, 'method' | 'idempotent'>): boolean {
  return request.idempotent ?? IDEMPOTENT_METHODS.has(request.method.toUpperCase());
}

export interface PartnerAnswer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: Buffer;
  /**
   * The body parsed as JSON, or undefined when empty or not JSON. Integers beyond 2^53 are
   * bigints (exact), never rounded numbers: see parseJsonExact.
   */
  json(): unknown | undefined;
  /** Tries made, this one included (a token request that failed counts as a try). */
  readonly attempts: number;
}

export type PartnerCallErrorKind = 'permanent' | 'retries_exhausted' | 'unknown_outcome' | 'network';

/**
 * - `permanent`: the partner (or its token endpoint) refused the request in a way retrying cannot
 *   change: a 4xx that is not retryable, a 3xx, a 401 that a fresh token did not cure.
 * - `retries_exhausted`: every try failed retryably (429, 5xx, retryable 4xx, timeout, reset,
 *   refused connection), or the partner's Retry-After is beyond `api.retry.maxDelayMs` (then
 *   `retryAfterMs` says when to come back). Retry later, through the queue.
 * - `unknown_outcome`: a request that is not idempotent failed in a way that may have been
 *   processed (a 5xx, a timeout or a reset after it may have been sent) and was not repeated.
 *   Find out (look the result up) before sending it again.
 * - `network`: a failure without an answer that this client does not retry (the caller aborted,
 *   the answer was too large, an unexpected error). Not a verdict on the request: retry later.
 *
 * `outcomeUnknown` is true when the partner may have processed one of the tries (a timeout or
 * reset after the request may have been sent, a 5xx); false when none can have been (429,
 * 4xx, refused connection, token failure). Non-idempotent calls (segment creation) must then
 * look before they repeat.
 */
export class PartnerCallError extends Error {
  override readonly name = 'PartnerCallError';
  readonly kind: PartnerCallErrorKind;
  readonly status: number | undefined;
  readonly bodySnippet: string | undefined;
  readonly attempts: number;
  readonly outcomeUnknown: boolean;
  /** How long the partner asked us to wait (Retry-After of the last answer), when it said. */
  readonly retryAfterMs: number | undefined;
  /** Error code of a failure without an answer: `DMP_HEADERS_TIMEOUT`, `ECONNREFUSED`, ... */
  readonly code: string | undefined;
  /** Whether the last try failed at the OAuth2 token endpoint or at the partner's API itself. */
  readonly step: 'token' | 'request';

  constructor(
    message: string,
    details: {
      kind: PartnerCallErrorKind;
      status?: number | undefined;
      bodySnippet?: string | undefined;
      attempts: number;
      outcomeUnknown: boolean;
      retryAfterMs?: number | undefined;
      code?: string | undefined;
      step?: 'token' | 'request';
    },
  ) {
    super(message);
    this.kind = details.kind;
    this.status = details.status;
    this.bodySnippet = details.bodySnippet;
    this.attempts = details.attempts;
    this.outcomeUnknown = details.outcomeUnknown;
    this.retryAfterMs = details.retryAfterMs;
    this.code = details.code;
    this.step = details.step ?? 'request';
  }
}

export interface PartnerClientOptions {
  readonly api: ApiSettings;
  readonly responses: { readonly retryableStatuses: readonly number[] };
  /** The platform secret's `api` record. */
  readonly credentials: Readonly<Record<string, string>>;
  readonly send?: HttpSend;
  /** Waits between tries; rejects when `signal` aborts. */
  readonly sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** In [0, 1): the jitter. */
  readonly random?: () => number;
  /** Milliseconds since the epoch. */
  readonly now?: () => number;
}

export const BODY_SNIPPET_CHARS = 512;

/** One failed try, as the retry decision needs it. */
interface Failure {
  readonly retryable: boolean;
  readonly outcomeUnknown: boolean;
  readonly describe: string;
  readonly status?: number | undefined;
  readonly bodySnippet?: string | undefined;
  readonly retryAfterMs?: number | undefined;
  readonly code?: string | undefined;
  readonly step: 'token' | 'request';
}

const defaultSleep = async (ms: number, signal?: AbortSignal): Promise<void> => {
  await delay(ms, undefined, signal ? { signal } : undefined);
};

function lowerCaseHeaders(headers: Readonly<Record<string, string>> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers ?? {})) out[name.toLowerCase()] = value;
  return out;
}

export class PartnerClient {
  private readonly auth: Authenticator;
  private readonly send: HttpSend;
  private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  private readonly random: () => number;
  private readonly now: () => number;
  private readonly origin: string;
  private readonly prefix: string;

  /** Throws AuthConfigurationError when the credentials do not fit `api.auth`. */
  constructor(private readonly options: PartnerClientOptions) {
    this.send = options.send ?? createHttpSend();
    this.sleep = options.sleep ?? defaultSleep;
    this.random = options.random ?? Math.random;
    this.now = options.now ?? Date.now;
    const base = new URL(options.api.baseUrl);
    this.origin = base.origin;
    this.prefix = base.pathname.replace(/\/+$/, '');
    this.auth = createAuthenticator(options.api.auth, options.credentials, {
      baseUrl: options.api.baseUrl,
      send: this.send,
      now: this.now,
      timeoutMs: options.api.timeoutMs,
    });
  }

  /** `text` with every credential (and the current OAuth2 token) replaced by `***`. */
  redact(text: string): string {
    return redact(text, this.auth.secrets());
  }

  /**
   * `onTry` sees every try's status (undefined: no answer) and Retry-After, retried ones included:
   * an adaptive throttle learns of 429s the client then rode out.
   */
  async call(
    request: PartnerRequest,
    options: {
      signal?: AbortSignal;
      onTry?: (status: number | undefined, retryAfterMs?: number) => void;
    } = {},
  ): Promise<PartnerAnswer> {
    const method = request.method.toUpperCase();
    if (!/^[A-Z]{1,16}$/.test(method)) throw new TypeError('method must be an HTTP method name');
    const { pathAndQuery } = request;
    if (!pathAndQuery.startsWith('/') || !/^[\x21-\x7e]+$/.test(pathAndQuery)) {
      throw new TypeError('pathAndQuery must start with / and be percent-encoded printable ASCII');
    }
    const path = `${this.prefix}${pathAndQuery}`;
    const label = `${method} ${path.split('?')[0]}`;
    const { signal } = options;
    const { retry } = this.options.api;
    const unsigned: AuthRequest = {
      method,
      path,
      headers: lowerCaseHeaders(request.headers),
      body: request.body,
    };

    const repeatable = isIdempotent(request);
    let attempts = 0;
    /** Tries counted against `maxAttempts` (the retry after a token refresh is not). */
    let counted = 0;
    let refreshed = false;
    let anyUnknown = false;

    for (;;) {
      if (signal?.aborted) throw this.aborted(label, attempts, anyUnknown);
      attempts++;
      counted++;
      const outcome = await this.attempt(unsigned, signal);
      options.onTry?.(
        outcome.type === 'answer' ? outcome.response.status : outcome.failure.status,
        outcome.type === 'answer' ? undefined : outcome.failure.retryAfterMs,
      );
      if (outcome.type === 'answer') return answer(outcome.response, attempts);
      let { failure } = outcome;
      if (outcome.type === 'unauthorized' && !refreshed) {
        // Once per call: a fresh OAuth2 token, then one more try that is not counted.
        refreshed = true;
        try {
          if (await this.auth.refreshAfterUnauthorized(outcome.sent)) {
            counted--;
            continue;
          }
        } catch (error) {
          failure = tokenFailure(error);
        }
      }
      anyUnknown ||= failure.outcomeUnknown;
      if (outcome.type === 'aborted') throw this.aborted(label, attempts, anyUnknown);
      if (!failure.retryable) {
        const kind = failure.status === undefined ? 'network' : 'permanent';
        throw this.error(kind, label, failure, attempts, anyUnknown);
      }
      if (failure.outcomeUnknown && !repeatable) {
        throw this.error('unknown_outcome', label, failure, attempts, anyUnknown);
      }
      const decision = nextDelayMs({
        attempt: counted,
        retry,
        retryAfterMs: failure.retryAfterMs,
        random: this.random,
      });
      if (decision.action === 'give_up') {
        throw this.error('retries_exhausted', label, failure, attempts, anyUnknown, decision.reason);
      }
      try {
        await this.sleep(decision.delayMs, signal);
      } catch (error) {
        if (signal?.aborted) throw this.aborted(label, attempts, anyUnknown);
        throw error;
      }
    }
  }

  /** One try: authorize, send, read the verdict. */
  private async attempt(
    unsigned: AuthRequest,
    signal: AbortSignal | undefined,
  ): Promise<
    | { type: 'answer'; response: HttpResponse }
    | { type: 'unauthorized'; sent: AuthRequest; failure: Failure }
    | { type: 'failure' | 'aborted'; failure: Failure }
  > {
    const { timeoutMs } = this.options.api;
    try {
      const sent = await this.auth.authorize(unsigned);
      let response: HttpResponse;
      try {
        response = await this.send({
          method: sent.method,
          origin: this.origin,
          path: sent.path,
          headers: sent.headers,
          body: sent.body,
          timeoutMs,
          signal,
        });
      } catch (error) {
        const transport = classifyTransportError(error);
        return {
          type: transport.aborted || signal?.aborted ? 'aborted' : 'failure',
          failure: {
            retryable: transport.retryable,
            outcomeUnknown: transport.outcomeUnknown,
            describe: `failed without an answer: ${transport.code} (${transport.message})`,
            code: transport.code,
            step: 'request',
          },
        };
      }
      const verdict = classifyStatus(response.status, this.options.responses.retryableStatuses);
      if (verdict === 'success') return { type: 'answer', response };
      const failure: Failure = {
        retryable: verdict === 'retryable',
        outcomeUnknown: response.status >= 500,
        describe: `answered ${response.status}`,
        status: response.status,
        bodySnippet: this.snippet(response.body),
        retryAfterMs:
          verdict === 'retryable' ? parseRetryAfter(response.headers['retry-after'], this.now()) : undefined,
        step: 'request',
      };
      return response.status === 401 ? { type: 'unauthorized', sent, failure } : { type: 'failure', failure };
    } catch (error) {
      return { type: 'failure', failure: tokenFailure(error) };
    }
  }

  private snippet(body: Buffer): string | undefined {
    if (body.length === 0) return undefined;
    // Redact the whole text before cutting it, so that no secret is left half-visible at the cut.
    return this.redact(body.toString('utf8')).slice(0, BODY_SNIPPET_CHARS);
  }

  private aborted(label: string, attempts: number, outcomeUnknown: boolean): PartnerCallError {
    return new PartnerCallError(this.redact(`${label}: aborted by the caller after ${plural(attempts)}`), {
      kind: 'network',
      attempts,
      outcomeUnknown,
      code: 'ABORTED',
    });
  }

  private error(
    kind: PartnerCallErrorKind,
    label: string,
    failure: Failure,
    attempts: number,
    outcomeUnknown: boolean,
    reason?: 'attempts_exhausted' | 'retry_after_exceeds_max_delay',
  ): PartnerCallError {
    const why =
      reason === 'retry_after_exceeds_max_delay'
        ? `; Retry-After ${failure.retryAfterMs} ms exceeds maxDelayMs ${this.options.api.retry.maxDelayMs}`
        : kind === 'unknown_outcome'
          ? '; not repeated: the request is not idempotent and the partner may have carried it out'
          : '';
    const message = `${label} ${failure.describe} (${kind}) after ${plural(attempts)}${why}`;
    return new PartnerCallError(this.redact(message), {
      kind,
      status: failure.status,
      bodySnippet: failure.bodySnippet,
      attempts,
      outcomeUnknown,
      retryAfterMs: failure.retryAfterMs,
      code: failure.code,
      step: failure.step,
    });
  }
}

/** A TokenEndpointError as a failed try; anything else is a bug and propagates. */
function tokenFailure(error: unknown): Failure {
  if (!(error instanceof TokenEndpointError)) throw error;
  return {
    retryable: error.retryable,
    outcomeUnknown: false,
    describe: `could not get an OAuth2 token: ${error.message}`,
    status: error.status,
    retryAfterMs: error.retryAfterMs,
    code: error.code,
    step: 'token',
  };
}

function plural(attempts: number): string {
  return `${attempts} attempt${attempts === 1 ? '' : 's'}`;
}

function answer(response: HttpResponse, attempts: number): PartnerAnswer {
  let parsed: { value: unknown } | undefined;
  return {
    status: response.status,
    headers: response.headers,
    body: response.body,
    attempts,
    json() {
      if (!parsed) {
        let value: unknown;
        try {
          value = response.body.length > 0 ? parseJsonExact(response.body.toString('utf8')) : undefined;
        } catch {
          value = undefined;
        }
        parsed = { value };
      }
      return parsed.value;
    },
  };
}

import * as z from '../../config/zod-mini.ts';
import { classifyTransportError } from '../http/errors.ts';
import { redact } from '../http/redact.ts';
import type { HttpSend } from '../http/send.ts';
import { classifyStatus, parseRetryAfter } from '../retry.ts';
import { TokenEndpointError } from './errors.ts';

/**
 * OAuth 2.0 client credentials (RFC 6749 4.4): one cached access token per client, fetched again
 * `refreshBeforeExpirySeconds` before it expires (but no sooner than half its lifetime), shared by
 * concurrent callers through one in-flight token request.
 */

/** Lifetime assumed when the token endpoint does not say (`expires_in` is only RECOMMENDED). */
export const DEFAULT_TOKEN_LIFETIME_SECONDS = 300;

const TokenResponseSchema = z.object({
  access_token: z
    .string()
    .check(
      z.minLength(1),
      z.maxLength(16_384),
      z.regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces'),
    ),
  token_type: z.optional(
    z.string().check(z.refine((value) => value.toLowerCase() === 'bearer', { message: 'must be Bearer' })),
  ),
  expires_in: z.optional(
    z.union([
      z.number().check(z.positive()),
      z.pipe(z.string().check(z.regex(/^\d+$/)), z.transform(Number)),
    ]),
  ),
});

const TokenErrorSchema = z.object({
  error: z.string().check(z.maxLength(256)),
  error_description: z.optional(z.string().check(z.maxLength(1024))),
});

/**
 * How the client id and secret are encoded before `Basic` (RFC 6749 2.3.1 says form-encoded):
 * percent-encoding, space as `%20` rather than `+`, which a form decoder and a plain
 * percent-decoder (`decodeURIComponent`, common on token endpoints) read alike.
 */
export function clientCredentialEncode(value: string): string {
  return encodeURIComponent(value);
}

export interface TokenEndpoint {
  readonly origin: string;
  readonly path: string;
}

export interface OAuth2Options {
  readonly endpoint: TokenEndpoint;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly scope?: string | undefined;
  readonly audience?: string | undefined;
  readonly clientAuthentication: 'basic' | 'body';
  readonly refreshBeforeExpirySeconds: number;
  readonly send: HttpSend;
  readonly now: () => number;
  readonly timeoutMs?: number | undefined;
  /** Every form of every credential, for redaction. */
  readonly secrets: () => readonly string[];
}

interface CachedToken {
  readonly token: string;
  readonly refreshAtMs: number;
}

export class OAuth2TokenSource {
  private cached: CachedToken | undefined;
  private inFlight: Promise<string> | undefined;
  /** Tokens handed out recently (the current one included), hidden from error texts. */
  private readonly recent: string[] = [];

  constructor(private readonly options: OAuth2Options) {}

  tokens(): readonly string[] {
    return this.recent;
  }

  /** A valid access token: the cached one, or a fresh one (one request for all concurrent callers). */
  async token(): Promise<string> {
    const cached = this.cached;
    if (cached && this.options.now() < cached.refreshAtMs) return cached.token;
    return this.fetchShared();
  }

  /**
   * The partner answered 401 to a request carrying `rejected`: drop that token and get another,
   * unless another caller has already replaced it.
   */
  async refresh(rejected: string | undefined): Promise<void> {
    if (this.inFlight) {
      await this.inFlight;
      return;
    }
    if (this.cached && rejected !== undefined && this.cached.token !== rejected) return;
    this.cached = undefined;
    await this.fetchShared();
  }

  private fetchShared(): Promise<string> {
    if (!this.inFlight) {
      this.inFlight = this.fetchToken().finally(() => {
        this.inFlight = undefined;
      });
    }
    return this.inFlight;
  }

  private fail(
    message: string,
    details: ConstructorParameters<typeof TokenEndpointError>[1],
  ): TokenEndpointError {
    return new TokenEndpointError(redact(message, this.options.secrets()), details);
  }

  private async fetchToken(): Promise<string> {
    const { options } = this;
    const form = new URLSearchParams({ grant_type: 'client_credentials' });
    if (options.scope) form.set('scope', options.scope);
    if (options.audience) form.set('audience', options.audience);
    const headers: Record<string, string> = {
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
    };
    if (options.clientAuthentication === 'basic') {
      // RFC 6749 2.3.1: id and secret are encoded before being joined and base64-encoded.
      const pair = `${clientCredentialEncode(options.clientId)}:${clientCredentialEncode(options.clientSecret)}`;
      headers['authorization'] = `Basic ${Buffer.from(pair, 'utf8').toString('base64')}`;
    } else {
      form.set('client_id', options.clientId);
      form.set('client_secret', options.clientSecret);
    }

    const startedAt = options.now();
    let response: Awaited<ReturnType<HttpSend>>;
    try {
      response = await options.send({
        method: 'POST',
        origin: options.endpoint.origin,
        path: options.endpoint.path,
        headers,
        body: Buffer.from(form.toString(), 'utf8'),
        timeoutMs: options.timeoutMs,
      });
    } catch (error) {
      const failure = classifyTransportError(error);
      throw this.fail(`OAuth token endpoint could not be reached: ${failure.code} (${failure.message})`, {
        retryable: failure.retryable,
        code: failure.code,
      });
    }

    const text = response.body.toString('utf8');
    if (response.status < 200 || response.status > 299) {
      let detail = '';
      try {
        const parsed = TokenErrorSchema.safeParse(JSON.parse(text));
        if (parsed.success) {
          detail = parsed.data.error_description
            ? `${parsed.data.error}: ${parsed.data.error_description}`
            : parsed.data.error;
        }
      } catch {
        // not JSON: fall back to a snippet
      }
      if (!detail) detail = text.slice(0, 200);
      const retryable = classifyStatus(response.status, [408, 425]) === 'retryable';
      throw this.fail(`OAuth token endpoint answered ${response.status}${detail ? `: ${detail}` : ''}`, {
        status: response.status,
        retryable,
        retryAfterMs: retryable ? parseRetryAfter(response.headers['retry-after'], options.now()) : undefined,
      });
    }

    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw this.fail(`OAuth token endpoint answered ${response.status} with a body that is not JSON`, {
        status: response.status,
        retryable: false,
      });
    }
    const parsed = TokenResponseSchema.safeParse(json);
    if (!parsed.success) {
      const issues = parsed.error.issues.map(
        (issue) => `${issue.path.join('.') || '(root)'} ${issue.message}`,
      );
      throw this.fail(`OAuth token endpoint answered an unusable token response: ${issues.join('; ')}`, {
        status: response.status,
        retryable: false,
      });
    }
    const token = parsed.data.access_token;
    const lifetime = parsed.data.expires_in ?? DEFAULT_TOKEN_LIFETIME_SECONDS;
    const usable = Math.max(lifetime - options.refreshBeforeExpirySeconds, lifetime / 2);
    this.cached = { token, refreshAtMs: startedAt + usable * 1000 };
    this.recent.push(token);
    if (this.recent.length > 4) this.recent.shift();
    return token;
  }
}

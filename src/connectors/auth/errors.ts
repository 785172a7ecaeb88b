/** The connector's auth settings and the platform secret do not fit together. Names fields, never values. */
export class AuthConfigurationError extends Error {
  override readonly name = 'AuthConfigurationError';
}

/**
 * The OAuth2 token endpoint did not give us a token. The message is redacted (no client secret,
 * no token); `retryable` says whether trying again later can help (429, 5xx, a network failure).
 */
export class TokenEndpointError extends Error {
  override readonly name = 'TokenEndpointError';
  readonly status: number | undefined;
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;
  readonly code: string | undefined;

  constructor(
    message: string,
    details: { status?: number; retryable: boolean; retryAfterMs?: number | undefined; code?: string },
  ) {
    super(message);
    this.status = details.status;
    this.retryable = details.retryable;
    this.retryAfterMs = details.retryAfterMs;
    this.code = details.code;
  }
}

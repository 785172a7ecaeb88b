import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { type HmacAlgorithm, verifyPartnerRequestSignature } from '../../src/connectors/auth/hmac.ts';
import { type AuthMethod, json, type PartnerResponse, parseQuery, type RecordedRequest } from './common.ts';

/**
 * The credentials the reference partner accepts on its API routes, one set per method; every
 * method is on by default with the values below, and `false` turns one off. A request may carry
 * any one of them; if it carries several, all must be valid.
 */

export type { HmacAlgorithm };

export interface PartnerCredentials {
  /** HTTP basic, the seed's `curl -u foo:bar`. */
  readonly basic?: { readonly username?: string; readonly password?: string } | false;
  /** A static `Authorization: Bearer` token. */
  readonly bearerToken?: string | false;
  /** An API key in a header (default `x-api-key`). */
  readonly apiKey?: { readonly header?: string; readonly value?: string } | false;
  /** OAuth2 client credentials at `POST /oauth/token`; the tokens it issues are bearer tokens until they expire. */
  readonly oauth2?:
    | { readonly clientId?: string; readonly clientSecret?: string; readonly expiresInSeconds?: number }
    | false;
  /**
   * Request signatures (`x-dmp-key-id`, `x-dmp-timestamp`, `x-dmp-signature`) verified with
   * src/connectors/auth/hmac.ts; any of `algorithms` is accepted.
   */
  readonly hmac?:
    | {
        readonly keys?: Readonly<Record<string, string>>;
        readonly algorithms?: readonly HmacAlgorithm[];
        readonly maxSkewSeconds?: number;
      }
    | false;
}

export const DEFAULT_CREDENTIALS = {
  basic: { username: 'foo', password: 'bar' },
  bearerToken: 'reference-bearer-token',
  apiKey: { header: 'x-api-key', value: 'reference-api-key' },
  oauth2: { clientId: 'reference-client', clientSecret: 'reference-client-secret', expiresInSeconds: 3600 },
  hmac: { keys: { 'ref-k1': 'reference-hmac-key-0001' }, algorithms: ['sha256'] as const },
} as const;

export const SIGNATURE_HEADERS = ['x-dmp-key-id', 'x-dmp-timestamp', 'x-dmp-signature'] as const;

interface ResolvedCredentials {
  readonly basic: { readonly username: string; readonly password: string } | undefined;
  readonly bearerToken: string | undefined;
  readonly apiKey: { readonly header: string; readonly value: string } | undefined;
  readonly oauth2:
    | { readonly clientId: string; readonly clientSecret: string; readonly expiresInSeconds: number }
    | undefined;
  readonly hmac:
    | {
        readonly keys: Readonly<Record<string, string>>;
        readonly algorithms: readonly HmacAlgorithm[];
        readonly maxSkewSeconds: number | undefined;
      }
    | undefined;
}

function resolve(credentials: PartnerCredentials): ResolvedCredentials {
  const d = DEFAULT_CREDENTIALS;
  const { basic, bearerToken, apiKey, oauth2, hmac } = credentials;
  return {
    basic: basic === false ? undefined : { ...d.basic, ...basic },
    bearerToken: bearerToken === false ? undefined : (bearerToken ?? d.bearerToken),
    apiKey:
      apiKey === false
        ? undefined
        : {
            header: (apiKey?.header ?? d.apiKey.header).toLowerCase(),
            value: apiKey?.value ?? d.apiKey.value,
          },
    oauth2: oauth2 === false ? undefined : { ...d.oauth2, ...oauth2 },
    hmac:
      hmac === false
        ? undefined
        : {
            keys: hmac?.keys ?? d.hmac.keys,
            algorithms: hmac?.algorithms ?? d.hmac.algorithms,
            maxSkewSeconds: hmac?.maxSkewSeconds,
          },
  };
}

/** Compares secrets in constant time, whatever their lengths. */
function safeEqual(a: string, b: string): boolean {
  const digest = (value: string) => createHash('sha256').update(value, 'utf8').digest();
  return timingSafeEqual(digest(a), digest(b));
}

function header(request: IncomingMessage, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

/** `user:password` from `Basic <base64>`; `undefined` if it is not that. */
function decodeBasic(credentials: string): { user: string; password: string } | undefined {
  const decoded = Buffer.from(credentials, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon === -1 ? undefined : { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

export type AuthOutcome =
  | { readonly ok: true; readonly method: AuthMethod; readonly detail?: string }
  | { readonly ok: false; readonly reason: string; readonly challenge?: string };

const UNAUTHORIZED_BODY = { status: 'ERROR', error: 'unauthorized' };
const REALM = 'Basic realm="reference-partner", Bearer realm="reference-partner"';

export function unauthorized(outcome: AuthOutcome & { ok: false }): PartnerResponse {
  return json(401, UNAUTHORIZED_BODY, { 'www-authenticate': outcome.challenge ?? REALM });
}

function oauthError(status: number, error: string, description: string, basicUsed = false): PartnerResponse {
  return json(
    status,
    { error, error_description: description },
    {
      'cache-control': 'no-store',
      ...(basicUsed ? { 'www-authenticate': 'Basic realm="reference-partner"' } : {}),
    },
  );
}

export class Authenticator {
  private readonly credentials: ResolvedCredentials;
  /** Issued OAuth2 access tokens -> expiry (ms) and client. */
  private readonly tokens = new Map<string, { readonly expiresAt: number; readonly clientId: string }>();

  constructor(
    credentials: PartnerCredentials,
    private readonly now: () => number,
  ) {
    this.credentials = resolve(credentials);
  }

  /** Request headers whose values the request log must not keep. */
  get secretHeaders(): ReadonlySet<string> {
    return new Set([
      'authorization',
      'proxy-authorization',
      'x-dmp-signature',
      ...(this.credentials.apiKey ? [this.credentials.apiKey.header] : []),
      DEFAULT_CREDENTIALS.apiKey.header,
    ]);
  }

  /** Checks every credential the request carries; at least one, and all of them, must be valid. */
  authenticate(request: IncomingMessage, body: Buffer): AuthOutcome {
    const outcomes: AuthOutcome[] = [];
    if (SIGNATURE_HEADERS.some((name) => request.headers[name] !== undefined)) {
      outcomes.push(this.checkSignature(request, body));
    }
    const authorization = header(request, 'authorization');
    if (authorization !== undefined) outcomes.push(this.checkAuthorization(authorization));
    const apiKeyHeader = this.credentials.apiKey?.header ?? DEFAULT_CREDENTIALS.apiKey.header;
    const apiKey = header(request, apiKeyHeader);
    if (apiKey !== undefined) {
      const expected = this.credentials.apiKey?.value;
      outcomes.push(
        expected === undefined
          ? { ok: false, reason: 'apiKey: API keys are not accepted' }
          : safeEqual(apiKey, expected)
            ? { ok: true, method: 'apiKey' }
            : { ok: false, reason: 'apiKey: wrong key' },
      );
    }
    if (outcomes.length === 0) return { ok: false, reason: 'no credentials' };
    return outcomes.find((outcome) => !outcome.ok) ?? (outcomes[0] as AuthOutcome);
  }

  private checkAuthorization(authorization: string): AuthOutcome {
    const space = authorization.indexOf(' ');
    const scheme = (space === -1 ? authorization : authorization.slice(0, space)).toLowerCase();
    const value = space === -1 ? '' : authorization.slice(space + 1).trim();
    if (scheme === 'basic') {
      const expected = this.credentials.basic;
      if (!expected) return { ok: false, reason: 'basic: basic authentication is not accepted' };
      const given = decodeBasic(value);
      if (!given) return { ok: false, reason: 'basic: malformed credentials' };
      const userOk = safeEqual(given.user, expected.username);
      const passwordOk = safeEqual(given.password, expected.password);
      return userOk && passwordOk
        ? { ok: true, method: 'basic', detail: given.user }
        : { ok: false, reason: 'basic: wrong username or password' };
    }
    if (scheme === 'bearer') {
      if (this.credentials.bearerToken !== undefined && safeEqual(value, this.credentials.bearerToken)) {
        return { ok: true, method: 'bearer' };
      }
      const issued = this.tokens.get(value);
      if (issued) {
        if (this.now() < issued.expiresAt) return { ok: true, method: 'oauth2', detail: issued.clientId };
        return {
          ok: false,
          reason: 'oauth2: access token expired',
          challenge:
            'Bearer realm="reference-partner", error="invalid_token", error_description="token expired"',
        };
      }
      return {
        ok: false,
        reason: 'bearer: unknown token',
        challenge: 'Bearer realm="reference-partner", error="invalid_token"',
      };
    }
    return { ok: false, reason: `authorization: unsupported scheme ${JSON.stringify(scheme)}` };
  }

  private checkSignature(request: IncomingMessage, body: Buffer): AuthOutcome {
    const hmac = this.credentials.hmac;
    if (!hmac) return { ok: false, reason: 'hmac: request signatures are not accepted' };
    let firstReason: string | undefined;
    for (const algorithm of hmac.algorithms) {
      const result = verifyPartnerRequestSignature({
        method: request.method ?? 'GET',
        pathAndQuery: request.url ?? '/',
        body,
        headers: request.headers,
        keys: hmac.keys,
        algorithm,
        nowSeconds: Math.floor(this.now() / 1000),
        ...(hmac.maxSkewSeconds === undefined ? {} : { maxSkewSeconds: hmac.maxSkewSeconds }),
      });
      if (result.valid) return { ok: true, method: 'hmac', detail: `${result.keyId} ${algorithm}` };
      firstReason ??= result.reason;
    }
    return { ok: false, reason: `hmac: ${firstReason ?? 'no algorithm configured'}` };
  }

  /** `POST /oauth/token`: the client credentials grant (RFC 6749 4.4), client auth by basic or body. */
  token(request: IncomingMessage, body: Buffer, record: RecordedRequest): PartnerResponse {
    const oauth2 = this.credentials.oauth2;
    if (!oauth2) return oauthError(404, 'invalid_request', 'OAuth2 is not enabled on this partner');
    const fields = parseQuery(body.toString('utf8'));
    if (!fields) return oauthError(400, 'invalid_request', 'the body is not form-encoded');

    const authorization = header(request, 'authorization');
    const viaBasic = authorization?.toLowerCase().startsWith('basic ') ?? false;
    const viaBody = fields.has('client_id') || fields.has('client_secret');
    if (viaBasic && viaBody) {
      return oauthError(400, 'invalid_request', 'use one client authentication method, not two');
    }
    let client: { id: string; secret: string } | undefined;
    if (viaBasic) {
      const given = decodeBasic(authorization!.slice('basic '.length).trim());
      try {
        // RFC 6749 2.3.1: the id and secret are form-encoded before base64.
        if (given)
          client = { id: decodeURIComponent(given.user), secret: decodeURIComponent(given.password) };
      } catch {
        client = undefined;
      }
    } else if (viaBody) {
      client = { id: fields.get('client_id') ?? '', secret: fields.get('client_secret') ?? '' };
    }
    if (!client) return oauthError(401, 'invalid_client', 'client authentication required', true);
    if (!safeEqual(client.id, oauth2.clientId) || !safeEqual(client.secret, oauth2.clientSecret)) {
      record.authError = 'oauth2Client: wrong client id or secret';
      return oauthError(401, 'invalid_client', 'client authentication failed', viaBasic);
    }
    record.auth = 'oauth2Client';
    record.authDetail = `${viaBasic ? 'client_secret_basic' : 'client_secret_post'} ${client.id}`;

    const grantType = fields.get('grant_type');
    if (!grantType) return oauthError(400, 'invalid_request', 'grant_type is required');
    if (grantType !== 'client_credentials') {
      return oauthError(400, 'unsupported_grant_type', `grant_type ${grantType} is not supported`);
    }

    const now = this.now();
    for (const [token, issued] of this.tokens) if (issued.expiresAt <= now) this.tokens.delete(token);
    const accessToken = randomBytes(32).toString('base64url');
    this.tokens.set(accessToken, { expiresAt: now + oauth2.expiresInSeconds * 1000, clientId: client.id });
    const scope = fields.get('scope');
    return json(
      200,
      {
        access_token: accessToken,
        token_type: 'Bearer',
        expires_in: oauth2.expiresInSeconds,
        ...(scope ? { scope } : {}),
      },
      { 'cache-control': 'no-store', pragma: 'no-cache' },
    );
  }

  /** Forgets the issued tokens. */
  clear(): void {
    this.tokens.clear();
  }
}

import type { AuthSettings } from '../../config/connector.ts';
import { basicAuthForms, secretForms } from '../http/redact.ts';
import type { HttpSend } from '../http/send.ts';
import { AuthConfigurationError } from './errors.ts';
import { signPartnerRequest } from './hmac.ts';
import { clientCredentialEncode, OAuth2TokenSource, type TokenEndpoint } from './oauth2.ts';

export { AuthConfigurationError, TokenEndpointError } from './errors.ts';
export {
  HEADER_KEY_ID,
  HEADER_SIGNATURE,
  HEADER_TIMESTAMP,
  type HmacAlgorithm,
  PARTNER_SIGNATURE_VERSION,
  type PartnerSignatureVerdict,
  partnerStringToSign,
  signPartnerRequest,
  verifyPartnerRequestSignature,
} from './hmac.ts';

/**
 * Puts a platform's credentials on outgoing requests, by the connector's `api.auth.type`, with the
 * credentials from the platform's API secret (`dmp-activation/<env>/platforms/<id>/api`):
 *
 * | type                      | secret fields             | on the request                                  |
 * |---------------------------|---------------------------|-------------------------------------------------|
 * | `none`                    |                           | nothing                                         |
 * | `basic`                   | `username`, `password`    | `Authorization: Basic base64(username:password)` |
 * | `bearer`                  | `token`                   | `Authorization: Bearer <token>`                 |
 * | `apiKey`                  | `apiKey`                  | `<header>: <apiKey>` (`x-api-key` by default)   |
 * | `oauth2ClientCredentials` | `clientId`, `clientSecret`| `Authorization: Bearer <cached access token>`   |
 * | `hmac`                    | `keyId`, `key`            | `x-dmp-key-id`, `x-dmp-timestamp`, `x-dmp-signature` |
 *
 * See docs/connectors-auth.md.
 */

/** A request about to be sent: `path` is the request target exactly as on the request line. */
export interface AuthRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: Buffer | undefined;
}

export interface Authenticator {
  /** The same request with the credentials' headers added (replacing same-named ones, any case). */
  authorize<R extends AuthRequest>(request: R): Promise<R>;
  /**
   * The partner answered 401 to `rejected`: true when a new credential was obtained (OAuth2: a
   * fresh token) and one more try is worthwhile, false when nothing can change (static
   * credentials). May throw a TokenEndpointError.
   */
  refreshAfterUnauthorized(rejected?: AuthRequest): Promise<boolean>;
  /** Every credential value in every form it can travel in (and recent OAuth tokens), for redaction. */
  secrets(): readonly string[];
}

export interface AuthenticatorDeps {
  /** The connector's `api.baseUrl`: a relative `tokenUrl` is joined to it (path prefix kept). */
  readonly baseUrl: string;
  readonly send: HttpSend;
  /** Milliseconds since the epoch. */
  readonly now: () => number;
  /** Timeout of token requests (the connector's `api.timeoutMs`). */
  readonly timeoutMs?: number | undefined;
}

const REQUIRED_FIELDS: Record<AuthSettings['type'], readonly string[]> = {
  none: [],
  basic: ['username', 'password'],
  bearer: ['token'],
  apiKey: ['apiKey'],
  oauth2ClientCredentials: ['clientId', 'clientSecret'],
  hmac: ['keyId', 'key'],
};

/** The secret fields an auth type needs, in the platform's API secret. */
export function requiredCredentialFields(type: AuthSettings['type']): readonly string[] {
  return REQUIRED_FIELDS[type];
}

function checkCredentials(
  type: AuthSettings['type'],
  credentials: Readonly<Record<string, string>>,
): Record<string, string> {
  const fields = REQUIRED_FIELDS[type];
  const missing = fields.filter((field) => {
    const value = Object.hasOwn(credentials, field) ? credentials[field] : undefined;
    return typeof value !== 'string' || value.length === 0;
  });
  if (missing.length > 0) {
    throw new AuthConfigurationError(
      `auth type ${type} needs ${missing.join(', ')} in the platform's API secret`,
    );
  }
  const values: Record<string, string> = {};
  for (const field of fields) {
    const value = credentials[field]!;
    if (/[\r\n\0]/.test(value)) {
      throw new AuthConfigurationError(`API secret field ${field} contains CR, LF or NUL`);
    }
    values[field] = value;
  }
  if (type === 'basic' && values['username']!.includes(':')) {
    throw new AuthConfigurationError('platform secret field api.username must not contain ":" (RFC 7617)');
  }
  return values;
}

function withHeaders<R extends AuthRequest>(request: R, added: Readonly<Record<string, string>>): R {
  const names = new Set(Object.keys(added).map((name) => name.toLowerCase()));
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.headers)) {
    if (!names.has(name.toLowerCase())) headers[name] = value;
  }
  return { ...request, headers: { ...headers, ...added } };
}

function isLoopback(hostname: string): boolean {
  return ['127.0.0.1', 'localhost', '[::1]'].includes(hostname);
}

/**
 * Where the token endpoint is: an absolute https URL (http only on loopback), or a path joined to
 * `baseUrl` like every request path (`/oauth/token` on `https://api.x.com/v2` is
 * `https://api.x.com/v2/oauth/token`).
 */
export function resolveTokenEndpoint(tokenUrl: string, baseUrl: string): TokenEndpoint {
  if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(tokenUrl)) {
    let url: URL;
    try {
      url = new URL(tokenUrl);
    } catch {
      throw new AuthConfigurationError('auth.tokenUrl is not a valid URL');
    }
    if (!(url.protocol === 'https:' || (url.protocol === 'http:' && isLoopback(url.hostname)))) {
      throw new AuthConfigurationError('auth.tokenUrl must be https (http only for loopback)');
    }
    if (url.username || url.password || url.hash) {
      throw new AuthConfigurationError('auth.tokenUrl must not carry credentials or a fragment');
    }
    return { origin: url.origin, path: `${url.pathname}${url.search}` };
  }
  if (!tokenUrl.startsWith('/') || !/^[\x21-\x7e]+$/.test(tokenUrl)) {
    throw new AuthConfigurationError('auth.tokenUrl must be an absolute URL or a path starting with /');
  }
  const base = new URL(baseUrl);
  return { origin: base.origin, path: `${base.pathname.replace(/\/+$/, '')}${tokenUrl}` };
}

function authorizationOf(request: AuthRequest | undefined): string | undefined {
  if (!request) return undefined;
  for (const [name, value] of Object.entries(request.headers)) {
    if (name.toLowerCase() === 'authorization') return value.replace(/^Bearer\s+/i, '');
  }
  return undefined;
}

export function createAuthenticator(
  settings: AuthSettings,
  credentials: Readonly<Record<string, string>>,
  deps: AuthenticatorDeps,
): Authenticator {
  const values = checkCredentials(settings.type, credentials);
  const staticSecrets = new Set<string>();
  for (const value of Object.values(credentials)) {
    if (typeof value === 'string') for (const form of secretForms(value)) staticSecrets.add(form);
  }

  const fixed = (headers: Record<string, string>): Authenticator => ({
    authorize: async (request) => withHeaders(request, headers),
    refreshAfterUnauthorized: async () => false,
    secrets: () => [...staticSecrets],
  });

  switch (settings.type) {
    case 'none':
      return fixed({});
    case 'basic': {
      const { username, password } = values as { username: string; password: string };
      for (const form of basicAuthForms(username, password)) staticSecrets.add(form);
      const encoded = Buffer.from(`${username}:${password}`, 'utf8').toString('base64');
      return fixed({ authorization: `Basic ${encoded}` });
    }
    case 'bearer':
      return fixed({ authorization: `Bearer ${values['token']!}` });
    case 'apiKey':
      return fixed({ [settings.header.toLowerCase()]: values['apiKey']! });
    case 'hmac': {
      const { keyId, key } = values as { keyId: string; key: string };
      return {
        authorize: async (request) =>
          withHeaders(
            request,
            signPartnerRequest({
              method: request.method,
              pathAndQuery: request.path,
              timestamp: Math.floor(deps.now() / 1000),
              body: request.body,
              keyId,
              key,
              algorithm: settings.algorithm,
            }),
          ),
        refreshAfterUnauthorized: async () => false,
        secrets: () => [...staticSecrets],
      };
    }
    case 'oauth2ClientCredentials': {
      const { clientId, clientSecret } = values as { clientId: string; clientSecret: string };
      for (const form of basicAuthForms(clientId, clientSecret)) staticSecrets.add(form);
      const encoded = [clientCredentialEncode(clientId), clientCredentialEncode(clientSecret)] as const;
      for (const form of basicAuthForms(...encoded)) staticSecrets.add(form);
      const source = new OAuth2TokenSource({
        endpoint: resolveTokenEndpoint(settings.tokenUrl, deps.baseUrl),
        clientId,
        clientSecret,
        scope: settings.scope,
        audience: settings.audience,
        clientAuthentication: settings.clientAuthentication,
        refreshBeforeExpirySeconds: settings.refreshBeforeExpirySeconds,
        send: deps.send,
        now: deps.now,
        timeoutMs: deps.timeoutMs,
        secrets: () => [...staticSecrets, ...source.tokens().flatMap(secretForms)],
      });
      return {
        authorize: async (request) =>
          withHeaders(request, { authorization: `Bearer ${await source.token()}` }),
        refreshAfterUnauthorized: async (rejected) => {
          await source.refresh(authorizationOf(rejected));
          return true;
        },
        secrets: () => [...staticSecrets, ...source.tokens().flatMap(secretForms)],
      };
    }
  }
}

import type { EnvironmentConfig } from '../src/config/schema.ts';

/**
 * Kept apart from local/stack.ts so that the `dmp` CLI can point a config at the running
 * reference partner without loading the local stack (dynalite, fauxqs, the handlers).
 */

/** Where the platform sync templates in config/environments/local.json point the browser. */
export const REFERENCE_PARTNER_ORIGIN = 'http://127.0.0.1:3001';

/**
 * Points every URL of the platforms that names the reference partner's default origin (sync
 * templates, API base URLs, OAuth2 token URLs) at its actual origin.
 */
export function rewritePartnerOrigin(config: EnvironmentConfig, partnerUrl: string): EnvironmentConfig {
  if (partnerUrl === REFERENCE_PARTNER_ORIGIN) return config;
  const rewrite = (url: string): string =>
    url === REFERENCE_PARTNER_ORIGIN || url.startsWith(`${REFERENCE_PARTNER_ORIGIN}/`)
      ? partnerUrl + url.slice(REFERENCE_PARTNER_ORIGIN.length)
      : url;
  return {
    ...config,
    platforms: config.platforms.map((platform) => {
      const { sync, connector } = platform;
      return {
        ...platform,
        ...(sync ? { sync: { ...sync, urlTemplate: rewrite(sync.urlTemplate) } } : {}),
        ...(connector
          ? {
              connector: {
                ...connector,
                api: {
                  ...connector.api,
                  baseUrl: rewrite(connector.api.baseUrl),
                  auth:
                    connector.api.auth.type === 'oauth2ClientCredentials'
                      ? { ...connector.api.auth, tokenUrl: rewrite(connector.api.auth.tokenUrl) }
                      : connector.api.auth,
                },
              },
            }
          : {}),
      };
    }),
  };
}

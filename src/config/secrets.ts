import * as z from 'zod';

/**
 * Secrets live in AWS Secrets Manager under predictable names, one per platform and one for the
 * key that signs the tokens `/sync` mints. The CDK stack creates them with generated values; the
 * local stack serves the same names from `config/local-secrets.json`.
 */
export function platformSecretName(environment: string, platformId: number): string {
  return `dmp-activation/${environment}/platforms/${platformId}`;
}

/**
 * The partner API's credentials live in a secret of their own, so that the public-facing
 * user-sync function, which reads the platform secret, can never read them.
 */
export function platformApiSecretName(environment: string, platformId: number): string {
  return `dmp-activation/${environment}/platforms/${platformId}/api`;
}

export function syncTokenKeySecretName(environment: string): string {
  return `dmp-activation/${environment}/sync-token-key`;
}

/**
 * The key of the keyed digest (HMAC-SHA256) that stands for a user in tombstones, audit records and
 * rejection records (src/privacy/digest.ts): without it, a list of ids cannot be matched to them.
 */
export function privacyKeySecretName(environment: string): string {
  return `dmp-activation/${environment}/privacy-key`;
}

const secretValue = z.string().min(16, 'must be at least 16 characters');

export const PlatformSecretSchema = z
  .object({
    /** The seed's static `plsec` token, handed to the partner. */
    syncToken: z.string().min(8, 'must be at least 8 characters').optional(),
    /** HMAC keys the partner signs sync callbacks with, by key id (several during rotation). */
    signingKeys: z.record(z.string().regex(/^[A-Za-z0-9._-]{1,32}$/), secretValue).default({}),
  })
  .passthrough();

export const SyncTokenKeySchema = z.object({
  /** Key id of the key that signs new tokens. */
  kid: z.string().regex(/^[A-Za-z0-9_-]{1,16}$/),
  key: secretValue,
  /** Earlier keys, still accepted until the tokens they signed have expired. */
  previous: z.record(z.string().regex(/^[A-Za-z0-9_-]{1,16}$/), secretValue).default({}),
});

export const PrivacyKeySchema = z.object({ key: z.string().min(32, 'must be at least 32 characters') });

/**
 * Credentials of the partner's API, by the connector's auth type: basic `username`, `password`;
 * bearer `token`; apiKey `apiKey`; oauth2ClientCredentials `clientId`, `clientSecret`; hmac
 * `keyId`, `key`.
 */
export const ApiCredentialsSchema = z.record(
  z.string().regex(/^[A-Za-z][A-Za-z0-9]{0,31}$/),
  z.string().min(1).max(8192),
);

export type PlatformSecret = z.output<typeof PlatformSecretSchema>;
export type ApiCredentials = z.output<typeof ApiCredentialsSchema>;
export type SyncTokenKey = z.output<typeof SyncTokenKeySchema>;

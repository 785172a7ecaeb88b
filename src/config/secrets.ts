import * as z from './zod-mini.ts';

export { type ApiCredentials, ApiCredentialsSchema } from './api-credentials.ts';

export { platformApiSecretName, platformSecretName, syncTokenKeySecretName } from './secret-names.ts';

/**
 * The key of the keyed digest (HMAC-SHA256) that stands for a user in tombstones, audit records and
 * rejection records (src/privacy/digest.ts): without it, a list of ids cannot be matched to them.
 */
export function privacyKeySecretName(environment: string): string {
  return `dmp-activation/${environment}/privacy-key`;
}

const secretValue = z.string().check(z.minLength(16, 'must be at least 16 characters'));

export const PlatformSecretSchema = z.looseObject({
  /** The seed's static `plsec` token, handed to the partner. */
  syncToken: z.optional(z.string().check(z.minLength(8, 'must be at least 8 characters'))),
  /** HMAC keys the partner signs sync callbacks with, by key id (several during rotation). */
  signingKeys: z._default(z.record(z.string().check(z.regex(/^[A-Za-z0-9._-]{1,32}$/)), secretValue), {}),
});

export const SyncTokenKeySchema = z.object({
  /** Key id of the key that signs new tokens. */
  kid: z.string().check(z.regex(/^[A-Za-z0-9_-]{1,16}$/)),
  key: secretValue,
  /** Earlier keys, still accepted until the tokens they signed have expired. */
  previous: z._default(z.record(z.string().check(z.regex(/^[A-Za-z0-9_-]{1,16}$/)), secretValue), {}),
});

export const PrivacyKeySchema = z.object({
  key: z.string().check(z.minLength(32, 'must be at least 32 characters')),
});

export type PlatformSecret = z.output<typeof PlatformSecretSchema>;
export type SyncTokenKey = z.output<typeof SyncTokenKeySchema>;

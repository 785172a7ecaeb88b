import * as z from './zod-mini.ts';

/**
 * Credentials of the partner's API, by the connector's auth type: basic `username`, `password`;
 * bearer `token`; apiKey `apiKey`; oauth2ClientCredentials `clientId`, `clientSecret`; hmac
 * `keyId`, `key`; SFTP file delivery `sftpUsername` and `sftpPrivateKey` (`sftpPassphrase`) or
 * `sftpPassword`. zod's mini build: the SFTP exporter reads this secret and carries no full zod
 * (src/config/embedded.ts).
 */
export const ApiCredentialsSchema = z.record(
  z.string().check(z.regex(/^[A-Za-z][A-Za-z0-9]{0,31}$/)),
  z.string().check(z.minLength(1), z.maxLength(8192)),
);

export type ApiCredentials = z.output<typeof ApiCredentialsSchema>;

import { createHmac } from 'node:crypto';
import type { JsonSecrets } from '../aws/secrets.ts';
import { PrivacyKeySchema, privacyKeySecretName } from '../config/secrets.ts';

/**
 * The digest that stands for a user wherever a record must find the user again without holding
 * the id: tombstones, audit records, rejection records. An HMAC-SHA256 keyed with the
 * environment's privacy key (Secrets Manager, `dmp-activation/<env>/privacy-key`): without the
 * key, a list of ids (the DMP's, a partner's) cannot be matched to these records, as it could to a
 * plain hash. The key is never rotated in place: the tombstones of forgotten users are found by it
 * (docs/privacy.md).
 */
export function userDigest(key: string, environment: string, dmpUserId: string): string {
  return createHmac('sha256', key).update(`dmp-forget\u0000${environment}\u0000${dmpUserId}`).digest('hex');
}

/**
 * The environment's keyed digest, the key read on first use and kept for the life of the
 * process (a failed read is tried again on the next use).
 */
export class UserDigests {
  private key: Promise<string> | undefined;

  constructor(
    private readonly environment: string,
    private readonly readKey: () => Promise<string>,
  ) {}

  /** The digest function with the key loaded: for many users at once. */
  async digester(): Promise<(dmpUserId: string) => string> {
    this.key ??= this.readKey().catch((error: unknown) => {
      this.key = undefined;
      throw error;
    });
    const key = await this.key;
    return (dmpUserId) => userDigest(key, this.environment, dmpUserId);
  }

  async of(dmpUserId: string): Promise<string> {
    return (await this.digester())(dmpUserId);
  }
}

/** The environment's digests with the key from its Secrets Manager secret (created by the stack). */
export function privacyKeyDigests(environment: string, secrets: Pick<JsonSecrets, 'read'>): UserDigests {
  const name = privacyKeySecretName(environment);
  return new UserDigests(environment, async () => {
    const secret = await secrets.read(name, PrivacyKeySchema);
    if (!secret) throw new Error(`secret ${name} does not exist: the privacy key the stack creates`);
    return secret.key;
  });
}

import { createHash, createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import * as z from 'zod/v4/core';
import { PrivacyKeySchema } from '../../../src/config/secrets.ts';
import { privacyKeyDigests, UserDigests, userDigest } from '../../../src/privacy/digest.ts';

const KEY = 'a-test-privacy-key-of-at-least-32-characters';

describe('the keyed user digest', () => {
  it('is HMAC-SHA256 under the key over the environment and the id', () => {
    const expected = createHmac('sha256', KEY).update('dmp-forget\u0000prod\u0000user-0001').digest('hex');
    expect(userDigest(KEY, 'prod', 'user-0001')).toBe(expected);
  });

  it('cannot be matched to an id list without the key (unlike a plain hash)', () => {
    const digest = userDigest(KEY, 'prod', 'user-0001');
    expect(digest).not.toBe(createHash('sha256').update('dmp-forget\u0000prod\u0000user-0001').digest('hex'));
    expect(digest).not.toBe(userDigest(`${KEY}x`, 'prod', 'user-0001'));
    expect(digest).not.toBe(userDigest(KEY, 'dev', 'user-0001'));
  });

  it('reads the key once for many digests, and again after a failed read', async () => {
    let reads = 0;
    let fail = true;
    const digests = new UserDigests('prod', async () => {
      reads++;
      if (fail) throw new Error('Secrets Manager unavailable');
      return KEY;
    });
    await expect(digests.of('user-0001')).rejects.toThrow('Secrets Manager unavailable');
    fail = false;
    expect(await digests.of('user-0001')).toBe(userDigest(KEY, 'prod', 'user-0001'));
    const digest = await digests.digester();
    expect(digest('user-0002')).toBe(userDigest(KEY, 'prod', 'user-0002'));
    expect(reads).toBe(2);
  });

  it('takes the key from the environment secret, and names the secret when it is missing', async () => {
    const names: string[] = [];
    const present = privacyKeyDigests('prod', {
      read: async (name, schema) => {
        names.push(name);
        return z.parse(schema, { key: KEY });
      },
    });
    expect(await present.of('user-0001')).toBe(userDigest(KEY, 'prod', 'user-0001'));
    expect(names).toEqual(['dmp-activation/prod/privacy-key']);
    const missing = privacyKeyDigests('prod', { read: async () => undefined });
    await expect(missing.of('user-0001')).rejects.toThrow(
      'secret dmp-activation/prod/privacy-key does not exist',
    );
  });

  it('refuses a short key', () => {
    expect(PrivacyKeySchema.safeParse({ key: 'short' }).success).toBe(false);
  });
});

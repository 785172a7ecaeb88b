import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadLocalSecrets } from '../../local/secrets-manager.ts';
import { DEFAULT_SECRETS_PATH } from '../../local/stack.ts';

const dir = mkdtempSync(join(tmpdir(), 'dmp-local-secrets-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the local secrets file', () => {
  it('holds a valid privacy key for the local environment', () => {
    const secrets = loadLocalSecrets(DEFAULT_SECRETS_PATH, 'local');
    expect(secrets['dmp-activation/local/privacy-key']).toEqual({ key: expect.any(String) });
  });

  it('refuses a privacy key too short to key the user digest, naming the secret', () => {
    const path = join(dir, 'secrets.json');
    writeFileSync(path, JSON.stringify({ 'dmp-activation/local/privacy-key': { key: 'short' } }));
    expect(() => loadLocalSecrets(path, 'local')).toThrow(
      /dmp-activation\/local\/privacy-key: key: must be at least 32 characters/,
    );
  });
});

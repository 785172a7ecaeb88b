import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import SftpClient from 'ssh2-sftp-client';
import { describe, expect, it } from 'vitest';
import { EMBEDDED_SFTP_HOST_KEY, startLocalSftp } from '../../local/local-sftp.ts';
import { loadLocalSecrets } from '../../local/secrets-manager.ts';
import { DEFAULT_CONFIG_PATH, DEFAULT_SECRETS_PATH } from '../../local/stack.ts';
import { loadEnvironmentFile } from '../../src/config/load.ts';
import { platformApiSecretName } from '../../src/config/secrets.ts';
import { hostKeyFingerprint } from '../../src/files/targets/sftp.ts';
import { useTempDirs } from '../support/temp-dirs.ts';

/** The embedded SFTP server of `npm start` (local/local-sftp.ts), without the rest of the stack. */

const tempDir = useTempDirs();

describe('the local SFTP platform', () => {
  const config = loadEnvironmentFile(DEFAULT_CONFIG_PATH);
  const secrets = loadLocalSecrets(DEFAULT_SECRETS_PATH, config.name);

  it('ships platform 99997, which pins the embedded server', () => {
    const platform = config.platforms.find((candidate) => candidate.id === 99997);
    expect(platform?.connector?.files?.destination).toMatchObject({
      type: 'sftp',
      hostKeySha256: [EMBEDDED_SFTP_HOST_KEY],
    });
  });

  it('keeps its generated host key across restarts (still pinned), points the platform at it, keys its secret', async () => {
    const dataDir = tempDir('dmp-local-sftp-');
    const first = await startLocalSftp(config, secrets, { dataDir });
    await first.stop();
    const second = await startLocalSftp(config, secrets, { dataDir });
    try {
      expect(second.sftp?.hostKeySha256).toBe(first.sftp?.hostKeySha256);
      expect(second.sftp?.hostKeySha256).not.toBe(EMBEDDED_SFTP_HOST_KEY);
      const destination = second.config.platforms.find((platform) => platform.id === 99997)?.connector?.files
        ?.destination;
      expect(destination).toMatchObject({
        host: '127.0.0.1',
        port: second.sftp?.port,
        hostKeySha256: [second.sftp?.hostKeySha256],
      });
      const secret = second.secrets[platformApiSecretName(config.name, 99997)] as Record<string, string>;
      // The reference partner's API credentials stay; the SFTP ones join them.
      expect(secret).toMatchObject({ username: 'foo', sftpUsername: 'dmp-local' });
      expect(secret['sftpPrivateKey']).toContain('PRIVATE KEY');
      expect(statSync(join(dataDir, 'sftp', 'client_key')).mode & 0o077).toBe(0);
      expect(statSync(join(second.sftp!.root, 'incoming')).isDirectory()).toBe(true);
    } finally {
      await second.stop();
    }
  });

  it('lets an operator list and fetch the files it holds, over SFTP with the client key, and nothing outside', async () => {
    const dataDir = tempDir('dmp-local-sftp-read-');
    const started = await startLocalSftp(config, secrets, { dataDir });
    const sftp = started.sftp!;
    writeFileSync(join(sftp.root, 'incoming', 'Mapp_dmp_1_2026_11_30_12_05.tsv.gz'), gzipSync('p1\tadd\n'));
    const client = new SftpClient('local-sftp-test');
    try {
      await client.connect({
        host: sftp.host,
        port: sftp.port,
        username: sftp.username,
        privateKey: readFileSync(sftp.clientKeyFile, 'utf8'),
        hostVerifier: (key: Buffer) => hostKeyFingerprint(key) === sftp.hostKeySha256,
      });
      expect((await client.list('/incoming')).map((entry) => entry.name)).toEqual([
        'Mapp_dmp_1_2026_11_30_12_05.tsv.gz',
      ]);
      const fetched = (await client.get('/incoming/Mapp_dmp_1_2026_11_30_12_05.tsv.gz')) as Buffer;
      expect(gunzipSync(fetched).toString('utf8')).toBe('p1\tadd\n');
      // Remote `/` is the server's root: `..` stops there.
      expect(await client.exists('/../../etc/passwd')).toBe(false);
    } finally {
      await client.end();
      await started.stop();
    }
  });

  it('starts nothing when no platform pins the embedded server', async () => {
    const started = await startLocalSftp(
      { ...config, platforms: config.platforms.filter((platform) => platform.id !== 99997) },
      secrets,
      {},
    );
    expect(started.sftp).toBeUndefined();
    await started.stop();
  });
});

import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import type { LocalEndpoints } from '../../local/endpoints.ts';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

interface Started {
  readonly child: ChildProcess;
  readonly output: () => string;
  readonly exit: Promise<number | null>;
}

/** Starts `npm start` (node --import tsx local/start.ts) and resolves once it printed its endpoints. */
function start(dataDir: string, args: string[] = []): Promise<Started> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'local/start.ts', ...args], {
    cwd: REPO_ROOT,
    env: {
      PATH: process.env['PATH'] ?? '',
      HOME: process.env['HOME'] ?? '/tmp',
      PORT: '0',
      PARTNER_PORT: '0',
      SFTP_PORT: '0',
      DMP_LOCAL_DATA_DIR: dataDir,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exit = new Promise<number | null>((resolve) => child.on('close', resolve));
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString('utf8');
      if (output.includes('Ctrl-C stops it.')) resolve({ child, output: () => output, exit });
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    void exit.then((code) =>
      reject(new Error(`npm start exited with ${code} before it was ready:\n${output}`)),
    );
  });
}

describe('npm start (local/start.ts)', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'dmp-start-'));
  let running: Started | undefined;

  afterAll(async () => {
    if (running && running.child.exitCode === null) {
      running.child.kill('SIGKILL');
      await running.exit;
    }
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('prints every endpoint, writes endpoints.json, and stops cleanly on SIGINT and SIGTERM', async () => {
    running = await start(dataDir);
    const endpointsFile = join(dataDir, 'endpoints.json');
    const endpoints = JSON.parse(readFileSync(endpointsFile, 'utf8')) as LocalEndpoints;
    expect(endpoints.pid).toBe(running.child.pid);
    for (const url of [
      endpoints.apiUrl,
      endpoints.syncPixelUrl,
      endpoints.partnerUrl,
      endpoints.dynamodbEndpoint,
      endpoints.sqsEndpoint,
      endpoints.s3Endpoint,
      endpoints.secretsEndpoint,
    ]) {
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+/);
      expect(running.output()).toContain(url);
    }
    expect(running.output()).toMatch(/GET \/sync\s+-> userSync \(lambdas\/user-sync\/handler\.ts\)/);
    // The embedded SFTP server of the SFTP file platform, with the host key it pins.
    expect(endpoints.sftp).toMatchObject({ host: '127.0.0.1', username: 'dmp-local' });
    expect(running.output()).toContain(
      `SFTP (embedded):    sftp://dmp-local@127.0.0.1:${endpoints.sftp?.port}  (host key ${endpoints.sftp?.hostKeySha256}`,
    );
    // The HTTP API answers (an unknown route, so as not to depend on the handler's behaviour).
    const response = await fetch(`${endpoints.apiUrl}/no-such-route`);
    expect(response.status).toBe(404);
    expect(await response.json()).toEqual({ message: 'Not Found' });

    // A second stack on the same data refuses to start.
    const second = spawn(process.execPath, ['--import', 'tsx', 'local/start.ts'], {
      cwd: REPO_ROOT,
      env: { PATH: process.env['PATH'] ?? '', DMP_LOCAL_DATA_DIR: dataDir },
      stdio: 'ignore',
    });
    expect(await new Promise((resolve) => second.on('close', resolve))).toBe(1);

    running.child.kill('SIGINT');
    expect(await running.exit).toBe(0);
    expect(running.output()).toContain('stopped.');
    expect(existsSync(endpointsFile)).toBe(false);
    expect(existsSync(join(dataDir, 'dynamodb'))).toBe(true);

    running = await start(dataDir);
    expect(running.output()).toContain('table dmp-local-mappings (existing)');
    running.child.kill('SIGTERM');
    expect(await running.exit).toBe(0);

    running = await start(dataDir, ['--fresh']);
    expect(running.output()).toContain('table dmp-local-mappings (created)');
    running.child.kill('SIGTERM');
    expect(await running.exit).toBe(0);
  });
});

import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENVIRONMENTS_DIR, REPO_ROOT } from '../../lib/repo.ts';
import { type LocalStack, startLocalStack } from '../../local/stack.ts';
import { Browser, STATIC_PLATFORM } from './support.ts';

/**
 * `debugTraces: false` (what a deployed stack gets unless its file says otherwise): the real
 * handler answers `debug=1` exactly as it answers without it, with the redirect and no trace.
 */
describe('debug=1 with debugTraces: false', () => {
  let directory: string;
  let stack: LocalStack;

  beforeAll(async () => {
    directory = mkdtempSync(join(tmpdir(), 'dmp-debug-traces-'));
    const local = JSON.parse(readFileSync(join(ENVIRONMENTS_DIR, 'local.json'), 'utf8')) as object;
    mkdirSync(join(directory, 'environments'));
    writeFileSync(
      join(directory, 'environments', 'local.json'),
      JSON.stringify({ ...local, debugTraces: false }),
    );
    cpSync(join(REPO_ROOT, 'config', 'platforms', 'local'), join(directory, 'platforms', 'local'), {
      recursive: true,
    });
    stack = await startLocalStack({
      quiet: true,
      ttlSweepIntervalMs: 0,
      configPath: join(directory, 'environments', 'local.json'),
    });
  });

  afterAll(async () => {
    await stack?.stop();
    rmSync(directory, { recursive: true, force: true });
  });

  it('redirects to the partner without a trace', async () => {
    const browser = new Browser('no-debug');
    const response = await browser.get(`${stack.apiUrl}/sync?pl=${STATIC_PLATFORM}&debug=1`);
    expect(response.status).toBe(302);
    expect(new URL(response.location!).origin).toBe(stack.partnerUrl);
    expect(response.headers.get('content-type')).not.toBe('application/json');
    expect(response.body.toString('utf8')).not.toContain('trace');
  });

  it('answers a refused callback with its status and reason header only', async () => {
    const browser = new Browser('no-debug-refused');
    const response = await browser.get(
      `${stack.apiUrl}/uid?pl=${STATIC_PLATFORM}&userid=abc123&plsec=wrong&debug=1`,
    );
    expect(response.status).toBeGreaterThanOrEqual(400);
    expect(response.headers.get('content-type')).toBe('image/gif');
    expect(response.reason).toBe('token_mismatch');
  });
});

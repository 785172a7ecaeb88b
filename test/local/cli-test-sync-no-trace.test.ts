import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../local/endpoints.ts';
import { runDmpInProcess } from '../support/cli.ts';
import { useCliStack } from '../support/cli-stack.ts';

/**
 * `dmp platforms test-sync` where the service answers `debug=1` as it answers without it (a
 * deployed environment whose file does not set debugTraces): every hop explained from the
 * answers alone, the status, the redirect and the `x-dmp-reason` header.
 */

const HEALTHY = 99999;

describe('dmp platforms test-sync where the service gives no debug=1 trace', { timeout: 120_000 }, () => {
  // debugTraces: false, as in a deployed environment whose file does not set it.
  const cli = useCliStack((workDir) => {
    const local = JSON.parse(readFileSync(join(REPO_ROOT, 'config', 'environments', 'local.json'), 'utf8'));
    mkdirSync(join(workDir, 'environments'));
    writeFileSync(
      join(workDir, 'environments', 'local.json'),
      JSON.stringify({ ...(local as object), debugTraces: false }),
    );
    cpSync(join(REPO_ROOT, 'config', 'platforms', 'local'), join(workDir, 'platforms', 'local'), {
      recursive: true,
    });
    return { configPath: join(workDir, 'environments', 'local.json') };
  });

  it('explains each hop from the answers alone: a stored mapping, and a refusal by its reason header', async () => {
    const text = await runDmpInProcess(['platforms', 'test-sync', String(HEALTHY)], cli.env);
    expect(text.stderr).toBe('');
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('traces: asked for, but the service gives none here (debugTraces off)');
    expect(text.stdout).toMatch(/answer: 302 in \d+ ms/);
    expect(text.stdout).toContain(
      'ok   accepted (no trace: the stored mapping below tells what was written)',
    );
    expect(text.stdout).not.toMatch(/^\s+trace: /m);

    const { code, report } = await cli.runJson([String(HEALTHY)]);
    expect(code).toBe(0);
    expect(report).toMatchObject({ traces: 'off', ok: true });
    expect(report.hops.every((hop) => hop.trace === null && hop.status === hop.httpStatus)).toBe(true);
    expect(await cli.storedPartnerId(report.dmpUserId!, HEALTHY)).toBe(cli.partnerIds()[0]);

    const jar = join(cli.workDir, 'jar-no-id.txt');
    writeFileSync(jar, '127.0.0.1\tFALSE\t/\tFALSE\t0\tpartner_uid\tnull\n');
    const refused = await cli.runJson([String(HEALTHY), '--cookie-jar', jar]);
    expect(refused.code).toBe(1);
    expect(refused.report.hops[3]).toMatchObject({
      step: 'uid',
      httpStatus: 400,
      reason: 'userid_sentinel',
      outcome: null,
      trace: null,
      ok: false,
    });
    expect(refused.report.conclusion).toContain('our /uid refused the callback: userid_sentinel');
  });
});

import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestSyncReport } from '../../cli/commands/test-sync.ts';
import { ENDPOINTS_FILE_ENV_VAR, writeEndpointsFile } from '../../local/endpoints.ts';
import { close, listen, originOf } from '../../local/http-util.ts';
import { DEFAULT_SECRETS_PATH, endpointsOf } from '../../local/stack.ts';
import { MAPPING_TABLE, STACK_OUTPUTS } from '../../src/infra/resources.ts';
import { runDmp, runDmpInProcess } from '../support/cli.ts';
import { useCliStack } from '../support/cli-stack.ts';
import { type CloudFormationStandIn, startCloudFormation } from '../support/cloudformation.ts';

/**
 * `dmp platforms test-sync` against the real local stack (the user-sync handler behind the local
 * HTTP API, dynalite, the reference partner): a healthy platform, a refused callback, a partner
 * that answers an error, and a deployed environment whose partner host is not the configured one.
 *
 * The stack runs with config/local-secrets.json, except that platform 88888's shared signing key
 * is left out, so the reference partner cannot sign its callbacks and answers 400 (a partner whose
 * onboarding was not finished).
 */

const HEALTHY = 99999;
const UNSIGNABLE = 88888;

describe('dmp platforms test-sync', { timeout: 120_000 }, () => {
  const cli = useCliStack((workDir) => {
    // config/local-secrets.json without platform 88888's shared key (see above).
    const secrets = JSON.parse(readFileSync(DEFAULT_SECRETS_PATH, 'utf8')) as Record<string, unknown>;
    secrets[`dmp-activation/local/platforms/${UNSIGNABLE}`] = { signingKeys: {} };
    const secretsPath = join(workDir, 'secrets.json');
    writeFileSync(secretsPath, JSON.stringify(secrets));
    return { secretsPath };
  });
  const { storedPartnerId, partnerIds, runJson } = cli;

  it('explains every hop of a healthy platform and ends with the stored mapping', async () => {
    // In its own process, as the operator runs it.
    const result = await runDmp(['platforms', 'test-sync', String(HEALTHY)], { env: cli.env });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const out = result.stdout;
    const api = new URL(cli.stack.apiUrl).origin;
    const partner = new URL(cli.stack.partnerUrl).origin;
    const partnerUserId = partnerIds()[0]!;
    const dmpUserId = /dmp_uid cookie set: the browser is DMP user (\S+)/.exec(out)?.[1];
    expect(dmpUserId).toBeDefined();

    expect(out).toContain(
      `Test sync of platform ${HEALTHY} (Reference partner (the seed's API)) in environment local`,
    );
    expect(out).toContain(`1. our /sync: GET ${api}/sync?pl=${HEALTHY}&debug=1`);
    expect(out).toMatch(/answer: 302 \(HTTP 200, the debug trace\) redirected in \d+ ms/);
    expect(out).toContain('trace: redirect: sync due: redirecting to');
    expect(out).toMatch(/cookie set: dmp_uid=\S+ \(.*Secure.*\)/);
    expect(out).toContain(`ok   redirects the browser to the partner (${partner})`);
    expect(out).toContain(`2. the partner's sync URL: ${partner}/sync?out=`);
    expect(out).toContain(`ok   host ${new URL(partner).host} is the platform's sync host`);
    expect(out).toContain(
      `ok   out decodes to our /uid: ${api}/uid?userid=[[USERID]]&pl=${HEALTHY}&plsec=[redacted]`,
    );
    expect(out).toContain(`ok   it carries pl=${HEALTHY}`);
    expect(out).toContain('ok   it holds the macro [[USERID]] for the partner to replace');
    expect(out).toContain(`3. the partner: GET ${partner}/sync?out=`);
    expect(out).toContain(`cookie set: partner_uid=${partnerUserId}`);
    expect(out).toContain('ok   redirects back to our /uid');
    expect(out).toContain(`ok   with userid=${partnerUserId} (the macro replaced)`);
    expect(out).toContain(
      `4. our /uid: GET ${api}/uid?userid=${partnerUserId}&pl=${HEALTHY}&plsec=[redacted]`,
    );
    expect(out).toContain('ok   accepted: stored (new mapping stored)');
    expect(out).toContain(`DMP user ${dmpUserId} -> partner user ${partnerUserId} on platform ${HEALTHY}`);
    expect(out).toContain(
      `OK: the sync works: DMP user ${dmpUserId} is mapped to partner user ${partnerUserId}`,
    );
    // What it reports is what the table holds.
    expect(await storedPartnerId(dmpUserId!, HEALTHY)).toBe(partnerUserId);
  });

  it('gives the same facts as JSON, with and without debug traces', async () => {
    for (const args of [[], ['--no-trace']]) {
      const { code, report, stdout } = await runJson([String(HEALTHY), ...args]);
      expect(code, args.join(' ')).toBe(0);
      const partnerUserId = partnerIds()[0]!;
      expect(report).toMatchObject({
        environment: 'local',
        platform: { id: HEALTHY },
        partnerOrigin: new URL(cli.stack.partnerUrl).origin,
        ourOrigins: [new URL(cli.stack.apiUrl).origin],
        traces: args.length === 0 ? 'on' : 'notRequested',
        partnerUserId,
        ok: true,
        mapping: { platformId: HEALTHY, partnerUserId, previousPartnerUserId: null, expired: false },
      });
      expect(report.dmpUserId).toMatch(/^[A-Za-z0-9_-]{22}$/);
      expect(report.hops.map((hop) => [hop.step, hop.ok])).toEqual([
        ['sync', true],
        ['partnerUrl', true],
        ['partner', true],
        ['uid', true],
      ]);
      const [sync, , partner, uid] = report.hops;
      expect(sync).toMatchObject({ status: 302, reason: null, error: null });
      expect(sync!.cookiesSet.map((cookie) => [cookie.name, cookie.action])).toEqual([
        ['dmp_uid', 'set'],
        ['dmp_sa', 'set'],
      ]);
      expect(partner).toMatchObject({ httpStatus: 302, cookiesSent: expect.arrayContaining(['dmp_uid']) });
      expect(uid).toMatchObject({
        status: 200,
        reason: null,
        cookiesSent: expect.arrayContaining(['dmp_uid']),
        outcome: args.length === 0 ? 'stored' : null,
      });
      if (args.length === 0) {
        expect(sync!.httpStatus).toBe(200);
        expect(sync!.trace?.map((entry) => entry.step)).toContain('redirect');
        expect(uid!.trace?.find((entry) => entry.step === 'mapping')?.detail).toBe('new mapping stored');
      } else {
        expect(sync!.httpStatus).toBe(302);
        expect(sync!.trace).toBeNull();
        expect(uid!.trace).toBeNull();
      }
      expect(await storedPartnerId(report.dmpUserId!, HEALTHY)).toBe(partnerUserId);
      // The minted token travelled to the partner, and never into the output.
      const sent = cli.stack.partner.requests.filter((request) => request.path === '/sync').at(-1)!;
      const token = new URL(sent.query['out'] as string).searchParams.get('plsec')!;
      expect(token).toMatch(/^m1\./);
      expect(stdout).not.toContain(token);
    }
  });

  it('explains a refused callback: the partner sends its "no id" value', async () => {
    // A browser the partner has no id for: it answers with `0` in place of the id.
    const jar = join(cli.workDir, 'jar-no-id.txt');
    writeFileSync(jar, `# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tpartner_uid\t0\n`);
    const text = await runDmpInProcess(
      ['platforms', 'test-sync', String(HEALTHY), '--cookie-jar', jar],
      cli.env,
    );
    expect(text.code).toBe(1);
    expect(text.stdout).toContain('ok   with userid=0 (the macro replaced)');
    expect(text.stdout).toContain(
      'FAIL refused: 400 userid_sentinel: the partner sent a "no id" value (0, null, ...): it has no id for this browser',
    );
    expect(text.stdout).toMatch(/mapping: none stored for DMP user \S+ and platform 99999/);
    expect(text.stdout).toContain('FAILED: our /uid refused the callback: userid_sentinel');

    for (const args of [[], ['--no-trace']]) {
      writeFileSync(jar, `127.0.0.1\tFALSE\t/\tFALSE\t0\tpartner_uid\t0\n`);
      const { code, report } = await runJson([String(HEALTHY), '--cookie-jar', jar, ...args]);
      expect(code).toBe(1);
      expect(report.ok).toBe(false);
      expect(report.hops.map((hop) => [hop.step, hop.ok])).toEqual([
        ['sync', true],
        ['partnerUrl', true],
        ['partner', true],
        ['uid', false],
      ]);
      // Refused: the reason from the trace, or from the x-dmp-reason header without one.
      expect(report.hops[3]).toMatchObject({
        status: 400,
        reason: 'userid_sentinel',
        outcome: args.length === 0 ? 'rejected' : null,
      });
      expect(report.mapping).toBeNull();
      expect(await storedPartnerId(report.dmpUserId!, HEALTHY)).toBeUndefined();
    }
    // The jar was saved: the same browser, whose partner sync was just attempted, is not due again.
    expect(readFileSync(jar, 'utf8')).toMatch(
      /^#HttpOnly_127\.0\.0\.1\tFALSE\t\/\tTRUE\t\d+\tdmp_sa\t99999:/m,
    );
    const again = await runJson([String(HEALTHY), '--cookie-jar', jar]);
    expect(again.code).toBe(1);
    expect(again.report.hops.map((hop) => hop.step)).toEqual(['sync']);
    expect(again.report.hops[0]!.checks.at(-1)?.text).toMatch(/nothing due for this browser/);
  });

  it('explains a partner that answers an error', async () => {
    const text = await runDmpInProcess(['platforms', 'test-sync', String(UNSIGNABLE)], cli.env);
    expect(text.code).toBe(1);
    expect(text.stdout).toContain(`3. the partner: GET ${new URL(cli.stack.partnerUrl).origin}/sync?out=`);
    expect(text.stdout).toContain(`FAIL answered 400: no signing key for ${UNSIGNABLE}`);
    expect(text.stdout).toContain(`FAILED: the partner answered 400 (no signing key for ${UNSIGNABLE})`);

    const { code, report } = await runJson([String(UNSIGNABLE)]);
    expect(code).toBe(1);
    expect(report.hops.map((hop) => [hop.step, hop.ok])).toEqual([
      ['sync', true],
      ['partnerUrl', true],
      ['partner', false],
    ]);
    expect(report.hops[2]).toMatchObject({
      httpStatus: 400,
      body: `no signing key for ${UNSIGNABLE}`,
      location: null,
    });
    expect(report.partnerUserId).toBeNull();
    expect(report.mapping).toBeNull();
  });

  it('gives up on a hop that does not answer within --timeout', async () => {
    // A server that takes the request and never answers, in place of our API.
    const silent = createServer(() => {});
    const port = await listen(silent, 0);
    try {
      const endpoints = join(cli.workDir, 'silent-endpoints.json');
      writeEndpointsFile(endpoints, { ...endpointsOf(cli.stack), syncPixelUrl: `${originOf(port)}/sync` });
      const result = await runDmpInProcess(
        ['platforms', 'test-sync', String(HEALTHY), '--timeout', '0.2', '--json'],
        { [ENDPOINTS_FILE_ENV_VAR]: endpoints },
      );
      expect(result.code).toBe(1);
      const report = JSON.parse(result.stdout) as TestSyncReport;
      expect(report.hops).toHaveLength(1);
      expect(report.hops[0]).toMatchObject({
        step: 'sync',
        httpStatus: null,
        error: 'no answer within 0.2 s (timeout)',
      });
      expect(report.conclusion).toBe('our /sync did not answer: no answer within 0.2 s (timeout)');
      expect(report.dmpUserId).toBeNull();
    } finally {
      await close(silent);
    }
  });

  describe('against a deployed environment', () => {
    let cloudFormation: CloudFormationStandIn;
    beforeAll(async () => {
      // `dev`'s outputs, pointing at this stack: its /sync sends the browser to the local
      // reference partner, which is not dev's configured partner host.
      cloudFormation = await startCloudFormation('DmpActivation-dev', {
        [STACK_OUTPUTS.syncPixelUrl]: `${cli.stack.apiUrl}/sync`,
        [STACK_OUTPUTS.mappingTableName]: MAPPING_TABLE.localName,
      });
    });
    afterAll(() => cloudFormation?.close());

    it('reads our URL from the stack outputs and never follows a redirect to another host', async () => {
      const requestsBefore = cli.stack.partner.requests.length;
      const result = await runDmp(['platforms', 'test-sync', String(HEALTHY), '--env', 'dev', '--json'], {
        env: {
          AWS_REGION: 'eu-west-1',
          AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
          AWS_SECRET_ACCESS_KEY: 'do-not-print-this-secret-value',
          AWS_ENDPOINT_URL_CLOUDFORMATION: cloudFormation.url,
          AWS_ENDPOINT_URL_DYNAMODB: cli.stack.dynamodbEndpoint,
        },
      });
      expect(result.stderr).toBe('');
      expect(result.code).toBe(1);
      const report = JSON.parse(result.stdout) as TestSyncReport;
      expect(cloudFormation.calls.map((call) => call.get('StackName'))).toContain('DmpActivation-dev');
      expect(report).toMatchObject({
        environment: 'dev',
        syncPixelUrl: `${cli.stack.apiUrl}/sync`,
        partnerOrigin: 'https://api.third-party.com',
        ok: false,
      });
      expect(report.hops).toHaveLength(1);
      expect(report.hops[0]!.checks.at(-1)?.text).toBe(
        `redirects to ${new URL(cli.stack.partnerUrl).origin}, which is not the platform's sync host https://api.third-party.com: not followed`,
      );
      expect(cli.stack.partner.requests.length).toBe(requestsBefore);
      expect(report.mappingTable).toContain('dev (stack DmpActivation-dev');
    });
  });

  it('refuses bad arguments with the usage line, and unknown platforms with the known ones', async () => {
    for (const argv of [
      ['platforms', 'test-sync'],
      ['platforms', 'test-sync', 'abc'],
      ['platforms', 'test-sync', '99999', '--param', 'pl=1'],
      ['platforms', 'test-sync', '99999', '--timeout', '0'],
    ]) {
      const result = await runDmpInProcess(argv, cli.env);
      expect(result.code, argv.join(' ')).toBe(2);
      expect(result.stderr, argv.join(' ')).toContain('usage: dmp platforms test-sync <platformId>');
    }
    const unknown = await runDmpInProcess(['platforms', 'test-sync', '12345'], cli.env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toBe(
      'dmp platforms test-sync: unknown platform 12345 in environment local (platforms: 99999, 88888, 99998, 99997)',
    );
  });
});

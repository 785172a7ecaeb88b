import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SegmentView } from '../../cli/commands/segments.ts';
import {
  DATA_DIR_ENV_VAR,
  ENDPOINTS_FILE_ENV_VAR,
  endpointsFilePath,
  writeEndpointsFile,
} from '../../local/endpoints.ts';
import { endpointsOf, type LocalStack } from '../../local/stack.ts';
import { SEGMENT_TABLE, STACK_OUTPUTS } from '../../src/infra/resources.ts';
import { type CliResult, runDmp, runDmpInProcess } from '../support/cli.ts';
import { type CloudFormationStandIn, startCloudFormation } from '../support/cloudformation.ts';
import { startEchoStack } from '../support/local-stack.ts';

/** Platform 99999's API credentials in config/local-secrets.json (the seed's `curl -u foo:bar`). */
const CREDENTIALS = ['foo', 'bar', 'Zm9vOmJhcg=='];
const AWKWARD_NAME = 'Cart & "VIP" / 50%';

interface EnsureJson {
  readonly platformId: number;
  readonly audienceId: string;
  readonly partnerSegmentId: string;
  readonly obtainedNow: boolean;
  readonly state: string;
}

/** Every output of the CLI in this file, checked for credentials at the end. */
const outputs: CliResult[] = [];

/** Runs `dmp` as the operator would, in its own process, with only the given environment. */
async function dmp(args: readonly string[], env: Record<string, string>): Promise<CliResult> {
  const result = await runDmp(args, { env });
  outputs.push(result);
  return result;
}

/** Runs `dmp` in this process (fast; for checks that end before any AWS call). */
async function run(argv: string[], env: NodeJS.ProcessEnv): Promise<CliResult> {
  const result = await runDmpInProcess(argv, env);
  outputs.push(result);
  return result;
}

// Each `dmp` process takes seconds to start on a busy machine: room for several per test.
describe('dmp segments', { timeout: 120_000 }, () => {
  let stack: LocalStack;
  let workDir: string;
  let localEnv: Record<string, string>;

  const createCalls = () =>
    stack.partner.requests.filter(
      (request) => request.method === 'POST' && request.path === '/v1/segment' && 'title' in request.query,
    );
  const partnerControl = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${stack.partnerUrl}${path}`, {
      method,
      ...(body === undefined
        ? {}
        : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    });
    expect(response.status, `${method} ${path}`).toBeLessThan(300);
    return response.json() as Promise<unknown>;
  };
  /** `dmp segments ensure` of platform 99999, in its own process. */
  const ensure = (audience: string, name: string, ...flags: string[]) =>
    dmp(
      ['segments', 'ensure', '--platform', '99999', '--audience', audience, '--name', name, ...flags],
      localEnv,
    );
  /** `dmp segments --json`, in process: reads only (the ensure runs above use their own processes). */
  const listSegments = async (args: string[] = []) => {
    const result = await run(['segments', '--json', ...args], localEnv);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    return (JSON.parse(result.stdout) as { segments: SegmentView[] }).segments;
  };

  beforeAll(async () => {
    workDir = mkdtempSync(join(tmpdir(), 'dmp-cli-segments-'));
    const dataDir = join(workDir, 'data');
    stack = await startEchoStack({ dataDir });
    // What `npm start` writes for the CLI (local/start.ts); this process is the stack's pid.
    writeEndpointsFile(endpointsFilePath(dataDir), endpointsOf(stack));
    localEnv = { [DATA_DIR_ENV_VAR]: dataDir };
  });

  afterAll(async () => {
    await stack?.stop();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it('creates the partner segment once, with its name intact, and reuses it', async () => {
    const first = await ensure('aud-42', AWKWARD_NAME, '--json');
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    const created = JSON.parse(first.stdout) as EnsureJson;
    const partnerSegments = stack.partner.segments();
    expect(partnerSegments).toHaveLength(1);
    expect(partnerSegments[0]).toMatchObject({ title: AWKWARD_NAME, kind: 'custom', external_id: 'aud-42' });
    expect(created).toMatchObject({
      platformId: 99999,
      audienceId: 'aud-42',
      partnerSegmentId: String(partnerSegments[0]!.segment_id),
      obtainedNow: true,
      state: 'ready',
    });
    const calls = createCalls();
    expect(calls).toHaveLength(1);
    expect(calls[0]!.query['title']).toBe(AWKWARD_NAME);
    // The credentials came from the Secrets Manager stand-in (basic, as the connector says).
    expect(calls[0]!.auth).toBe('basic');

    const again = await ensure('aud-42', AWKWARD_NAME, '--json');
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({
      partnerSegmentId: created.partnerSegmentId,
      obtainedNow: false,
      state: 'ready',
    });
    const text = await ensure('aud-42', AWKWARD_NAME);
    expect(text.code).toBe(0);
    expect(text.stdout.trim()).toBe(
      `platform 99999, audience aud-42: partner segment ${created.partnerSegmentId} (already known)`,
    );
    expect(createCalls()).toHaveLength(1);
    expect(stack.partner.segments()).toHaveLength(1);

    const [segment, ...others] = await listSegments();
    expect(others).toEqual([]);
    expect(segment).toMatchObject({
      platformId: 99999,
      audienceId: 'aud-42',
      audienceName: AWKWARD_NAME,
      kind: 'custom',
      partnerSegmentId: created.partnerSegmentId,
      state: 'ready',
      nameAtPartner: AWKWARD_NAME,
      nameStatus: 'current',
      attempts: 1,
      source: 'created',
      possibleDuplicate: false,
      outcomeUnknown: false,
      lastError: null,
      renameError: null,
    });

    const table = await run(['segments'], localEnv);
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]).toContain(
      `Segments in local (${stack.dynamodbEndpoint}, table ${SEGMENT_TABLE.localName})`,
    );
    expect(lines).toContainEqual(
      expect.stringMatching(/^PLATFORM\s+AUDIENCE\s+AUDIENCE NAME\s+KIND\s+PARTNER ID/),
    );
    expect(lines).toContainEqual(
      expect.stringMatching(
        new RegExp(
          `^99999\\s+aud-42\\s+Cart & "VIP" / 50%\\s+custom\\s+${created.partnerSegmentId}\\s+ready\\s`,
        ),
      ),
    );
  });

  it('records a refusal with the partner answer, keeps it, and creates on --retry-failed', async () => {
    await partnerControl('POST', '/__faults', {
      status: 400,
      method: 'POST',
      pathPrefix: '/v1/segment',
      count: 1,
    });
    const refused = await ensure('aud-43', 'Refused once');
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toContain(
      'platform 99999, audience aud-43: the partner refused segment creation: HTTP 400',
    );
    expect(refused.stderr).toContain('"error":"bad request"');
    expect(refused.stderr).toContain('--retry-failed');
    expect(refused.stderr).not.toContain('    at ');

    const failed = (await listSegments(['--platform', '99999'])).find((s) => s.audienceId === 'aud-43');
    expect(failed).toMatchObject({ state: 'failed', partnerSegmentId: null, attempts: 1 });
    expect(failed?.lastError?.status).toBe(400);
    expect(failed?.lastError?.message).toContain('bad request');
    const table = await run(['segments', '--platform', '99999'], localEnv);
    expect(table.stdout).toMatch(/^99999\s+aud-43\s+Refused once\s+custom\s+-\s+failed\s.*HTTP 400: /m);

    // The fault is gone, but a refusal is not retried blindly.
    await partnerControl('DELETE', '/__faults');
    const calls = stack.partner.requests.length;
    const still = await ensure('aud-43', 'Refused once', '--json');
    expect(still.code).toBe(1);
    expect(still.stderr).toContain('HTTP 400');
    expect(stack.partner.requests.length).toBe(calls);

    const retried = await ensure('aud-43', 'Refused once', '--retry-failed', '--json');
    expect(retried.stderr).toBe('');
    expect(retried.code).toBe(0);
    const ready = JSON.parse(retried.stdout) as EnsureJson;
    expect(ready).toMatchObject({ audienceId: 'aud-43', obtainedNow: true, state: 'ready' });
    expect(stack.partner.segments().find((s) => s.title === 'Refused once')?.segment_id).toBe(
      Number(ready.partnerSegmentId),
    );
    expect((await listSegments()).find((s) => s.audienceId === 'aud-43')).toMatchObject({
      state: 'ready',
      partnerSegmentId: ready.partnerSegmentId,
      attempts: 2,
      lastError: null,
    });
  });

  it('says "not ready yet" with the time the partner asked for, and does not call it before then', async () => {
    // A Retry-After beyond the connector's maxDelayMs: the client gives up at once (no backoff).
    await partnerControl('POST', '/__faults', {
      status: 429,
      retryAfter: 3600,
      method: 'POST',
      pathPrefix: '/v1/segment',
      count: 1,
    });
    const later = await ensure('aud-45', 'Throttled');
    expect(later.code).toBe(1);
    expect(later.stderr).toMatch(
      /platform 99999, audience aud-45: not ready yet, retry after \d{4}-\d\d-\d\dT/,
    );
    expect(later.stderr).toContain('HTTP 429');
    const listed = (await listSegments()).find((s) => s.audienceId === 'aud-45');
    expect(listed).toMatchObject({
      state: 'retry',
      partnerSegmentId: null,
      outcomeUnknown: false,
      lastError: { status: 429, step: 'create' },
    });
    expect(Date.parse(listed!.retryAt!)).toBeGreaterThan(Date.now() + 3_000_000);

    const calls = stack.partner.requests.length;
    const again = await ensure('aud-45', 'Throttled');
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`retry after ${listed!.retryAt}`);
    expect(stack.partner.requests.length).toBe(calls);
    const table = await run(['segments', '--platform', '99999'], localEnv);
    expect(table.stdout).toContain(`retryAt=${listed!.retryAt}`);
  });

  it('shows a create it cannot settle, and resolves it in one command: adopt an id, or confirm a create', async () => {
    const first = JSON.parse((await ensure('aud-50', 'Twin name', '--json')).stdout) as EnsureJson;
    // Another audience of the same name; the partner creates its segment, then answers 500. The
    // lookup by name finds aud-50's segment: whether aud-51 has one is unknown.
    await partnerControl('POST', '/__faults', {
      status: 500,
      process: true,
      method: 'POST',
      pathPrefix: '/v1/segment',
      count: 1,
    });
    const unsure = await ensure('aud-51', 'Twin name');
    expect(unsure.code).toBe(1);
    expect(unsure.stderr).toContain('platform 99999, audience aud-51: needs an operator: possible duplicate');
    expect(unsure.stderr).toContain('dmp segments resolve --platform 99999 --audience aud-51 --adopt');
    const twins = stack.partner.segments().filter((s) => s.title === 'Twin name');
    expect(twins).toHaveLength(2);

    const listed = (await listSegments()).find((s) => s.audienceId === 'aud-51');
    expect(listed).toMatchObject({ state: 'unresolved', possibleDuplicate: true, partnerSegmentId: null });
    expect(listed?.resolve).toContain('dmp segments resolve --platform 99999 --audience aud-51');
    const table = await run(['segments', '--platform', '99999'], localEnv);
    expect(table.stdout).toMatch(
      /^99999\s+aud-51\s+Twin name\s+custom\s+-\s+unresolved\s.*possibleDuplicate/m,
    );
    expect(table.stdout).toContain('need an operator');
    expect(table.stdout).toContain('  dmp segments resolve --platform 99999 --audience aud-51 --adopt');

    // The operator cannot give it aud-50's segment...
    const wrong = await run(
      [
        'segments',
        'resolve',
        '--platform',
        '99999',
        '--audience',
        'aud-51',
        '--adopt',
        first.partnerSegmentId,
      ],
      localEnv,
    );
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain(
      `partner segment ${first.partnerSegmentId} already belongs to audience aud-50`,
    );
    // ...and adopts the one the partner made for it.
    const own = String(twins[1]!.segment_id);
    const adopted = await run(
      ['segments', 'resolve', '--platform', '99999', '--audience', 'aud-51', '--adopt', own],
      localEnv,
    );
    expect(adopted.stderr).toBe('');
    expect(adopted.code).toBe(0);
    expect(adopted.stdout).toContain(`partner segment ${own} (adopted by an operator)`);
    expect((await listSegments()).find((s) => s.audienceId === 'aud-51')).toMatchObject({
      state: 'ready',
      partnerSegmentId: own,
      source: 'adopted',
      possibleDuplicate: false,
      resolve: null,
    });

    // The same, where the partner did not create it: the operator confirms a create.
    await partnerControl('POST', '/__faults', {
      status: 500,
      method: 'POST',
      pathPrefix: '/v1/segment',
      count: 1,
    });
    expect((await ensure('aud-52', 'Twin name')).code).toBe(1);
    expect(stack.partner.segments().filter((s) => s.title === 'Twin name')).toHaveLength(2);
    const created = await dmp(
      ['segments', 'resolve', '--platform', '99999', '--audience', 'aud-52', '--create', '--json'],
      localEnv,
    );
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    const third = stack.partner.segments().filter((s) => s.title === 'Twin name');
    expect(third).toHaveLength(3);
    expect(JSON.parse(created.stdout)).toMatchObject({
      audienceId: 'aud-52',
      partnerSegmentId: String(third[2]!.segment_id),
      state: 'ready',
      source: 'created',
      possibleDuplicate: false,
    });
    const nothing = await run(
      ['segments', 'resolve', '--platform', '99999', '--audience', 'aud-52', '--create'],
      localEnv,
    );
    expect(nothing.code).toBe(1);
    expect(nothing.stderr).toContain('nothing to confirm (state ready)');
  });

  it('passes a rename on, and shows a failed one', async () => {
    await ensure('aud-44', 'Lookalikes', '--kind', 'lookalike');
    expect(stack.partner.segments().find((s) => s.title === 'Lookalikes')).toMatchObject({
      kind: 'lookalike',
      external_id: 'aud-44',
    });

    const renamed = await ensure('aud-44', 'Lookalikes 2', '--kind', 'lookalike');
    expect(renamed.code).toBe(0);
    expect(stack.partner.segments().map((s) => s.title)).toContain('Lookalikes 2');
    expect((await listSegments()).find((s) => s.audienceId === 'aud-44')).toMatchObject({
      audienceName: 'Lookalikes 2',
      nameAtPartner: 'Lookalikes 2',
      nameStatus: 'current',
    });

    await partnerControl('POST', '/__faults', { status: 409, method: 'PUT', count: 1 });
    const conflict = await ensure('aud-44', 'Lookalikes 3', '--kind', 'lookalike');
    expect(conflict.code).toBe(0);
    expect(conflict.stdout).toContain('warning: rename at the partner failed: HTTP 409');
    const segment = (await listSegments()).find((s) => s.audienceId === 'aud-44');
    expect(segment).toMatchObject({
      audienceName: 'Lookalikes 3',
      nameAtPartner: 'Lookalikes 2',
      nameStatus: 'renameFailed',
      state: 'ready',
    });
    expect(segment?.renameError?.status).toBe(409);
    const table = await run(['segments', '--platform', '99999'], localEnv);
    expect(table.stdout).toMatch(
      /^99999\s+aud-44\s+Lookalikes 3\s+lookalike\s+\d+\s+ready\s+Lookalikes 2 \[differs: rename failed\]/m,
    );
    expect(table.stdout).toMatch(/aud-44.*HTTP 409: /);
  });

  it('refuses bad arguments (exit 2), unknown platforms and platforms without a connector (exit 1)', async () => {
    const ensure = ['segments', 'ensure', '--platform', '99999'];
    for (const [argv, message] of [
      [[...ensure, '--audience', 'bad id!', '--name', 'x'], '--audience: letters, digits and . _ : -'],
      [[...ensure, '--audience', 'aud-1', '--name', ''], '--name: must not be empty'],
      [[...ensure, '--audience', 'aud-1', '--name', 'x'.repeat(257)], '--name: at most 256 characters'],
      [['segments', 'resolve', '--platform', '99999', '--audience', 'aud-1'], 'give exactly one of --adopt'],
      [[...ensure, '--audience', 'aud-1', '--name', 'x', '--kind', 'similar'], '--kind: '],
      [[...ensure, '--audience', 'aud-1'], '--name is required'],
      [['segments', 'ensure', '--audience', 'aud-1', '--name', 'x'], '--platform is required'],
      [
        ['segments', 'ensure', '--platform', 'abc', '--audience', 'aud-1', '--name', 'x'],
        '--platform must be',
      ],
      [['segments', '--platform', '0'], '--platform must be'],
      [['segments', '--env', 'Not_An_Env'], "invalid environment name 'Not_An_Env'"],
    ] as const) {
      const result = await run([...argv], localEnv);
      expect(result.code, argv.join(' ')).toBe(2);
      expect(result.stderr, argv.join(' ')).toContain(message);
      expect(result.stderr, argv.join(' ')).toMatch(/usage: dmp segments/);
    }

    const unknown = await run(
      ['segments', 'ensure', '--platform', '12345', '--audience', 'a', '--name', 'x'],
      localEnv,
    );
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain(
      'unknown platform 12345 in environment local (platforms: 99999, 88888, 99998, 99997)',
    );
    const syncOnly = await run(
      ['segments', 'ensure', '--platform', '88888', '--audience', 'a', '--name', 'x'],
      localEnv,
    );
    expect(syncOnly.code).toBe(1);
    expect(syncOnly.stderr).toContain(
      'platform 88888 (Reference partner, signed callbacks) in environment local has no connector',
    );

    const none = await run(['segments', '--platform', '88888'], localEnv);
    expect(none.code).toBe(0);
    expect(none.stdout).toContain('No segments of platform 88888 in local');
  });

  it('exits 1 without a stack trace when no local stack is running', async () => {
    // A fixed path: the message names it, and every output is checked for credentials.
    const env = { [ENDPOINTS_FILE_ENV_VAR]: join(tmpdir(), 'dmp-cli-segments-absent', 'endpoints.json') };
    for (const argv of [
      ['segments'],
      ['segments', 'ensure', '--platform', '99999', '--audience', 'aud-42', '--name', 'x'],
    ]) {
      const result = await run(argv, env);
      expect(result.code, argv.join(' ')).toBe(1);
      expect(result.stderr).toContain('cannot find the local stack: no local stack is running');
      expect(result.stderr).not.toContain('    at ');
    }
  });

  describe('a deployed environment', () => {
    let cloudFormation: CloudFormationStandIn;
    let deployedEnv: Record<string, string>;

    beforeAll(async () => {
      // A CloudFormation stand-in naming the local segment table as dev's.
      cloudFormation = await startCloudFormation('DmpActivation-dev', {
        [STACK_OUTPUTS.segmentTableName]: SEGMENT_TABLE.localName,
      });
      deployedEnv = {
        AWS_REGION: 'eu-west-1',
        AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
        AWS_SECRET_ACCESS_KEY: 'do-not-print-this-secret-value',
        AWS_ENDPOINT_URL_CLOUDFORMATION: cloudFormation.url,
        AWS_ENDPOINT_URL_DYNAMODB: stack.dynamodbEndpoint,
        // Holds only the local environment's secrets: dev's are not there.
        AWS_ENDPOINT_URL_SECRETS_MANAGER: stack.secretsEndpoint,
      };
    });

    afterAll(async () => {
      await cloudFormation?.close();
    });

    it("lists the table named by the stack's output, and reads credentials from Secrets Manager", async () => {
      const listed = await dmp(['segments', '--env', 'dev', '--json'], deployedEnv);
      expect(listed.stderr).toBe('');
      expect(listed.code).toBe(0);
      expect(
        (JSON.parse(listed.stdout) as { segments: SegmentView[] }).segments.map((s) => s.audienceId),
      ).toEqual(expect.arrayContaining(['aud-42', 'aud-43']));

      const requests = stack.partner.requests.length;
      const ensured = await dmp(
        [
          'segments',
          'ensure',
          '--env',
          'dev',
          '--platform',
          '99999',
          '--audience',
          'aud-99',
          '--name',
          'Dev',
        ],
        deployedEnv,
      );
      expect(ensured.code).toBe(1);
      expect(ensured.stderr).toContain(
        'no secret dmp-activation/dev/platforms/99999/api in Secrets Manager (eu-west-1)',
      );
      expect(ensured.stderr).not.toContain('do-not-print-this-secret-value');
      expect(stack.partner.requests.length).toBe(requests);
      // Nothing was written: no lease is left behind by a missing secret.
      const after = await listSegments();
      expect(after.map((s) => s.audienceId)).not.toContain('aud-99');
    });
  });

  it('never prints a credential', () => {
    expect(outputs.length).toBeGreaterThan(10);
    for (const output of outputs) {
      for (const credential of CREDENTIALS) {
        expect(output.stdout).not.toContain(credential);
        expect(output.stderr).not.toContain(credential);
      }
    }
  });
});

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, expect } from 'vitest';
import type { TestSyncReport } from '../../cli/commands/test-sync.ts';
import { ENDPOINTS_FILE_ENV_VAR, LOCAL_CREDENTIALS, writeEndpointsFile } from '../../local/endpoints.ts';
import { endpointsOf, type LocalStack, type LocalStackOptions, startLocalStack } from '../../local/stack.ts';
import { MAPPING_TABLE } from '../../src/infra/resources.ts';
import { runDmpInProcess } from './cli.ts';
import { quietLambdaOutput } from './local-stack.ts';

/**
 * A real local stack (the handlers, dynalite, the reference partner) for the `dmp platforms
 * test-sync` tests, started for one describe block and found by `dmp` through its endpoints file.
 * One per test file: a second stack in the same process would reuse the first one's handler
 * modules, which keep their clients from their first load.
 */

export interface CliStack {
  readonly stack: LocalStack;
  readonly workDir: string;
  /** The environment that points `dmp` at this stack. */
  readonly env: Record<string, string>;
  /** The partner id stored for (DMP user, platform), read from the table without the CLI. */
  storedPartnerId(dmpUserId: string, platformId: number): Promise<string | undefined>;
  /** The ids the reference partner's /sync gave browsers, latest first. */
  partnerIds(): (string | undefined)[];
  /** `dmp platforms test-sync <args> --json`, in this process. */
  runJson(args: string[]): Promise<{ code: number | null; report: TestSyncReport; stdout: string }>;
}

/** A real local stack for the describe block, found by `dmp` through its endpoints file. */
export function useCliStack(options: (workDir: string) => LocalStackOptions): CliStack {
  let stack: LocalStack | undefined;
  let workDir: string | undefined;
  let dynamodb: DynamoDBClient | undefined;
  let restoreOutput: (() => void) | undefined;
  const started = () => {
    if (!stack || !workDir || !dynamodb) throw new Error('the stack has not started');
    return { stack, workDir, dynamodb };
  };
  beforeAll(async () => {
    restoreOutput = quietLambdaOutput();
    workDir = mkdtempSync(join(tmpdir(), 'dmp-test-sync-'));
    stack = await startLocalStack({
      quiet: true,
      ttlSweepIntervalMs: 0,
      scheduleEveryMs: 0,
      ...options(workDir),
    });
    writeEndpointsFile(join(workDir, 'endpoints.json'), endpointsOf(stack));
    dynamodb = new DynamoDBClient({
      endpoint: stack.dynamodbEndpoint,
      region: stack.region,
      credentials: LOCAL_CREDENTIALS,
    });
  });
  afterAll(async () => {
    dynamodb?.destroy();
    await stack?.stop();
    restoreOutput?.();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });
  const cli: CliStack = {
    get stack() {
      return started().stack;
    },
    get workDir() {
      return started().workDir;
    },
    get env() {
      return { [ENDPOINTS_FILE_ENV_VAR]: join(started().workDir, 'endpoints.json') };
    },
    async storedPartnerId(dmpUserId, platformId) {
      const { Item } = await started().dynamodb.send(
        new GetItemCommand({
          TableName: MAPPING_TABLE.localName,
          Key: { pk: { S: `user#${dmpUserId}` }, sk: { S: `platform#${platformId}` } },
          ConsistentRead: true,
        }),
      );
      return Item?.['partnerUserId']?.S;
    },
    partnerIds() {
      return started()
        .stack.partner.requests.filter((request) => request.path === '/sync')
        .map((request) => request.partnerUserId)
        .reverse();
    },
    async runJson(args) {
      const result = await runDmpInProcess(['platforms', 'test-sync', ...args, '--json'], cli.env);
      expect(result.stderr).toBe('');
      return {
        code: result.code,
        report: JSON.parse(result.stdout) as TestSyncReport,
        stdout: result.stdout,
      };
    },
  };
  return cli;
}

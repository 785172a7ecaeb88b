import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll } from 'vitest';
import { ENDPOINTS_FILE_ENV_VAR, LOCAL_CREDENTIALS, writeEndpointsFile } from '../../local/endpoints.ts';
import { endpointsOf, type LocalStack, startLocalStack } from '../../local/stack.ts';
import { quietLambdaOutput } from '../support/local-stack.ts';

/** The local stack of the file-platform tests, with clients on its S3 and DynamoDB and a `dmp` env. */
export interface FileTestStack {
  readonly stack: LocalStack;
  readonly s3: S3Client;
  readonly dynamodb: DynamoDBClient;
  /** A temporary directory of the test file, removed after it. */
  readonly workDir: string;
  /** The environment under which `dmp` talks to this stack. */
  readonly cliEnv: Record<string, string>;
}

/**
 * Starts the stack before the file's tests (schedules and TTL sweeps only when a test runs them)
 * and stops it after; `started` receives it once it is up.
 */
export function useFileTestStack(tmpPrefix: string, started: (files: FileTestStack) => void): void {
  let files: FileTestStack | undefined;
  let restoreOutput: (() => void) | undefined;
  beforeAll(async () => {
    restoreOutput = quietLambdaOutput();
    const workDir = mkdtempSync(join(tmpdir(), tmpPrefix));
    const stack = await startLocalStack({ quiet: true, ttlSweepIntervalMs: 0, scheduleEveryMs: 0 });
    const clientOptions = { region: stack.region, credentials: LOCAL_CREDENTIALS };
    writeEndpointsFile(join(workDir, 'endpoints.json'), endpointsOf(stack));
    files = {
      stack,
      s3: new S3Client({ ...clientOptions, endpoint: stack.s3Endpoint, forcePathStyle: true }),
      dynamodb: new DynamoDBClient({ ...clientOptions, endpoint: stack.dynamodbEndpoint }),
      workDir,
      cliEnv: { [ENDPOINTS_FILE_ENV_VAR]: join(workDir, 'endpoints.json') },
    };
    started(files);
  });
  afterAll(async () => {
    files?.s3.destroy();
    files?.dynamodb.destroy();
    await files?.stack.stop();
    restoreOutput?.();
    if (files) rmSync(files.workDir, { recursive: true, force: true });
  });
}

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BatchWriteItemCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  ChangeMessageVisibilityCommand,
  GetQueueUrlCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { marshall } from '@aws-sdk/util-dynamodb';
import type { SQSEvent } from 'aws-lambda';
import { afterAll, beforeAll, expect } from 'vitest';
import { REPO_ROOT } from '../../lib/repo.ts';
import {
  ENDPOINTS_FILE_ENV_VAR,
  LOCAL_CREDENTIALS,
  LOCAL_REGION,
  writeEndpointsFile,
} from '../../local/endpoints.ts';
import { entryLoader, type LambdaHandler } from '../../local/lambda.ts';
import { DEFAULT_SECRETS_PATH, endpointsOf, type LocalStack, startLocalStack } from '../../local/stack.ts';
import { forEachLimited } from '../../src/aws/limit.ts';
import { type ConnectedPlatform, PartnerClients } from '../../src/connectors/partner-clients.ts';
import { audienceQueueName, deliveryQueueName } from '../../src/infra/population.ts';
import {
  type FunctionKey,
  MAPPING_TABLE,
  POPULATION_TABLE,
  SEGMENT_TABLE,
} from '../../src/infra/resources.ts';
import { OUTCOMES, TALLIES } from '../../src/population/accounting.ts';
import type { DeliverServiceDeps } from '../../src/population/deliver-service.ts';
import { DynamoPopulationStore } from '../../src/population/dynamo-store.ts';
import type { Membership } from '../../src/population/membership.ts';
import { UserDigests } from '../../src/privacy/digest.ts';
import { DynamoSegmentStore } from '../../src/segments/segment-store.ts';
import { runDmpInProcess } from '../support/cli.ts';
import { quietLambdaOutput } from '../support/local-stack.ts';
import { BATCH_PLATFORM, SINGLE_PLATFORM, writePopulationConfig } from '../support/population-config.ts';
import { MappingTable, PRIVACY_KEY } from './support.ts';

/**
 * Harness of the population integration tests: the real local stack (route, deliver and release
 * handlers behind the SQS and stream event sources, dynalite, fauxqs, the reference partner) with
 * two API platforms: 99999 in batch mode (config/platforms/local) and 77777 in single mode (added
 * here), a producer that writes audience events to the queue as a DMP would, and readers of the
 * accounting and of what the partner holds.
 */

export { BATCH_PLATFORM, SINGLE_PLATFORM };

export type Totals = Record<(typeof OUTCOMES)[number] | (typeof TALLIES)[number], number>;

export interface PopulationHarness {
  readonly stack: LocalStack;
  readonly mappings: MappingTable;
  readonly store: DynamoPopulationStore;
  /** Sends one audience event exactly as a DMP producer would (SendMessage). */
  send(event: Record<string, unknown> | string): Promise<void>;
  /** Waits until every queue is drained and no handler runs. */
  idle(): Promise<void>;
  /** Counts per outcome for a platform, summed over its segments. */
  totals(platformId: number): Promise<Totals>;
  /** Makes the records of an SQS event visible again now (time compressed: a crash's return). */
  expireVisibility(event: SQSEvent): Promise<void>;
  /** Messages in a queue's DLQ (received and left there). */
  dlqDepth(queueName: string): Promise<number>;
}

export interface HarnessOptions {
  /** Wraps the deliver handler (to crash it after its work, say). */
  readonly wrapDeliver?: (handler: LambdaHandler) => LambdaHandler;
  /** Wraps any function's handler (the route's, the release's). */
  readonly wrapFunction?: (key: FunctionKey, handler: LambdaHandler) => LambdaHandler;
  /** Runs once the environment is written under `dir` (platforms/local, secrets.json), before the stack starts. */
  readonly configure?: (dir: string) => Promise<void> | void;
}

export function usePopulationStack(options: HarnessOptions = {}): PopulationHarness {
  let stack: LocalStack | undefined;
  let mappings: MappingTable | undefined;
  let store: DynamoPopulationStore | undefined;
  let sqs: SQSClient | undefined;
  let dynamodb: DynamoDBClient | undefined;
  let restoreOutput: (() => void) | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'dmp-population-'));

  beforeAll(async () => {
    restoreOutput = quietLambdaOutput();
    const paths = writePopulationConfig(dir);
    await options.configure?.(dir);
    const load = entryLoader(REPO_ROOT);
    stack = await startLocalStack({
      quiet: true,
      ttlSweepIntervalMs: 0,
      // Schedules (the expiry sweep) run when a test says (runSchedule), never by the clock.
      scheduleEveryMs: 0,
      ...paths,
      loadFunction: async (key, definition) => {
        const loaded = await load(key, definition);
        const handler = options.wrapFunction ? options.wrapFunction(key, loaded) : loaded;
        return key === 'deliver' && options.wrapDeliver ? options.wrapDeliver(handler) : handler;
      },
    });
    mappings = new MappingTable(stack.dynamodbEndpoint, MAPPING_TABLE.localName);
    dynamodb = new DynamoDBClient({
      endpoint: stack.dynamodbEndpoint,
      region: LOCAL_REGION,
      credentials: LOCAL_CREDENTIALS,
    });
    store = new DynamoPopulationStore(
      dynamodb,
      POPULATION_TABLE.localName,
      new UserDigests('local', async () => PRIVACY_KEY),
    );
    sqs = new SQSClient({
      endpoint: stack.sqsEndpoint,
      region: LOCAL_REGION,
      credentials: LOCAL_CREDENTIALS,
    });
  });

  afterAll(async () => {
    mappings?.destroy();
    dynamodb?.destroy();
    sqs?.destroy();
    await stack?.stop();
    restoreOutput?.();
    rmSync(dir, { recursive: true, force: true });
  });

  const need = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('the population stack is not started (beforeAll)');
    return value;
  };
  const queueUrl = async (name: string) =>
    (await need(sqs).send(new GetQueueUrlCommand({ QueueName: name }))).QueueUrl as string;

  return {
    get stack() {
      return need(stack);
    },
    get mappings() {
      return need(mappings);
    },
    get store() {
      return need(store);
    },
    async send(event) {
      const body = typeof event === 'string' ? event : JSON.stringify(event);
      await need(sqs).send(
        new SendMessageCommand({ QueueUrl: await queueUrl(audienceQueueName('local')), MessageBody: body }),
      );
    },
    idle: () => need(stack).whenIdle(),
    async totals(platformId) {
      const totals = Object.fromEntries([...OUTCOMES, ...TALLIES].map((name) => [name, 0])) as Totals;
      for (const { counts } of await need(store).stats(platformId)) {
        for (const [name, value] of Object.entries(counts)) totals[name as keyof Totals] += value;
      }
      return totals;
    },
    async expireVisibility(event) {
      for (const record of event.Records) {
        await need(sqs).send(
          new ChangeMessageVisibilityCommand({
            QueueUrl: await queueUrl(record.eventSourceARN.split(':').pop() as string),
            ReceiptHandle: record.receiptHandle,
            VisibilityTimeout: 0,
          }),
        );
      }
    },
    async dlqDepth(queueName) {
      const out = await need(sqs).send(
        new ReceiveMessageCommand({
          QueueUrl: await queueUrl(`${queueName}-dlq`),
          MaxNumberOfMessages: 10,
          VisibilityTimeout: 0,
        }),
      );
      return out.Messages?.length ?? 0;
    },
  };
}

export { deliveryQueueName };

let sequence = 0;

/** An audience event (architecture section 4) for `users`, at `ts`. */
export function audienceEvent(
  users: readonly string[],
  overrides: {
    audience?: string;
    op?: 'add' | 'remove';
    ts?: string;
    platforms?: number[];
    ttlSeconds?: number;
  } = {},
) {
  sequence += 1;
  const audience = overrides.audience ?? `aud-${sequence}`;
  return {
    v: 1,
    audience: { id: audience, name: `Audience ${audience}`, kind: 'custom' },
    platforms: overrides.platforms ?? [BATCH_PLATFORM],
    op: overrides.op ?? 'add',
    users,
    ts: overrides.ts ?? new Date().toISOString(),
    ...(overrides.ttlSeconds === undefined ? {} : { ttlSeconds: overrides.ttlSeconds }),
  };
}

/** `count` DMP user ids with a common prefix. */
export function users(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, index) => `${prefix}-${String(index).padStart(6, '0')}`);
}

/** Stores partner ids for users as a sync would (partner id = `p` + the DMP id), 25 a call. */
export async function sync(harness: PopulationHarness, platformId: number, dmpUsers: readonly string[]) {
  const now = new Date().toISOString();
  const expiresAt = Math.floor(Date.now() / 1000) + 86_400;
  const client = new DynamoDBClient({
    endpoint: harness.stack.dynamodbEndpoint,
    region: LOCAL_REGION,
    credentials: LOCAL_CREDENTIALS,
  });
  try {
    const chunks: string[][] = [];
    for (let index = 0; index < dmpUsers.length; index += 25) chunks.push(dmpUsers.slice(index, index + 25));
    await forEachLimited(chunks, 4, async (chunk) => {
      let requests = chunk.map((dmpUserId) => ({
        PutRequest: {
          Item: marshall({
            pk: `user#${dmpUserId}`,
            sk: `platform#${platformId}`,
            platformId,
            partnerUserId: partnerIdOf(dmpUserId),
            firstSeen: now,
            lastSeen: now,
            lastChanged: now,
            expiresAt,
            version: 1,
          }),
        },
      }));
      while (requests.length > 0) {
        const out = await client.send(
          new BatchWriteItemCommand({ RequestItems: { [MAPPING_TABLE.localName]: requests } }),
        );
        requests = (out.UnprocessedItems?.[MAPPING_TABLE.localName] ?? []) as typeof requests;
      }
    });
  } finally {
    client.destroy();
  }
}

export const partnerIdOf = (dmpUserId: string) => `p${dmpUserId.replaceAll('.', '_')}`;

/** The partner's segment of an audience on a platform (from our segment table). */
export async function segmentOf(
  harness: PopulationHarness,
  platformId: number,
  audienceId: string,
): Promise<string> {
  const client = new DynamoDBClient({
    endpoint: harness.stack.dynamodbEndpoint,
    region: LOCAL_REGION,
    credentials: LOCAL_CREDENTIALS,
  });
  try {
    const record = await new DynamoSegmentStore(client, SEGMENT_TABLE.localName).get(platformId, audienceId);
    expect(record?.state).toBe('ready');
    return record?.partnerSegmentId as string;
  } finally {
    client.destroy();
  }
}

/** Runs `dmp` in process against the harness's local stack (its endpoints file in a temp dir). */
export async function dmpAgainst(harness: PopulationHarness, argv: string[]) {
  const dir = mkdtempSync(join(tmpdir(), 'dmp-cli-'));
  const file = join(dir, 'endpoints.json');
  writeEndpointsFile(file, endpointsOf(harness.stack));
  try {
    return await runDmpInProcess(argv, { [ENDPOINTS_FILE_ENV_VAR]: file });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * What the deliver handler gives the deliver step, for calling it directly (with the test's own
 * store or clock): platform 99999 of the stack's configuration, its partner client with the local
 * API credentials, the harness's population store.
 */
export function deliverDeps(
  harness: PopulationHarness,
  overrides: Partial<DeliverServiceDeps> = {},
): DeliverServiceDeps {
  const platform = harness.stack.config.platforms.find((p) => p.id === BATCH_PLATFORM) as ConnectedPlatform;
  const secrets = JSON.parse(readFileSync(DEFAULT_SECRETS_PATH, 'utf8'));
  const clients = new PartnerClients(
    async () => secrets[`dmp-activation/local/platforms/${BATCH_PLATFORM}/api`],
  );
  return {
    environment: 'local',
    platform: (id) => (id === BATCH_PLATFORM ? platform : undefined),
    partnerFor: (p) => clients.for(p),
    state: harness.store,
    accounting: harness.store,
    ...overrides,
  };
}

/** Adds of `dmpUsers` to a segment of platform 99999 at `ts`, as a delivery message carries them. */
export function adds(
  dmpUsers: readonly string[],
  segmentId: string,
  audienceId: string,
  ts: number,
): Membership[] {
  return dmpUsers.map((dmpUserId) => ({
    platformId: BATCH_PLATFORM,
    segmentId,
    audienceId,
    dmpUserId,
    partnerUserId: partnerIdOf(dmpUserId),
    op: 'add',
    ts,
  }));
}

/** A promise and its resolver: a test step awaits it, another part of the test resolves it. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Outcomes counted by `dmp stats --json` for a platform, summed over its segments. */
export async function statsTotals(harness: PopulationHarness, platformId: number): Promise<Totals> {
  const { rows } = JSON.parse(
    (await dmpAgainst(harness, ['stats', '--platform', String(platformId), '--json'])).stdout,
  ) as { rows: Record<string, number>[] };
  const totals = Object.fromEntries([...OUTCOMES, ...TALLIES].map((name) => [name, 0])) as Totals;
  for (const row of rows)
    for (const name of Object.keys(totals) as (keyof Totals)[]) totals[name] += row[name] ?? 0;
  return totals;
}

/** What changed in each count between two readings. */
export const countsAdded = (after: Totals, before: Totals) =>
  Object.fromEntries(
    Object.keys(after).map((name) => [name, after[name as keyof Totals] - before[name as keyof Totals]]),
  ) as Totals;

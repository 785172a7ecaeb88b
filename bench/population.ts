import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BatchWriteItemCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { GetQueueUrlCommand, SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { marshall } from '@aws-sdk/util-dynamodb';
import { REPO_ROOT } from '../lib/repo.ts';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from '../local/endpoints.ts';
import { entryLoader, type LambdaHandler } from '../local/lambda.ts';
import type { RecordedRequest } from '../local/reference-partner.ts';
import { type LocalStack, startLocalStack } from '../local/stack.ts';
import { forEachLimited } from '../src/aws/limit.ts';
import { audienceQueueName } from '../src/infra/population.ts';
import { MAPPING_TABLE } from '../src/infra/resources.ts';
import { BATCH_PLATFORM, writePopulationConfig } from '../test/support/population-config.ts';
import type { BenchModule } from './registry.ts';

/**
 * Section 8 of the bench: segment population end to end on the local stack (real route and
 * deliver handlers behind the SQS event-source emulation, dynalite, fauxqs, the reference partner),
 * platform 99999 at batch size 1000.
 *
 * - 8a memberships per second end to end, relative to the same pipeline doing no work (the same
 *   messages through the same queues and event source to a route handler that returns at once);
 *   interleaved rounds in one stack;
 * - 8b partner calls per 1000 users at batch size 1000 (target at most 1.05);
 * - 8c event-to-partner latency at light load (one single-user event at a time): p50 and p99,
 *   relative to the delivery batching window (target p99 at most the window plus 1 s).
 */

export interface PopulationOptions {
  readonly users: number;
  readonly rounds: number;
  readonly latencySamples: number;
}

export interface PopulationResult {
  readonly throughputRatio: number;
  readonly throughputRatioQ1: number;
  readonly throughputRatioQ3: number;
  readonly membershipsPerSecond: number;
  readonly baselinePerSecond: number;
  readonly callsPer1000: number;
  readonly latencyP50Ms: number;
  readonly latencyP95Ms: number;
  readonly latencyP99Ms: number;
  /** Event-to-partner latency while a round saturates the pipeline (one sample per call and message). */
  readonly loadedP50Ms: number;
  readonly loadedP95Ms: number;
  readonly loadedP99Ms: number;
  readonly loadedSamples: number;
  readonly windowMs: number;
}

const USERS_PER_MESSAGE = 1000;
const NOOP_PREFIX = 'noop-';

function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? Number.NaN;
}

/** `count` bench user ids with a common prefix (`<prefix>-<8 digits>`). */
export const benchUsers = (prefix: string, count: number) =>
  Array.from({ length: count }, (_, index) => `${prefix}-${String(index).padStart(8, '0')}`);

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
}

export interface SentEvents {
  readonly messages: number;
  readonly bytes: number;
  /** Payload bytes of each SendMessageBatch. */
  readonly calls: number[];
  /** When each message's SendMessageBatch started (epoch ms), by message. */
  readonly sentAt: number[];
}

/** The local stack of the population bench, with its producer and the partner's request log. */
export interface PopulationBenchStack {
  readonly stack: LocalStack;
  /** Stores partner ids (`p<id>`) for users as a sync would, then waits for the stack to settle. */
  syncAll(ids: readonly string[]): Promise<void>;
  /** Sends audience events of USERS_PER_MESSAGE users, 10 a SendMessageBatch, as a DMP producer. */
  send(audience: string, ids: readonly string[]): Promise<SentEvents>;
  /** The partner's population calls in its request log (the latest 1000 requests). */
  populationCalls(): RecordedRequest[];
  stop(): Promise<void>;
}

/**
 * Starts the local stack with platform 99999 at batch size 1000 and `windowMs`, the handlers
 * wrapped by `wrap` (the no-work route, counters), and creates the bench segment (its creation is
 * not population).
 */
export async function startPopulationBench(options: {
  windowMs: number;
  wrap?: (key: string, handler: LambdaHandler) => LambdaHandler;
}): Promise<PopulationBenchStack> {
  const dir = mkdtempSync(join(tmpdir(), 'dmp-bench-population-'));
  const load = entryLoader(REPO_ROOT);
  let stack: LocalStack | undefined;
  try {
    stack = await startLocalStack({
      quiet: true,
      ttlSweepIntervalMs: 0,
      ...writePopulationConfig(dir, { batchSize: 1000, flushAfterMs: options.windowMs }),
      loadFunction: async (key, definition) => {
        const handler = await load(key, definition);
        return options.wrap ? options.wrap(key, handler) : handler;
      },
    });
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  const local = stack;
  const client = new SQSClient({
    endpoint: local.sqsEndpoint,
    region: LOCAL_REGION,
    credentials: LOCAL_CREDENTIALS,
  });
  const dynamodb = new DynamoDBClient({
    endpoint: local.dynamodbEndpoint,
    region: LOCAL_REGION,
    credentials: LOCAL_CREDENTIALS,
  });
  const queueUrl = (await client.send(new GetQueueUrlCommand({ QueueName: audienceQueueName('local') })))
    .QueueUrl as string;
  const bench: PopulationBenchStack = {
    stack: local,
    async syncAll(ids) {
      const expiresAt = Math.floor(Date.now() / 1000) + 86_400;
      const chunks: string[][] = [];
      for (let index = 0; index < ids.length; index += 25) chunks.push(ids.slice(index, index + 25));
      await forEachLimited(chunks, 4, async (chunk) => {
        await dynamodb.send(
          new BatchWriteItemCommand({
            RequestItems: {
              [MAPPING_TABLE.localName]: chunk.map((id) => ({
                PutRequest: {
                  Item: marshall({
                    pk: `user#${id}`,
                    sk: `platform#${BATCH_PLATFORM}`,
                    platformId: BATCH_PLATFORM,
                    partnerUserId: `p${id}`,
                    expiresAt,
                    version: 1,
                  }),
                },
              })),
            },
          }),
        );
      });
      await local.whenIdle();
    },
    async send(audience, ids) {
      const bodies: string[] = [];
      for (let index = 0; index < ids.length; index += USERS_PER_MESSAGE) {
        bodies.push(
          JSON.stringify({
            v: 1,
            audience: { id: audience, name: audience, kind: 'custom' },
            platforms: [BATCH_PLATFORM],
            op: 'add',
            users: ids.slice(index, index + USERS_PER_MESSAGE),
            ts: new Date().toISOString(),
          }),
        );
      }
      const calls: number[] = [];
      const sentAt: number[] = [];
      for (let index = 0; index < bodies.length; index += 10) {
        const batch = bodies.slice(index, index + 10);
        calls.push(batch.reduce((sum, body) => sum + Buffer.byteLength(body), 0));
        for (const _ of batch) sentAt.push(Date.now());
        await client.send(
          new SendMessageBatchCommand({
            QueueUrl: queueUrl,
            Entries: batch.map((body, position) => ({ Id: String(position), MessageBody: body })),
          }),
        );
      }
      return { messages: bodies.length, bytes: calls.reduce((sum, bytes) => sum + bytes, 0), calls, sentAt };
    },
    populationCalls: () =>
      local.partner.requests.filter(
        (r) => r.path === '/v1/segment' && r.method === 'POST' && !('title' in r.query),
      ),
    async stop() {
      dynamodb.destroy();
      client.destroy();
      await local.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await bench.syncAll(['warm-up-00000000']);
  await bench.send('bench-real', ['warm-up-00000000']);
  await local.whenIdle();
  return bench;
}

export async function runPopulation(options: PopulationOptions): Promise<PopulationResult> {
  const saved = {
    log: process.env['POWERTOOLS_LOG_LEVEL'],
    metrics: process.env['POWERTOOLS_METRICS_DISABLED'],
  };
  process.env['POWERTOOLS_LOG_LEVEL'] = 'SILENT';
  process.env['POWERTOOLS_METRICS_DISABLED'] = 'true';
  const windowMs = 1000;
  let bench: PopulationBenchStack | undefined;
  try {
    bench = await startPopulationBench({
      windowMs,
      // The baseline: the same messages, acknowledged by a route that does no work.
      wrap: (key, handler) =>
        key !== 'route'
          ? handler
          : (event, context) =>
              (event as { Records: { body: string }[] }).Records.every((record) =>
                record.body.includes(`"id":"${NOOP_PREFIX}`),
              )
                ? Promise.resolve({ batchItemFailures: [] })
                : handler(event, context),
    });
    const { stack, syncAll, send } = bench;
    const partner = stack.partner;
    const populationCalls = () => bench!.populationCalls().length;
    /**
     * Saturating load: each partner call of a round, from the send of each message it carries
     * users of to the partner's receipt (its request log's time).
     */
    const loadedLatencies: number[] = [];
    const noteLatencies = (prefix: string, sent: SentEvents) => {
      for (const call of bench!.populationCalls()) {
        const received = Date.parse(call.time);
        const messages = new Set<number>();
        for (const item of JSON.parse(call.body ?? '[]') as { userid?: string }[]) {
          const index = item.userid?.startsWith(`p${prefix}-`)
            ? Number(item.userid.slice(prefix.length + 2))
            : NaN;
          if (Number.isInteger(index)) messages.add(Math.floor(index / USERS_PER_MESSAGE));
        }
        for (const message of messages) {
          const at = sent.sentAt[message];
          if (at !== undefined) loadedLatencies.push(received - at);
        }
      }
    };

    const ratios: number[] = [];
    let subjectRate = 0;
    let baselineRate = 0;
    let calls = 0;
    let delivered = 0;
    for (let round = 0; round < options.rounds; round++) {
      const ids = benchUsers(`bench-${round}`, options.users);
      await syncAll(ids);
      const timeOne = async (audience: string) => {
        const started = performance.now();
        const sent = await send(audience, ids);
        await stack!.whenIdle();
        const rate = options.users / ((performance.now() - started) / 1000);
        if (!audience.startsWith(NOOP_PREFIX)) noteLatencies(`bench-${round}`, sent);
        return rate;
      };
      partner.reset();
      // Alternate which goes first, so that drift hits both alike.
      let realRate: number;
      let noopRate: number;
      if (round % 2 === 0) {
        realRate = await timeOne('bench-real');
        noopRate = await timeOne(`${NOOP_PREFIX}${round}`);
      } else {
        noopRate = await timeOne(`${NOOP_PREFIX}${round}`);
        realRate = await timeOne('bench-real');
      }
      calls += populationCalls();
      delivered += options.users;
      ratios.push(realRate / noopRate);
      subjectRate += realRate / options.rounds;
      baselineRate += noopRate / options.rounds;
    }

    const latencies: number[] = [];
    for (let sample = 0; sample < options.latencySamples; sample++) {
      const id = `latency-${String(sample).padStart(8, '0')}`;
      await syncAll([id]);
      const started = Date.now();
      await send('bench-real', [id]);
      await until(() => partner.members(partner.segments()[0]?.segment_id ?? 0).includes(`p${id}`) || false);
      latencies.push(Date.now() - started);
      await stack.whenIdle();
    }
    return {
      throughputRatio: quantile(ratios, 0.5),
      throughputRatioQ1: quantile(ratios, 0.25),
      throughputRatioQ3: quantile(ratios, 0.75),
      membershipsPerSecond: subjectRate,
      baselinePerSecond: baselineRate,
      callsPer1000: calls / (delivered / 1000),
      latencyP50Ms: quantile(latencies, 0.5),
      latencyP95Ms: quantile(latencies, 0.95),
      latencyP99Ms: quantile(latencies, 0.99),
      loadedP50Ms: quantile(loadedLatencies, 0.5),
      loadedP95Ms: quantile(loadedLatencies, 0.95),
      loadedP99Ms: quantile(loadedLatencies, 0.99),
      loadedSamples: loadedLatencies.length,
      windowMs,
    };
  } finally {
    await bench?.stop();
    for (const [name, value] of [
      ['POWERTOOLS_LOG_LEVEL', saved.log],
      ['POWERTOOLS_METRICS_DISABLED', saved.metrics],
    ] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
}

export const populationBench: BenchModule = {
  id: 'population',
  describe: 'segment population end to end on the local stack: throughput, calls per 1000 users, latency',
  async run({ quick }) {
    // --quick must stay short: CI runs it.
    const options = quick
      ? { users: 1000, rounds: 1, latencySamples: 3 }
      : { users: 20_000, rounds: 5, latencySamples: 40 };
    const result = await runPopulation(options);
    return {
      id: 'population',
      title: '8. population end to end on the local stack, platform 99999 at batch size 1000, window 1 s',
      figures: [
        {
          name: '8a memberships/s, full pipeline (baseline: the same messages to a route doing no work)',
          value: result.membershipsPerSecond,
          unit: 'memberships/s',
          baseline: result.baselinePerSecond,
          ratio: result.throughputRatio,
          spread: [result.throughputRatioQ1, result.throughputRatioQ3],
        },
        {
          name: '8b partner calls per 1000 users at batch size 1000',
          value: result.callsPer1000,
          unit: 'calls',
          target: { on: 'value', atMost: 1.05 },
        },
        {
          name: '8c event-to-partner latency p50, light load (baseline: the batching window)',
          value: result.latencyP50Ms,
          unit: 'ms',
          baseline: result.windowMs,
          ratio: result.latencyP50Ms / result.windowMs,
        },
        {
          name: '8c event-to-partner latency p95, light load (baseline: the window plus 1 s)',
          value: result.latencyP95Ms,
          unit: 'ms',
          baseline: result.windowMs + 1000,
          ratio: result.latencyP95Ms / (result.windowMs + 1000),
        },
        {
          name: '8c event-to-partner latency p99, light load (baseline: the window plus 1 s)',
          value: result.latencyP99Ms,
          unit: 'ms',
          baseline: result.windowMs + 1000,
          ratio: result.latencyP99Ms / (result.windowMs + 1000),
          target: { on: 'ratio', atMost: 1 },
        },
        ...(['p50', 'p95', 'p99'] as const).map((q) => ({
          name: `8d event-to-partner latency ${q}, saturating load (${options.users.toLocaleString('en-US')} users sent at once)`,
          value: result[`loaded${q.toUpperCase() as 'P50' | 'P95' | 'P99'}Ms`],
          unit: 'ms',
        })),
      ],
      notes: [
        `8d saturating load: the throughput rounds' full pipeline, ${result.loadedSamples} samples (each partner call, from the send of each message it carries users of to the partner's receipt): the time to drain what is queued ahead, not the window`,
        'the no-work pipeline moves only the SQS messages (1000 users each); the full one also looks up partner ids, reads and writes each membership state and calls the partner',
      ],
    };
  },
};

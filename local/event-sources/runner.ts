import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  QueueDoesNotExist,
  SetQueueAttributesCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { EventSourceDefinition } from '../../src/infra/event-sources.ts';
import { SQS_EVENT_SOURCE_LIMITS, visibilityTimeoutSeconds } from '../../src/infra/queues.ts';
import { FUNCTIONS, type FunctionKey, type TableDefinition } from '../../src/infra/resources.ts';
import type { LocalFunction } from '../lambda.ts';
import type { LocalEventSource } from './common.ts';
import { type DynamoDbStreams, startDynamoDbStreamEventSource } from './dynamodb-stream.ts';
import { type LocalSchedule, startSchedule } from './schedule.ts';
import { startSqsEventSource } from './sqs.ts';

/**
 * The local stack's side of src/infra/event-sources.ts: creates the declared queues (each with its
 * DLQ and redrive policy, the visibility timeout from the consumer settings) and runs the
 * emulated event sources that invoke the functions.
 */

export interface ProvisionedQueue {
  readonly name: string;
  readonly url: string;
  readonly arn: string;
  readonly created: boolean;
  readonly note: string;
}

/** The queues of the declarations, each with its consumer's settings (and DLQ). */
function declaredQueues(sources: readonly EventSourceDefinition[]) {
  return sources.flatMap((source) => (source.kind === 'queue' ? [source] : []));
}

/** The tables whose streams the declarations consume, with every table that asks for a stream. */
export function streamedTables(
  tables: readonly TableDefinition[],
  sources: readonly EventSourceDefinition[],
): TableDefinition[] {
  const byName = new Map<string, TableDefinition>();
  for (const table of tables) if (table.stream) byName.set(table.localName, table);
  for (const source of sources)
    if (source.kind === 'tableStream') byName.set(source.table.localName, source.table);
  return [...byName.values()];
}

/**
 * Creates each declared queue and its DLQ, or brings an existing (persisted) one up to date with
 * the declaration's visibility timeout, retention and redrive policy.
 */
export async function provisionQueues(
  sqs: SQSClient,
  sources: readonly EventSourceDefinition[],
): Promise<ProvisionedQueue[]> {
  const provisioned: ProvisionedQueue[] = [];
  for (const { queue, settings } of declaredQueues(sources)) {
    const dlq = await ensureQueue(sqs, `${queue.localName}-dlq`, {
      MessageRetentionPeriod: String(SQS_EVENT_SOURCE_LIMITS.maxRetentionSeconds),
    });
    const main = await ensureQueue(sqs, queue.localName, {
      VisibilityTimeout: String(visibilityTimeoutSeconds(settings)),
      ...(queue.retentionSeconds ? { MessageRetentionPeriod: String(queue.retentionSeconds) } : {}),
      RedrivePolicy: JSON.stringify({
        deadLetterTargetArn: dlq.arn,
        maxReceiveCount: settings.maxReceiveCount,
      }),
    });
    provisioned.push({
      name: queue.localName,
      url: main.url,
      arn: main.arn,
      created: main.created,
      note:
        `visibility ${visibilityTimeoutSeconds(settings)} s, DLQ ${queue.localName}-dlq after ` +
        `${settings.maxReceiveCount} receives`,
    });
  }
  return provisioned;
}

async function ensureQueue(
  sqs: SQSClient,
  name: string,
  attributes: Record<string, string>,
): Promise<{ url: string; arn: string; created: boolean }> {
  let url: string | undefined;
  try {
    url = (await sqs.send(new GetQueueUrlCommand({ QueueName: name }))).QueueUrl;
  } catch (error) {
    if (!(error instanceof QueueDoesNotExist) && (error as Error).name !== 'QueueDoesNotExist') throw error;
  }
  const created = url === undefined;
  if (url) await sqs.send(new SetQueueAttributesCommand({ QueueUrl: url, Attributes: attributes }));
  else url = (await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes }))).QueueUrl!;
  const { Attributes } = await sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }),
  );
  return { url, arn: Attributes!['QueueArn']!, created };
}

/** Environment variables of the queues that declare one: the queue URL. */
export function queueEnvironment(
  sources: readonly EventSourceDefinition[],
  queues: readonly ProvisionedQueue[],
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const { queue } of declaredQueues(sources)) {
    const url = queues.find((provisioned) => provisioned.name === queue.localName)?.url;
    if (queue.envVar && url) env[queue.envVar] = url;
  }
  return env;
}

export interface EventSourceRunnerOptions {
  readonly sources: readonly EventSourceDefinition[];
  readonly queues: readonly ProvisionedQueue[];
  readonly functions: ReadonlyMap<FunctionKey, LocalFunction>;
  readonly sqs: SQSClient;
  readonly streams?: DynamoDbStreams;
  /** Every schedule's period instead of its own; 0 never runs them by the clock (tests run them). */
  readonly scheduleEveryMs?: number;
  readonly log: (line: string) => void;
}

export interface RunningEventSources {
  readonly summary: readonly string[];
  /** Resolves once no source has anything left to deliver and no invocation runs. */
  whenIdle(): Promise<void>;
  /** Runs a declared schedule now (after its run under way); resolves with the function's result. */
  runSchedule(name: string): Promise<unknown>;
  stop(): Promise<void>;
}

export function startEventSources(options: EventSourceRunnerOptions): RunningEventSources {
  const { functions, log } = options;
  const running: LocalEventSource[] = [];
  const schedules = new Map<string, LocalSchedule>();
  const summary: string[] = [];
  let invocations = 0;
  const invokerOf = (key: FunctionKey) => {
    const fn = functions.get(key);
    if (!fn) throw new Error(`event source for function ${key}, which the local stack does not run`);
    // Counted when an invocation starts and when it ends: one that was under way when a round
    // began may feed a source that round already found idle.
    return (event: unknown) => {
      invocations += 1;
      return Promise.resolve(fn.invoke(event)).finally(() => {
        invocations += 1;
      });
    };
  };
  const target = (key: FunctionKey) => `${key} (${FUNCTIONS[key].entry})`;

  try {
    for (const source of options.sources) {
      switch (source.kind) {
        case 'queue': {
          const queue = options.queues.find((q) => q.name === source.queue.localName);
          if (!queue) throw new Error(`queue ${source.queue.localName} was not provisioned`);
          running.push(
            startSqsEventSource({
              sqs: options.sqs,
              queueUrl: queue.url,
              queueArn: queue.arn,
              settings: source.settings,
              invoke: invokerOf(source.function),
              log,
            }),
          );
          const s = source.settings;
          summary.push(
            `sqs ${queue.name} -> ${target(source.function)}: batch ${s.batchSize}, window ${s.maxBatchingWindowSeconds} s, ` +
              `concurrency ${s.maxConcurrency}`,
          );
          break;
        }
        case 'tableStream': {
          if (!options.streams) throw new Error(`no DynamoDB streams for table ${source.table.localName}`);
          running.push(
            startDynamoDbStreamEventSource({
              stream: options.streams.streamOf(source.table.localName),
              invoke: invokerOf(source.function),
              batchSize: source.batchSize,
              maxBatchingWindowMs: source.maxBatchingWindowSeconds * 1000,
              ...(source.maxRetryAttempts !== undefined ? { maxRetryAttempts: source.maxRetryAttempts } : {}),
              ...(source.filters ? { filters: source.filters } : {}),
              log,
            }),
          );
          summary.push(
            `stream ${source.table.localName} (${source.table.stream}) -> ${target(source.function)}: ` +
              `batch ${source.batchSize}, window ${source.maxBatchingWindowSeconds} s` +
              (source.filters ? `, ${source.filters.length} filter pattern(s)` : ''),
          );
          break;
        }
        case 'schedule': {
          const everyMs = options.scheduleEveryMs ?? source.everyMinutes * 60_000;
          const schedule = startSchedule({
            name: source.name,
            everyMs,
            invoke: invokerOf(source.function) as (event: unknown) => Promise<unknown>,
            ...(source.input !== undefined ? { input: source.input } : {}),
            log,
          });
          schedules.set(source.name, schedule);
          running.push(schedule);
          summary.push(
            `schedule ${source.name} -> ${target(source.function)}: ${everyMs > 0 ? `every ${everyMs / 1000} s` : 'on request only'}`,
          );
          break;
        }
      }
    }
  } catch (error) {
    void Promise.allSettled(running.map((source) => source.stop()));
    throw error;
  }

  return {
    summary,
    async whenIdle() {
      // One source's invocation may feed another (a queue consumer writes to a streamed table):
      // idle means a full round in which every source was idle and no invocation started or ended.
      for (;;) {
        const before = invocations;
        await Promise.all(running.map((source) => source.whenIdle()));
        if (invocations === before) return;
      }
    },
    runSchedule(name) {
      const schedule = schedules.get(name);
      if (!schedule) return Promise.reject(new Error(`no schedule named ${name}`));
      return schedule.runNow();
    },
    async stop() {
      await Promise.all(running.map((source) => source.stop()));
    },
  };
}

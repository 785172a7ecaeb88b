import type { EnvironmentConfig } from '../config/schema.ts';
import { exportFilesInput, exportFilesScheduleName, filePlatforms } from '../files/platforms.ts';
import { FILTER_LIMITS, type FilterPattern, validateFilterPattern } from './event-filters.ts';
import { populationEventSources } from './population.ts';
import { type QueueConsumerSettings, validateQueueConsumerSettings } from './queues.ts';
import { FUNCTIONS, type FunctionKey, type TableDefinition } from './resources.ts';
import { type StreamConsumerSettings, validateStreamConsumerSettings } from './streams.ts';

/**
 * What invokes the functions besides the HTTP routes: "function X consumes queue Y with settings S",
 * "function X consumes the stream of table T", "function X runs every N minutes". Declared once,
 * per environment (a declaration may depend on the configuration, e.g. one queue per platform),
 * and read by the local stack, which provisions the queues and runs faithful emulations of the
 * event sources (docs/local-stack.md, "Event sources"). The CDK side builds the same from them
 * (lib/constructs/queue-consumer.ts for queues).
 */

export interface QueueDefinition {
  /** Construct id in the CDK stack. */
  readonly id: string;
  /** Queue name in the local stack; its dead-letter queue is `<localName>-dlq`. */
  readonly localName: string;
  /** Environment variable through which every function receives the queue URL, if any needs it. */
  readonly envVar?: string;
  /** How long the queue keeps a message (default: SQS' 4 days). */
  readonly retentionSeconds?: number;
}

/** Function X consumes queue Y: Lambda's SQS event source, with a DLQ after maxReceiveCount. */
export interface QueueEventSource {
  readonly kind: 'queue';
  readonly function: FunctionKey;
  readonly queue: QueueDefinition;
  /** `functionTimeoutSeconds` must be the function's `timeoutSeconds`. */
  readonly settings: QueueConsumerSettings;
}

/** Function X consumes the stream of table T (whose definition must set `stream`). */
export interface TableStreamEventSource {
  readonly kind: 'tableStream';
  readonly function: FunctionKey;
  readonly table: TableDefinition;
  /** As in StreamConsumerSettings (src/infra/streams.ts); maxRetryAttempts defaults to -1. */
  readonly batchSize: number;
  readonly maxBatchingWindowSeconds: number;
  readonly maxRetryAttempts?: number;
  /**
   * Lambda event filtering (src/infra/event-filters.ts): only records matching one of these reach
   * the function, in AWS and in the local stack alike; none: every record.
   */
  readonly filters?: readonly FilterPattern[];
}

/** Function X runs every N minutes (EventBridge Scheduler `rate(N minutes)`). */
export interface ScheduleEventSource {
  readonly kind: 'schedule';
  readonly function: FunctionKey;
  /** Unique among the schedules: the schedule's name. */
  readonly name: string;
  readonly everyMinutes: number;
  /** The target's input (what the function receives); default: a Scheduled Event. */
  readonly input?: unknown;
}

/** The stream settings of a declaration (maxRetryAttempts defaults to Lambda's -1). */
export function streamSettingsOf(source: TableStreamEventSource): StreamConsumerSettings {
  return {
    batchSize: source.batchSize,
    maxBatchingWindowSeconds: source.maxBatchingWindowSeconds,
    maxRetryAttempts: source.maxRetryAttempts ?? -1,
  };
}

export type EventSourceDefinition = QueueEventSource | TableStreamEventSource | ScheduleEventSource;

/** One entry per feature: the event sources it declares for an environment. */
export type EventSourceDeclarations = (config: EnvironmentConfig) => readonly EventSourceDefinition[];

/**
 * Every feature's declarations. Population and file delivery add theirs here, e.g.
 * `(config) => [{ kind: 'queue', function: 'route', queue: AUDIENCE_EVENTS_QUEUE, settings: ... }]`.
 */
export const EVENT_SOURCES: readonly EventSourceDeclarations[] = [
  // Segment population: route <- audience events, deliver <- each platform's queue, release <- mapping stream.
  populationEventSources,
  // Legacy file delivery: the exporter every `files.everyMinutes` per file-mode platform.
  (config) =>
    filePlatforms(config).map((platform) => ({
      kind: 'schedule',
      // One export function per destination kind: the S3 one never loads ssh2.
      function: platform.files.destination.type === 'sftp' ? 'exportFilesSftp' : 'exportFiles',
      name: exportFilesScheduleName(platform.platformId),
      everyMinutes: platform.files.everyMinutes,
      input: exportFilesInput(platform.platformId),
    })),
];

/** The event sources of an environment, checked against the functions they invoke. */
export function eventSourcesOf(
  config: EnvironmentConfig,
  declarations: readonly EventSourceDeclarations[] = EVENT_SOURCES,
): EventSourceDefinition[] {
  const sources = declarations.flatMap((declare) => declare(config));
  const problems: string[] = [];
  const queues = new Map<string, QueueDefinition>();
  const schedules = new Set<string>();
  for (const source of sources) {
    const timeout = FUNCTIONS[source.function].timeoutSeconds;
    switch (source.kind) {
      case 'queue':
        try {
          validateQueueConsumerSettings(source.settings, `queue ${source.queue.localName}`);
        } catch (error) {
          problems.push((error as Error).message);
        }
        if (source.settings.functionTimeoutSeconds !== timeout) {
          problems.push(
            `queue ${source.queue.localName}: settings.functionTimeoutSeconds is ${source.settings.functionTimeoutSeconds}, ` +
              `function ${source.function} has ${timeout}`,
          );
        }
        if (queues.has(source.queue.localName)) {
          problems.push(
            `queue ${source.queue.localName} has two consumers (Lambda allows one per event source)`,
          );
        }
        queues.set(source.queue.localName, source.queue);
        break;
      case 'tableStream':
        try {
          validateStreamConsumerSettings(streamSettingsOf(source), `the stream of ${source.table.localName}`);
        } catch (error) {
          problems.push((error as Error).message);
        }
        if (!source.table.stream) {
          problems.push(
            `table ${source.table.localName}: consumed as a stream but its definition sets no stream`,
          );
        }
        if ((source.filters?.length ?? 0) > FILTER_LIMITS.patternsPerSource) {
          problems.push(
            `the stream of ${source.table.localName}: ${source.filters?.length} filter patterns, Lambda takes ${FILTER_LIMITS.patternsPerSource}`,
          );
        }
        for (const pattern of source.filters ?? []) {
          try {
            validateFilterPattern(pattern);
          } catch (error) {
            problems.push(`the stream of ${source.table.localName}: ${(error as Error).message}`);
          }
        }
        break;
      case 'schedule':
        if (schedules.has(source.name)) problems.push(`schedule ${source.name} is declared twice`);
        if (!(source.everyMinutes > 0))
          problems.push(`schedule ${source.name}: everyMinutes must be positive`);
        schedules.add(source.name);
        break;
    }
  }
  if (problems.length > 0) throw new Error(`invalid event sources: ${problems.join('; ')}`);
  return sources;
}

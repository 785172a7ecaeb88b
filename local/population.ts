import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { EnvironmentConfig } from '../src/config/schema.ts';
import {
  AUDIENCE_EVENTS_RETENTION_SECONDS,
  audienceQueueName,
  DELIVERY_RETENTION_SECONDS,
  deliveryConsumer,
  deliveryPlatforms,
  deliveryQueueName,
  RELEASE_STREAM,
  ROUTE_CONSUMER,
} from '../src/infra/population.ts';
import {
  type QueueConsumerSettings,
  SQS_EVENT_SOURCE_LIMITS,
  visibilityTimeoutSeconds,
} from '../src/infra/queues.ts';
import { type FunctionKey, MAPPING_TABLE } from '../src/infra/resources.ts';
import type { LocalEventSource } from './event-sources/common.ts';
import { type DynamoDbStreams, startDynamoDbStreamEventSource } from './event-sources/dynamodb-stream.ts';
import { startSqsEventSource } from './event-sources/sqs.ts';
import type { LocalFunction } from './lambda.ts';

/**
 * Segment population on the local stack, from the same definitions as the CDK stack
 * (src/infra/population.ts): the audience-events queue and one delivery queue per API platform,
 * each with its DLQ and redrive, consumed by the real route and deliver handlers through Lambda's
 * SQS event source (local/event-sources/sqs.ts); the mapping table's stream feeds the pending
 * release handler (local/event-sources/dynamodb-stream.ts).
 */

export interface PopulationQueue {
  readonly name: string;
  readonly url: string;
  readonly arn: string;
  readonly dlqUrl: string;
  readonly consumer: FunctionKey;
  readonly settings: QueueConsumerSettings;
}

export interface LocalPopulation {
  readonly queues: readonly PopulationQueue[];
  /** Resolves when no queue holds a message (DLQs aside) and no invocation runs. */
  whenIdle(): Promise<void>;
  stop(): Promise<void>;
}

async function ensureQueue(
  sqs: SQSClient,
  name: string,
  settings: QueueConsumerSettings,
  retentionSeconds: number,
): Promise<{ url: string; arn: string; dlqUrl: string }> {
  const dlq = await sqs.send(
    new CreateQueueCommand({
      QueueName: `${name}-dlq`,
      Attributes: { MessageRetentionPeriod: String(SQS_EVENT_SOURCE_LIMITS.maxRetentionSeconds) },
    }),
  );
  const dlqUrl = dlq.QueueUrl as string;
  const dlqArn = await queueArn(sqs, dlqUrl);
  const queue = await sqs.send(
    new CreateQueueCommand({
      QueueName: name,
      Attributes: {
        VisibilityTimeout: String(visibilityTimeoutSeconds(settings)),
        MessageRetentionPeriod: String(retentionSeconds),
        RedrivePolicy: JSON.stringify({
          deadLetterTargetArn: dlqArn,
          maxReceiveCount: settings.maxReceiveCount,
        }),
      },
    }),
  );
  const url = queue.QueueUrl as string;
  return { url, arn: await queueArn(sqs, url), dlqUrl };
}

async function queueArn(sqs: SQSClient, url: string): Promise<string> {
  const out = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }));
  const arn = out.Attributes?.['QueueArn'];
  if (!arn) throw new Error(`queue ${url} has no ARN`);
  return arn;
}

/** Creates the queues (idempotent: a restart over kept data finds them). */
export async function provisionPopulationQueues(
  sqs: SQSClient,
  config: EnvironmentConfig,
): Promise<PopulationQueue[]> {
  const queues: PopulationQueue[] = [];
  const name = audienceQueueName(config.name);
  queues.push({
    name,
    consumer: 'route',
    settings: ROUTE_CONSUMER,
    ...(await ensureQueue(sqs, name, ROUTE_CONSUMER, AUDIENCE_EVENTS_RETENTION_SECONDS)),
  });
  for (const platform of deliveryPlatforms(config.platforms)) {
    const settings = deliveryConsumer(platform.connector.population);
    const queueName = deliveryQueueName(config.name, platform.id);
    queues.push({
      name: queueName,
      consumer: 'deliver',
      settings,
      ...(await ensureQueue(sqs, queueName, settings, DELIVERY_RETENTION_SECONDS)),
    });
  }
  return queues;
}

export function startPopulation(options: {
  readonly sqs: SQSClient;
  readonly queues: readonly PopulationQueue[];
  readonly functions: ReadonlyMap<FunctionKey, LocalFunction>;
  readonly streams: DynamoDbStreams;
  readonly log: (line: string) => void;
}): LocalPopulation {
  const { sqs, queues, functions, log } = options;
  const fn = (key: FunctionKey) => {
    const found = functions.get(key);
    if (!found) throw new Error(`function ${key} is not loaded`);
    return found;
  };
  const consume = (queue: PopulationQueue): LocalEventSource =>
    startSqsEventSource({
      sqs,
      queueUrl: queue.url,
      queueArn: queue.arn,
      settings: queue.settings,
      invoke: (event) => fn(queue.consumer).invoke(event),
      log: (line) => log(`${queue.name}: ${line}`),
    });
  const release = startDynamoDbStreamEventSource({
    stream: options.streams.streamOf(MAPPING_TABLE.localName),
    invoke: (event) => fn('releasePending').invoke(event),
    batchSize: RELEASE_STREAM.batchSize,
    maxBatchingWindowMs: RELEASE_STREAM.maxBatchingWindowSeconds * 1000,
    maxRetryAttempts: RELEASE_STREAM.retryAttempts,
    log: (line) => log(`mapping stream: ${line}`),
  });
  // In the order work flows: route feeds delivery queues and pending; the release feeds delivery
  // queues; deliveries feed nothing. Once each is idle in this order, all are.
  const sources: LocalEventSource[] = [
    ...queues.filter((queue) => queue.consumer === 'route').map(consume),
    release,
    ...queues.filter((queue) => queue.consumer !== 'route').map(consume),
  ];
  return {
    queues,
    async whenIdle() {
      for (const source of sources) await source.whenIdle();
    },
    async stop() {
      await Promise.all(sources.map((source) => source.stop()));
    },
  };
}

export async function queueUrlOf(sqs: SQSClient, name: string): Promise<string> {
  const out = await sqs.send(new GetQueueUrlCommand({ QueueName: name }));
  return out.QueueUrl as string;
}

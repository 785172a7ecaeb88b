import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { dynamoDbClient, sqsClient } from '../aws/clients.ts';
import { JsonSecrets, SecretError } from '../aws/secrets.ts';
import { embeddedEnvironment } from '../config/embedded.ts';
import type { EnvironmentConfig, PlatformConfig } from '../config/schema.ts';
import { ApiCredentialsSchema, platformApiSecretName } from '../config/secrets.ts';
import { type ConnectedPlatform, PartnerClients } from '../connectors/partner-clients.ts';
import { POPULATION_ENV, RETRY_BASE_SECONDS, retryDelaySeconds } from '../infra/population.ts';
import { POPULATION_TABLE, type TableDefinition } from '../infra/resources.ts';
import { privacyKeyDigests, type UserDigests } from '../privacy/digest.ts';
import { forgottenAmong } from '../privacy/forget.ts';
import { DynamoPopulationStore } from './dynamo-store.ts';
import { queueNameOf, SqsQueues } from './sqs-queues.ts';

/**
 * What the population Lambdas share at cold start: the validated configuration, the population
 * store, the SQS queues, the partner clients (credentials from each platform's `…/api` secret,
 * cached with a bounded age) and the partial batch response.
 */

export function tableName(table: TableDefinition): string {
  const name = process.env[table.envVar];
  if (!name) throw new Error(`${table.envVar} is not set`);
  return name;
}

export interface PopulationRuntime {
  readonly config: EnvironmentConfig;
  readonly store: DynamoPopulationStore;
  /** The keyed user digest of tombstones and rejection records (the privacy key, read on first use). */
  readonly digests: UserDigests;
  readonly queues: SqsQueues;
  platform(platformId: number): PlatformConfig | undefined;
  connected(platformId: number): ConnectedPlatform | undefined;
  /** The users among these that a privacy request forgot (tombstones in the population table). */
  forgotten(dmpUserIds: readonly string[]): Promise<Set<string>>;
  readonly retryBaseSeconds: number;
}

/** Configuration, population table and queues: what every population function needs. */
export function populationRuntime(): PopulationRuntime {
  const config = embeddedEnvironment();
  const prefix = process.env[POPULATION_ENV.deliveryQueuePrefix];
  if (!prefix) throw new Error(`${POPULATION_ENV.deliveryQueuePrefix} is not set`);
  const platforms = new Map(config.platforms.map((platform) => [platform.id, platform]));
  const retryBase = Number(process.env[POPULATION_ENV.retryBaseSeconds] ?? RETRY_BASE_SECONDS);
  const secrets = new JsonSecrets();
  const digests = privacyKeyDigests(config.name, secrets);
  const store = new DynamoPopulationStore(dynamoDbClient(), tableName(POPULATION_TABLE), digests);
  return {
    config,
    store,
    digests,
    forgotten: (dmpUserIds) => forgottenAmong(dmpUserIds, digests, store),
    queues: new SqsQueues(sqsClient(), (platformId) => `${prefix}${platformId}`),
    platform: (platformId) => platforms.get(platformId),
    connected: (platformId) => {
      const platform = platforms.get(platformId);
      return platform?.connector ? (platform as ConnectedPlatform) : undefined;
    },
    retryBaseSeconds: Number.isFinite(retryBase) && retryBase >= 0 ? retryBase : RETRY_BASE_SECONDS,
  };
}

/** Partner clients with each platform's credentials from its `…/api` secret (route and deliver). */
export function partnerClients(config: EnvironmentConfig): PartnerClients {
  const secrets = new JsonSecrets();
  return new PartnerClients(async (platformId) => {
    const name = platformApiSecretName(config.name, platformId);
    const secret = await secrets.read(name, ApiCredentialsSchema);
    if (!secret) throw new SecretError(`secret ${name} does not exist`);
    return secret;
  });
}

/**
 * When an invocation stops starting work: `reserveMs` before the function would time out (kept to
 * record outcomes and answer), and never less than one second from now.
 */
export function workDeadlineMs(
  context: Pick<Context, 'getRemainingTimeInMillis'>,
  reserveMs: number,
): number {
  return Date.now() + Math.max(1000, context.getRemainingTimeInMillis() - reserveMs);
}

export function receiveCount(record: SQSRecord): number {
  return Number(record.attributes.ApproximateReceiveCount ?? '1') || 1;
}

/**
 * The partial batch response (Powertools' BatchProcessor): the records in `failed` are reported,
 * the others succeed. Their next try is delayed first, by visibility timeout (see
 * src/infra/population.ts). The record handler does no I/O (the work was done for the whole batch
 * before), so Powertools' sequential mode costs nothing and no unbounded parallelism arises.
 */
export async function respond(
  event: SQSEvent,
  context: Context,
  failed: ReadonlySet<string>,
  runtime: Pick<PopulationRuntime, 'queues' | 'retryBaseSeconds'>,
  retryAfterMs?: (record: SQSRecord) => number | undefined,
  /** Failed records that come back at once (not tried: the invocation ran out of time). */
  retryNow: ReadonlySet<string> = new Set(),
): Promise<SQSBatchResponse> {
  const byQueue = new Map<string, { receiptHandle: string; seconds: number }[]>();
  for (const record of event.Records) {
    if (!failed.has(record.messageId)) continue;
    const queue = queueNameOf(record.eventSourceARN);
    const list = byQueue.get(queue) ?? [];
    list.push({
      receiptHandle: record.receiptHandle,
      seconds: retryNow.has(record.messageId)
        ? 0
        : retryDelaySeconds(receiveCount(record), retryAfterMs?.(record), runtime.retryBaseSeconds),
    });
    byQueue.set(queue, list);
  }
  try {
    for (const [queue, delays] of byQueue) await runtime.queues.delay(queue, delays);
  } catch {
    // Without the delay the record still comes back, after the queue's visibility timeout.
  }
  const processor = new BatchProcessor(EventType.SQS);
  return processPartialResponse(
    event,
    async (record: SQSRecord) => {
      if (failed.has(record.messageId)) throw new Error('not settled in this invocation: retried later');
    },
    processor,
    { context, throwOnFullBatchFailure: false },
  );
}

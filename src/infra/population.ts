import type { Connector } from '../config/connector.ts';
import type { EnvironmentConfig } from '../config/schema.ts';
import type { ConnectedPlatform } from '../connectors/partner-clients.ts';
import { sendsRemovalsAtExpiry } from '../population/expiry.ts';
import { FORGET_REQUEST_KEY } from '../privacy/forget-request-key.ts';
import { REFRESHED_ATTRIBUTE } from '../sync/mapping.ts';
import type { FilterPattern } from './event-filters.ts';
import type { EventSourceDefinition } from './event-sources.ts';
import type { QueueConsumerSettings } from './queues.ts';
import { FUNCTIONS, MAPPING_TABLE } from './resources.ts';
import type { StreamConsumerSettings } from './streams.ts';

/**
 * The queues of segment population, shared by the CDK stack and the local stack:
 *
 * - `audience-events`: the DMP's producers write here (architecture section 4); the route
 *   function consumes it. Retention 4 days, so a 72 h outage of the service loses nothing.
 * - one delivery queue per API platform (`delivery-<platformId>`), consumed by the deliver
 *   function with the platform's micro-batching settings: up to 100 messages per invocation and
 *   10,000 memberships (each message packs up to `batchSize` users, so one invocation fills many
 *   partner calls), gathered for `flushAfterMs`, at most `concurrency` invocations at once.
 *
 * A failed record is not left to the queue's long visibility timeout: the handlers set its
 * visibility to a backoff (the partner's Retry-After when it gave one; else doubling from
 * RETRY_BASE_SECONDS to RETRY_MAX_SECONDS), so with DELIVERY_MAX_RECEIVE_COUNT receives a partner
 * that is down is ridden out for about a day before anything reaches the DLQ, and the backlog
 * drains by itself when the partner is back.
 */

export const AUDIENCE_EVENTS_RETENTION_SECONDS = 4 * 86_400;
export const DELIVERY_RETENTION_SECONDS = 4 * 86_400;
export const DELIVERY_MAX_RECEIVE_COUNT = 100;
/**
 * A route invocation short of time hands back the messages it did not start (each such receive
 * counts): when only one message of ten fits per invocation, a message needs 10 receives on
 * average, and 100 keeps the chance that one reaches the DLQ that way below 1 in 30,000.
 */
export const ROUTE_MAX_RECEIVE_COUNT = 100;
export const RETRY_BASE_SECONDS = 10;
export const RETRY_MAX_SECONDS = 15 * 60;
/** How long a user may stay pending (not synced) before the event expires. */
export const PENDING_KEEP_SECONDS = 14 * 86_400;

/** Environment variables of the population functions. */
export const POPULATION_ENV = {
  /** Name of the audience-events queue. */
  audienceQueueName: 'AUDIENCE_EVENTS_QUEUE_NAME',
  /** Prefix of the delivery queues' names: the platform id follows. */
  deliveryQueuePrefix: 'DELIVERY_QUEUE_NAME_PREFIX',
  /** Overrides RETRY_BASE_SECONDS (the local stack's tests use 1). */
  retryBaseSeconds: 'POPULATION_RETRY_BASE_SECONDS',
} as const;

export function audienceQueueName(environment: string): string {
  return `dmp-${environment}-audience-events`;
}

export function deliveryQueuePrefix(environment: string): string {
  return `dmp-${environment}-delivery-`;
}

/** The queue names every population function receives, as the CDK stack, the local stack and the bench set them. */
export function populationEnvironment(environment: string): Record<string, string> {
  return {
    [POPULATION_ENV.audienceQueueName]: audienceQueueName(environment),
    [POPULATION_ENV.deliveryQueuePrefix]: deliveryQueuePrefix(environment),
  };
}

export function deliveryQueueName(environment: string, platformId: number): string {
  return `${deliveryQueuePrefix(environment)}${platformId}`;
}

/**
 * The route invokes as soon as messages arrive (no window: an audience event is routed at once,
 * and a message already packs up to 10,000 users); micro-batching happens per platform, on the
 * delivery queues.
 */
export const ROUTE_CONSUMER: QueueConsumerSettings = {
  batchSize: 10,
  maxBatchingWindowSeconds: 0,
  maxConcurrency: 10,
  maxReceiveCount: ROUTE_MAX_RECEIVE_COUNT,
  functionTimeoutSeconds: FUNCTIONS.route.timeoutSeconds,
};

/**
 * Memberships one deliver invocation is sized for: 20,000 intent writes at 16 at a time take about
 * 10 s in AWS (a third of the time the deliver step gives its intents, INTENT_TIME_SHARE of the
 * 60 s timeout); a bigger batch (slower writes, the local stand-ins) is bounded by the deliver
 * step itself, which returns what it had no time to start.
 */
export const MEMBERSHIPS_PER_DELIVER_INVOCATION = 20_000;

/**
 * A platform's delivery event source: as many messages per invocation as fill
 * MEMBERSHIPS_PER_DELIVER_INVOCATION when each packs `batchSize` users (10 to 100).
 */
export function deliveryConsumer(population: Connector['population']): QueueConsumerSettings {
  const windowSeconds = Math.min(300, Math.ceil(population.flushAfterMs / 1000));
  const messages = Math.max(
    10,
    Math.min(100, Math.floor(MEMBERSHIPS_PER_DELIVER_INVOCATION / population.batchSize)),
  );
  return {
    batchSize: windowSeconds === 0 ? 10 : messages,
    maxBatchingWindowSeconds: windowSeconds,
    maxConcurrency: population.concurrency,
    maxReceiveCount: DELIVERY_MAX_RECEIVE_COUNT,
    functionTimeoutSeconds: FUNCTIONS.deliver.timeoutSeconds,
  };
}

/** Seconds until a failed record is tried again, after its `receiveCount`-th receive. */
export function retryDelaySeconds(
  receiveCount: number,
  retryAfterMs: number | undefined,
  baseSeconds: number = RETRY_BASE_SECONDS,
): number {
  const backoff = Math.min(RETRY_MAX_SECONDS, baseSeconds * 2 ** Math.min(Math.max(receiveCount - 1, 0), 20));
  const asked = retryAfterMs === undefined ? 0 : Math.ceil(retryAfterMs / 1000);
  // SQS takes at most 12 hours.
  return Math.min(43_200, Math.max(backoff, asked));
}

/** The mapping-table stream's event source (release of pending events). */
export const RELEASE_STREAM: StreamConsumerSettings = {
  batchSize: 100,
  maxBatchingWindowSeconds: 1,
  /** After this many failed tries a batch goes to the failure queue; its pending events wait for the next sync. */
  maxRetryAttempts: 20,
};

/**
 * The records of the mapping table's stream that reach the release function (Lambda event
 * filtering: the rest are dropped by Lambda's poller, no invocation, nothing billed but the free
 * stream read). The handler acts on two kinds, and these patterns pass exactly those:
 *
 * - a mapping whose partner id appeared or changed: an INSERT or MODIFY whose new image holds a
 *   partner id and is not a refresh (REFRESHED_ATTRIBUTE, which refreshes set and changes remove).
 *   A refresh keeps a live mapping's id, so nothing waits on it: the refreshes, half of the
 *   sync mix, no longer reach the function (at a large DMP's load the invocations, one per shard
 *   and batching window, are about as many either way; at lower loads, fewer). Dropped as well: TTL and privacy deletions (REMOVE), replay
 *   guards and forget markers (no partner id).
 * - a browser's opt-out: the INSERT of a forget request item (src/privacy/requests.ts).
 */
export const RELEASE_STREAM_FILTERS: readonly FilterPattern[] = [
  {
    eventName: ['INSERT', 'MODIFY'],
    dynamodb: {
      NewImage: {
        partnerUserId: { S: [{ exists: true }] },
        [REFRESHED_ATTRIBUTE]: { BOOL: [{ exists: false }] },
      },
    },
  },
  {
    eventName: ['INSERT'],
    dynamodb: {
      Keys: {
        pk: { S: [{ prefix: FORGET_REQUEST_KEY.prefix }] },
        sk: { S: [FORGET_REQUEST_KEY.sortKey] },
      },
    },
  },
];

/** The API platforms of an environment: every one gets a delivery queue (file platforms do not). */
export function deliveryPlatforms<
  P extends { id: number; connector?: Pick<Connector, 'population'> | undefined },
>(platforms: readonly P[]): (P & { connector: Pick<Connector, 'population'> })[] {
  return platforms.filter(
    (platform): platform is P & { connector: Pick<Connector, 'population'> } =>
      platform.connector !== undefined && platform.connector.population.mode !== 'file',
  );
}

/**
 * Population's event sources (src/infra/event-sources.ts), read by the local stack and the CDK
 * stack alike: route <- audience-events; deliver <- each platform's delivery queue; releasePending
 * <- the mapping table's stream; expireMemberships every minute (where a partner needs it).
 */
export function populationEventSources(config: EnvironmentConfig): EventSourceDefinition[] {
  return [
    {
      kind: 'queue',
      function: 'route',
      queue: {
        id: 'AudienceEvents',
        localName: audienceQueueName(config.name),
        retentionSeconds: AUDIENCE_EVENTS_RETENTION_SECONDS,
      },
      settings: ROUTE_CONSUMER,
    },
    ...deliveryPlatforms(config.platforms).map(
      (platform): EventSourceDefinition => ({
        kind: 'queue',
        function: 'deliver',
        queue: {
          id: `Delivery${platform.id}`,
          localName: deliveryQueueName(config.name, platform.id),
          retentionSeconds: DELIVERY_RETENTION_SECONDS,
        },
        settings: deliveryConsumer(platform.connector.population),
      }),
    ),
    {
      kind: 'tableStream',
      function: 'releasePending',
      table: MAPPING_TABLE,
      ...RELEASE_STREAM,
      filters: RELEASE_STREAM_FILTERS,
    },
    // Removals at expiry for partners that take no lifetime (src/population/expiry.ts).
    ...(expiringPlatforms(config).length > 0
      ? [
          {
            kind: 'schedule',
            function: 'expireMemberships',
            name: EXPIRY_SCHEDULE_NAME,
            everyMinutes: 1,
          } satisfies EventSourceDefinition,
        ]
      : []),
  ];
}

export const EXPIRY_SCHEDULE_NAME = 'expire-memberships';

/** The API platforms whose removals the service sends at expiry. */
export function expiringPlatforms(config: EnvironmentConfig) {
  return deliveryPlatforms(config.platforms).filter((platform) =>
    sendsRemovalsAtExpiry((platform as ConnectedPlatform).connector),
  );
}

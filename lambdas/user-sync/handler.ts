import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { dynamoDbClient } from '../../src/aws/clients.ts';
import { JsonSecrets, SecretError } from '../../src/aws/secrets.ts';
import { embeddedEnvironment } from '../../src/config/embedded.ts';
import {
  PlatformSecretSchema,
  platformSecretName,
  SyncTokenKeySchema,
  syncTokenKeySecretName,
} from '../../src/config/secrets.ts';
import { COMMON_ENV, MAPPING_TABLE } from '../../src/infra/resources.ts';
import { createLogger } from '../../src/observability/logger.ts';
import {
  ENVIRONMENT_FIELD,
  SYNC_COUNT_MESSAGE,
  syncCountFields,
} from '../../src/observability/sync-metric-filters.ts';
import { ForgetRequests } from '../../src/privacy/requests.ts';
import {
  answerDeadlineMs,
  DeadlineExceededError,
  pixel,
  toHttpResult,
  toSyncRequest,
  withDeadline,
} from '../../src/sync/http.ts';
import { DynamoMappingStore } from '../../src/sync/mapping-store.ts';
import { type SyncResponse, UserSyncService } from '../../src/sync/service.ts';

// Cold start: configuration validated at synth and embedded (src/config/embedded.ts), clients
// created once.
const SERVICE_NAME = 'user-sync';
const config = embeddedEnvironment();
// One line per browser request, paid per request: the compact format (src/observability/logger.ts),
// with the environment, which the funnel's metric filters read as a dimension.
const logger = createLogger(SERVICE_NAME, {
  persistentKeys: { [ENVIRONMENT_FIELD]: process.env[COMMON_ENV.environmentName] ?? config.name },
  compact: true,
});
const tableName = process.env[MAPPING_TABLE.envVar];
if (!tableName) throw new Error(`${MAPPING_TABLE.envVar} is not set`);

const secrets = new JsonSecrets();
const forgetRequests = new ForgetRequests(dynamoDbClient(), tableName);
const service = new UserSyncService({
  config,
  store: new DynamoMappingStore(dynamoDbClient(), tableName),
  now: () => Math.floor(Date.now() / 1000),
  // An opt-out is a privacy request: removals at every partner, tombstone (src/privacy).
  forget: (dmpUserId) => forgetRequests.request(dmpUserId),
  secrets: {
    platform: (platformId) => secrets.read(platformSecretName(config.name, platformId), PlatformSecretSchema),
    tokenKeys: async () => {
      const keys = await secrets.read(syncTokenKeySecretName(config.name), SyncTokenKeySchema);
      if (!keys) throw new SecretError(`secret ${syncTokenKeySecretName(config.name)} does not exist`);
      return keys;
    },
  },
});

const ROUTES: Record<string, (request: ReturnType<typeof toSyncRequest>) => Promise<SyncResponse>> = {
  'GET /sync': (request) => service.sync(request),
  'GET /uid': (request) => service.callback(request),
  'GET /optout': (request) => service.optOut(request),
  'POST /optout': (request) => service.optOut(request),
};

async function handleRequest(
  event: APIGatewayProxyEventV2,
  context: Context,
): Promise<APIGatewayProxyStructuredResultV2> {
  const route = ROUTES[event.routeKey];
  if (!route) return pixel(404, [], { 'x-dmp-reason': 'route_unknown' });
  const request = toSyncRequest(event);
  try {
    // Whatever the store or Secrets Manager do, the browser gets our 503 pixel in time.
    const response = await withDeadline(route(request), answerDeadlineMs(context.getRemainingTimeInMillis()));
    // One line per request, with its counts: the funnel's metrics (src/observability/sync-metric-filters.ts).
    const counts = syncCountFields(response.counts);
    logger.info('sync request', {
      route: event.routeKey,
      status: response.status,
      outcome: response.outcome,
      ...counts.line,
    });
    for (const extra of counts.extraLines) logger.info(SYNC_COUNT_MESSAGE, { ...extra });
    // `debug=1` explains every decision; deployed stacks have it off unless their file says so.
    return toHttpResult(response, request.debug && config.debugTraces !== false);
  } catch (error) {
    // Only infrastructure failures land here (store, secrets); bad input is answered above.
    const failure = error instanceof DeadlineExceededError ? 'deadline' : 'error';
    logger.error('sync request failed', { route: event.routeKey, failure, error: errorSummary(error) });
    return pixel(503, [], { 'retry-after': '60', 'x-dmp-reason': 'temporarily_unavailable' });
  }
}

function errorSummary(error: unknown): { name: string; message: string } {
  return error instanceof Error
    ? { name: error.name, message: error.message }
    : { name: 'unknown', message: '' };
}

/**
 * What Powertools' injectLambdaContext middleware did (the request id and a container's first
 * `cold_start` in its lines, temporary keys reset), without Middy's per-request machinery.
 */
export async function handler(
  event: APIGatewayProxyEventV2,
  context: Context,
): Promise<APIGatewayProxyStructuredResultV2> {
  logger.addContext(context);
  try {
    return await handleRequest(event, context);
  } finally {
    logger.resetKeys();
  }
}

import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { dynamoDbClient } from '../../src/aws/clients.ts';
import { fileStagingFromEnv } from '../../src/files/staging-store.ts';
import { PENDING_KEEP_SECONDS } from '../../src/infra/population.ts';
import { MAPPING_TABLE, SEGMENT_TABLE } from '../../src/infra/resources.ts';
import { createLogger } from '../../src/observability/powertools.ts';
import { DynamoMappingLookup } from '../../src/population/dynamo-adapters.ts';
import { routeWithinDeadline } from '../../src/population/route-service.ts';
import {
  partnerClients,
  populationRuntime,
  receiveCount,
  respond,
  tableName,
  workDeadlineMs,
} from '../../src/population/runtime.ts';
import { SegmentNotReadyError, SegmentService } from '../../src/segments/segment-service.ts';
import { DynamoSegmentStore } from '../../src/segments/segment-store.ts';

// Cold start: configuration validated, clients created once.
const logger = createLogger('route');
const runtime = populationRuntime();
const clients = partnerClients(runtime.config);
const segments = new SegmentService({
  environment: runtime.config.name,
  store: new DynamoSegmentStore(dynamoDbClient(), tableName(SEGMENT_TABLE)),
  partnerFor: (platform) => clients.for(platform),
});
const mappings = new DynamoMappingLookup(dynamoDbClient(), tableName(MAPPING_TABLE));
// File-mode platforms' memberships are staged for the scheduled exporter (src/files).
const files = fileStagingFromEnv(runtime.config, dynamoDbClient());

async function handleEvents(event: SQSEvent, context: Context): Promise<SQSBatchResponse> {
  // 5 s are kept for the partial batch response; a group started before then is finished.
  const deadline = workDeadlineMs(context, 5000);
  const notReady = new Map<string, number>();
  const result = await routeWithinDeadline(
    event.Records.map((record) => ({
      id: record.messageId,
      body: record.body,
      redelivered: receiveCount(record) > 1,
    })),
    {
      platform: runtime.platform,
      // A segment not ready fails only its records, retried when the partner said (or soon).
      segments: {
        ensure: (platform, audience, options) =>
          segments.ensure(platform, audience, { ...options, waitMs: 2000 }).catch((error: unknown) => {
            if (error instanceof SegmentNotReadyError && error.retryAt !== undefined) {
              notReady.set(`${platform.id}#${audience.id}`, error.retryAt - Date.now());
            }
            throw error;
          }),
      },
      mappings,
      pending: runtime.store,
      accounting: runtime.store,
      forgotten: runtime.forgotten,
      queues: runtime.queues,
      files,
      pendingKeepSeconds: PENDING_KEEP_SECONDS,
    },
    deadline,
  );
  logger.info('routed', {
    records: event.Records.length,
    failed: result.failedRecordIds.size,
    deferred: result.deferredRecordIds.size,
    routed: result.routed,
    pending: result.pending,
    rejected: result.rejected,
    // The failed records come back through the queue; this says why (no user ids).
    ...(result.errors.size > 0 ? { errors: [...result.errors] } : {}),
  });
  const longestWait = Math.max(0, ...notReady.values());
  // Records not started for lack of time are reported too, and come back at once.
  return respond(
    event,
    context,
    new Set([...result.failedRecordIds, ...result.deferredRecordIds]),
    runtime,
    () => longestWait || undefined,
    result.deferredRecordIds,
  );
}

export const handler = middy(handleEvents).use(injectLambdaContext(logger, { resetKeys: true }));

import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { DeleteItemCommand } from '@aws-sdk/client-dynamodb';
import middy from '@middy/core';
import type { DynamoDBStreamEvent } from 'aws-lambda';
import { dynamoDbClient } from '../../src/aws/clients.ts';
import { fileStagingFromEnv } from '../../src/files/staging-store.ts';
import { MAPPING_TABLE, SEGMENT_TABLE } from '../../src/infra/resources.ts';
import { createLogger } from '../../src/observability/powertools.ts';
import {
  mappingFromImage,
  releasePending,
  releaseTarget,
  type StoredMapping,
} from '../../src/population/release-service.ts';
import { populationRuntime, tableName } from '../../src/population/runtime.ts';
import { forgetUser } from '../../src/privacy/forget.ts';
import { forgetRequestKey, forgetRequestOf } from '../../src/privacy/requests.ts';
import { forgetDeps } from '../../src/privacy/wiring.ts';
import { DynamoSegmentStore } from '../../src/segments/segment-store.ts';
import { DynamoMappingStore } from '../../src/sync/mapping-store.ts';

// The mapping table's stream: a stored or changed partner id releases the user's pending events.
const logger = createLogger('release-pending');
const runtime = populationRuntime();
// Pending users of file-mode platforms are staged for the exporter once they sync.
const files = fileStagingFromEnv(runtime.config, dynamoDbClient());

// A browser's /optout arrives here as a request item (src/privacy/requests.ts).
const mappingTable = tableName(MAPPING_TABLE);
const forgetting = forgetDeps({
  config: runtime.config,
  digests: runtime.digests,
  population: runtime.store,
  mappings: new DynamoMappingStore(dynamoDbClient(), mappingTable),
  queues: runtime.queues,
  files,
  segments: new DynamoSegmentStore(dynamoDbClient(), tableName(SEGMENT_TABLE)),
});

type Image = Parameters<typeof mappingFromImage>[0];

async function handleChanges(event: DynamoDBStreamEvent): Promise<void> {
  const mappings: StoredMapping[] = [];
  for (const record of event.Records) {
    if (record.eventName !== 'INSERT' && record.eventName !== 'MODIFY') continue;
    const forgetUserId = forgetRequestOf(record.dynamodb?.NewImage as Image);
    if (forgetUserId !== undefined && record.eventName === 'INSERT') {
      // Errors fail the batch: the stream delivers it again; every step of a forget is idempotent.
      const audit = await forgetUser(forgetUserId, 'optout', forgetting);
      await dynamoDbClient().send(
        new DeleteItemCommand({ TableName: mappingTable, Key: forgetRequestKey(forgetUserId) }),
      );
      logger.info('forgot a user', { digest: audit.digest.slice(0, 16), removals: audit.removalsSent });
      continue;
    }
    const stored = mappingFromImage(record.dynamodb?.NewImage as Image);
    if (!stored) continue;
    const before = mappingFromImage(record.dynamodb?.OldImage as Image);
    // A refresh of a live mapping with the same id releases nothing new: pending events wait for a
    // first id, a new one, or one replacing an expired mapping.
    const seconds = record.dynamodb?.ApproximateCreationDateTime ?? Date.now() / 1000;
    if (before?.partnerUserId === stored.partnerUserId && before.expiresAt > seconds) continue;
    mappings.push(stored);
  }
  if (mappings.length === 0) return;
  // An error fails the batch: the stream delivers it again, in order; nothing pending is lost.
  const released = await releasePending(mappings, {
    pending: runtime.store,
    queues: runtime.queues,
    accounting: runtime.store,
    forgotten: runtime.forgotten,
    targetOf: (platformId) => releaseTarget(runtime.platform(platformId)),
    files,
  });
  logger.info('released pending', { mappings: mappings.length, released });
}

export const handler = middy(handleChanges).use(injectLambdaContext(logger, { resetKeys: true }));

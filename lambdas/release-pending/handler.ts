import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { DynamoDBStreamEvent } from 'aws-lambda';
import { dynamoDbClient } from '../../src/aws/clients.ts';
import { fileStagingFromEnv } from '../../src/files/staging-store.ts';
import { createLogger } from '../../src/observability/powertools.ts';
import {
  mappingFromImage,
  releasePending,
  type StoredMapping,
} from '../../src/population/release-service.ts';
import { populationRuntime } from '../../src/population/runtime.ts';

// The mapping table's stream: a stored or changed partner id releases the user's pending events.
const logger = createLogger('release-pending');
const runtime = populationRuntime();
// Pending users of file-mode platforms are staged for the exporter once they sync.
const files = fileStagingFromEnv(runtime.config, dynamoDbClient());

type Image = Parameters<typeof mappingFromImage>[0];

async function handleChanges(event: DynamoDBStreamEvent): Promise<void> {
  const mappings: StoredMapping[] = [];
  for (const record of event.Records) {
    if (record.eventName !== 'INSERT' && record.eventName !== 'MODIFY') continue;
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
    targetOf: (platformId) => {
      const population = runtime.connected(platformId)?.connector.population;
      if (!population) return undefined;
      return population.mode === 'file' ? 'file' : { batchSize: population.batchSize };
    },
    files,
  });
  logger.info('released pending', { mappings: mappings.length, released });
}

export const handler = middy(handleChanges).use(injectLambdaContext(logger, { resetKeys: true }));

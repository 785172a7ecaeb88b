import type { EnvironmentConfig } from '../config/schema.ts';
import type { DynamoFileStore } from '../files/dynamo-store.ts';
import type { DynamoPopulationStore } from '../population/dynamo-store.ts';
import type { DeliveryQueues } from '../population/route-service.ts';
import type { DynamoSegmentStore } from '../segments/segment-store.ts';
import type { DynamoMappingStore } from '../sync/mapping-store.ts';
import type { UserDigests } from './digest.ts';
import type { ForgetDeps } from './forget.ts';

/** A forget request's dependencies from the stores, shared by the CLI and the privacy Lambda. */
export function forgetDeps(input: {
  readonly config: EnvironmentConfig;
  readonly digests: UserDigests;
  readonly population: DynamoPopulationStore;
  readonly mappings: DynamoMappingStore;
  readonly queues: DeliveryQueues;
  readonly files?: DynamoFileStore | undefined;
  readonly segments?: DynamoSegmentStore | undefined;
}): ForgetDeps {
  const { files, segments } = input;
  return {
    digests: input.digests,
    config: input.config,
    platforms: input.config.platforms.flatMap((platform) => {
      const population = platform.connector?.population;
      if (!population) return [];
      return [
        {
          id: platform.id,
          mode: population.mode === 'file' ? ('file' as const) : { batchSize: population.batchSize },
        },
      ];
    }),
    syncPlatformIds: input.config.platforms
      .filter((platform) => platform.sync)
      .map((platform) => platform.id),
    population: input.population,
    mappings: input.mappings,
    queues: input.queues,
    files:
      files && segments
        ? {
            forgetStaged: async (platformId, dmpUserId) => {
              const known = (await segments.list(platformId)).flatMap((record) =>
                record.partnerSegmentId
                  ? [{ segmentId: record.partnerSegmentId, audienceId: record.audienceId }]
                  : [],
              );
              return files.forgetStaged(platformId, known, dmpUserId);
            },
            stage: (memberships) => files.stage(memberships),
          }
        : undefined,
  };
}

import { deliveryQueueName } from '../../src/infra/population.ts';
import { FILE_STAGING_TABLE, MAPPING_TABLE, POPULATION_TABLE } from '../../src/infra/resources.ts';
import { isValidDmpUserId } from '../../src/sync/user-ids.ts';
import { CliContext } from '../context.ts';
import { type Command, UsageError } from '../framework.ts';
import { TARGET_OPTIONS, targetFlags } from '../target.ts';

/**
 * `dmp forget <dmpUserId>`: the privacy request of docs/privacy.md, run by an operator. The same
 * domain function serves the DMP's `POST /privacy/forget` and a browser's `/optout`.
 */
export const forgetCommand: Command = {
  name: 'forget',
  summary: 'forget a DMP user: removals to every platform, all data deleted, a tombstone left',
  usage: '<dmpUserId> [--json] [--env <name>]',
  help: [
    '  <dmpUserId>        the dmp_uid cookie value',
    '  --env <name>       a deployed environment (default: the local stack)',
    '',
    'Leaves a tombstone (a digest of the id) so later events of the user are set aside as',
    "'forgotten', and an audit record without the id (docs/privacy.md).",
  ].join('\n'),
  options: { ...TARGET_OPTIONS },
  positionals: { min: 1, max: 1 },
  async run({ positionals, values, json, io }) {
    const dmpUserId = positionals[0] as string;
    if (!isValidDmpUserId(dmpUserId))
      throw new UsageError(`invalid DMP user id '${String(positionals[0]).slice(0, 140)}'`);
    const context = CliContext.open(targetFlags(values), io.env);
    try {
      const config = context.fileConfig();
      const [population, mappingTable, staging, { store: segments }] = await Promise.all([
        context.table(POPULATION_TABLE, 'populationTableName'),
        context.table(MAPPING_TABLE, 'mappingTableName'),
        context.table(FILE_STAGING_TABLE, 'fileStagingTableName'),
        context.segmentStore(),
      ]);
      const [
        { DynamoPopulationStore },
        { DynamoMappingStore },
        { SqsQueues },
        { fileStore },
        forget,
        wiring,
      ] = await Promise.all([
        import('../../src/population/dynamo-store.ts'),
        import('../../src/sync/mapping-store.ts'),
        import('../../src/population/sqs-queues.ts'),
        import('../../src/files/staging-store.ts'),
        import('../../src/privacy/forget.ts'),
        import('../../src/privacy/wiring.ts'),
      ]);
      const digests = await context.userDigests();
      const audit = await forget.forgetUser(
        dmpUserId,
        'cli',
        wiring.forgetDeps({
          config,
          digests,
          population: new DynamoPopulationStore(population.client, population.tableName, digests),
          mappings: new DynamoMappingStore(mappingTable.client, mappingTable.tableName),
          queues: new SqsQueues(await context.sqsClient(), (platformId) =>
            deliveryQueueName(context.environment, platformId),
          ),
          files: fileStore(config, staging.client, staging.tableName),
          segments,
        }),
      );
      if (json) io.stdout(JSON.stringify(audit));
      else
        io.stdout(
          [
            `forgotten (audit digest ${audit.digest.slice(0, 16)}…)`,
            `removals sent: ${audit.removalsSent} to platform(s) ${audit.platforms.join(', ') || 'none'}`,
            `deleted: ${audit.mappingsDeleted} mapping(s), ${audit.pendingDeleted} pending event(s), ${audit.statesDeleted} membership state(s), ${audit.stagedDeleted} staged file row(s), ${audit.rejectionsDeleted} rejection record(s)`,
          ].join('\n'),
        );
    } finally {
      context.close();
    }
    return undefined;
  },
};

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
    "  <dmpUserId>        the dmp_uid cookie value (one starting with '-': put -- before it)",
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

/**
 * `dmp forget audit`: the audit records of privacy requests of one month (who asked, when, what
 * was removed and deleted), without ids; `--user` finds one user's by its keyed digest.
 */
export const forgetAuditCommand: Command = {
  name: 'forget audit',
  summary: 'audit records of privacy requests (a month, or one user by its keyed digest)',
  usage: '[--month YYYY-MM] [--user <dmpUserId>] [--json] [--env <name>]',
  help: [
    '  --month YYYY-MM    the month of the requests (default: this month, UTC)',
    '  --user <id>        only the requests of this DMP user (records hold a keyed digest, not the id)',
    '  --env <name>       a deployed environment (default: the local stack)',
  ].join('\n'),
  options: { ...TARGET_OPTIONS, month: { type: 'string' }, user: { type: 'string' } },
  async run({ values, json, io }) {
    const month =
      typeof values['month'] === 'string' ? values['month'] : new Date().toISOString().slice(0, 7);
    if (!/^\d{4}-(0[1-9]|1[0-2])$/.test(month))
      throw new UsageError(`--month must be YYYY-MM, got '${String(month).slice(0, 40)}'`);
    const user = typeof values['user'] === 'string' ? values['user'] : undefined;
    if (user !== undefined && !isValidDmpUserId(user))
      throw new UsageError(`invalid DMP user id '${String(user).slice(0, 140)}'`);
    const context = CliContext.open(targetFlags(values), io.env);
    try {
      const population = await context.table(POPULATION_TABLE, 'populationTableName');
      const { DynamoPopulationStore } = await import('../../src/population/dynamo-store.ts');
      const digest = user === undefined ? undefined : await (await context.userDigests()).of(user);
      const audits = (await new DynamoPopulationStore(population.client, population.tableName).audits(month))
        .filter((audit) => digest === undefined || audit['digest'] === digest)
        .sort((a, b) => String(a['at']).localeCompare(String(b['at'])));
      if (json) {
        io.stdout(JSON.stringify({ month, audits }));
        return undefined;
      }
      if (audits.length === 0) {
        io.stdout(`no privacy request in ${month}${user === undefined ? '' : ' for this user'}`);
        return undefined;
      }
      const { renderTable } = await import('../format.ts');
      io.stdout(
        renderTable(
          [
            'at',
            'source',
            'digest',
            'platforms',
            'removals',
            'mappings',
            'pending',
            'states',
            'staged',
            'rejections',
          ],
          audits.map((audit) => [
            String(audit['at'] ?? ''),
            String(audit['source'] ?? ''),
            `${String(audit['digest'] ?? '').slice(0, 16)}…`,
            String(audit['platforms'] ?? '') || '-',
            String(audit['removalsSent'] ?? 0),
            String(audit['mappingsDeleted'] ?? 0),
            String(audit['pendingDeleted'] ?? 0),
            String(audit['statesDeleted'] ?? 0),
            String(audit['stagedDeleted'] ?? 0),
            String(audit['rejectionsDeleted'] ?? 0),
          ]),
        ),
      );
    } finally {
      context.close();
    }
    return undefined;
  },
};

import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { MAPPING_TABLE } from '../../src/infra/resources.ts';
import { isValidDmpUserId } from '../../src/sync/user-ids.ts';
import { renderTable } from '../format.ts';
import { CliError, type Command, UsageError } from '../framework.ts';
import { resolveTable, TARGET_OPTIONS, type TableTarget, targetFlags } from '../target.ts';

/** `dmp mappings <dmpUserId>`: the partner ids stored for one DMP user, one per platform. */

export interface MappingView {
  readonly platformId: number;
  readonly partnerUserId: string;
  readonly firstSeen: string | null;
  readonly lastSeen: string | null;
  readonly lastChanged: string | null;
  readonly previousPartnerUserId: string | null;
  /** When DynamoDB's TTL deletes the mapping (ISO); null when the item has no TTL. */
  readonly expiresAt: string | null;
  /** Past its expiry but not deleted yet (TTL deletion lags in AWS too): no longer a valid mapping. */
  readonly expired: boolean;
}

const PLATFORM_SK_PREFIX = 'platform#';

function toView(item: Record<string, unknown>, nowSeconds: number): MappingView {
  const sk = String(item['sk'] ?? '');
  const platformId =
    typeof item['platformId'] === 'number' ? item['platformId'] : Number(sk.slice(PLATFORM_SK_PREFIX.length));
  const text = (name: string) => (typeof item[name] === 'string' ? (item[name] as string) : null);
  const expiresAt = typeof item['expiresAt'] === 'number' ? item['expiresAt'] : null;
  return {
    platformId,
    partnerUserId: text('partnerUserId') ?? '',
    firstSeen: text('firstSeen'),
    lastSeen: text('lastSeen'),
    lastChanged: text('lastChanged'),
    previousPartnerUserId: text('previousPartnerUserId'),
    expiresAt: expiresAt === null ? null : new Date(expiresAt * 1000).toISOString(),
    expired: expiresAt !== null && expiresAt <= nowSeconds,
  };
}

/**
 * The mappings of one DMP user in the table, by platform (what `dmp mappings` prints, and what
 * `dmp platforms test-sync` reads after its sync); CliError when the table cannot be read.
 */
export async function readMappings(
  target: TableTarget,
  dmpUserId: string,
  options: { readonly destroy?: boolean } = {},
): Promise<MappingView[]> {
  return (await readUserPartition(target, dmpUserId, options)).mappings;
}

/**
 * The user's mappings, and whether a privacy request forgot the user: its forget markers
 * (src/sync/mapping-store.ts) hold no partner id and are not mappings.
 */
async function readUserPartition(
  target: TableTarget,
  dmpUserId: string,
  options: { readonly destroy?: boolean } = {},
): Promise<{ mappings: MappingView[]; forgotten: boolean }> {
  const [{ QueryCommand }, { unmarshall }] = await Promise.all([
    import('@aws-sdk/client-dynamodb'),
    import('@aws-sdk/util-dynamodb'),
  ]);
  const items: Record<string, unknown>[] = [];
  try {
    let startKey: Record<string, AttributeValue> | undefined;
    do {
      const page = await target.client.send(
        new QueryCommand({
          TableName: target.tableName,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :platform)',
          ExpressionAttributeValues: {
            ':pk': { S: `user#${dmpUserId}` },
            ':platform': { S: PLATFORM_SK_PREFIX },
          },
          ...(startKey ? { ExclusiveStartKey: startKey } : {}),
        }),
      );
      items.push(...(page.Items ?? []).map((item) => unmarshall(item)));
      startKey = page.LastEvaluatedKey;
    } while (startKey);
  } catch (error) {
    throw new CliError(
      `cannot read ${target.description}: ${(error as Error).name}: ${(error as Error).message}`,
      { cause: error },
    );
  } finally {
    if (options.destroy) target.client.destroy();
  }
  const now = Math.floor(Date.now() / 1000);
  const isMarker = (item: Record<string, unknown>) => item['forgotten'] === true;
  return {
    mappings: items
      .filter((item) => !isMarker(item))
      .map((item) => toView(item, now))
      .sort((a, b) => a.platformId - b.platformId),
    forgotten: items.some((item) => isMarker(item) && Number(item['expiresAt']) > now),
  };
}

export const mappingsCommand: Command = {
  name: 'mappings',
  summary: "List a DMP user's stored partner user ids, one per platform",
  usage: '<dmpUserId> [--json] [--env <name>] [--endpoint <url>] [--table <name>] [--region <region>]',
  help: [
    'arguments:',
    "  <dmpUserId>        the value of the dmp_uid cookie (one starting with '-': put -- before it)",
    '',
    'options:',
    '  --env <name>       local (default: the running `npm start` stack, via .local-data/endpoints.json)',
    '                     or a deployed environment: table from stack DmpActivation-<name>, output MappingTableName',
    '  --endpoint <url>   DynamoDB endpoint (local stack without endpoints.json, or any DynamoDB-compatible one)',
    '  --table <name>     table name (skips the lookup)',
    '  --region <region>  AWS region (default: the environment config, else the AWS SDK default)',
    '  --json             {"dmpUserId": ..., "mappings": [...], "forgotten": true|false}',
  ].join('\n'),
  options: TARGET_OPTIONS,
  positionals: { min: 1, max: 1 },
  async run({ positionals, values, json, io }) {
    const given: string = positionals[0]!;
    const valid: boolean = isValidDmpUserId(given);
    if (!valid) {
      throw new UsageError(
        `invalid DMP user id '${given.slice(0, 140)}': expected the dmp_uid cookie value ` +
          "(8-128 characters: letters, digits, '.', '_', '-')",
      );
    }
    const dmpUserId = given;
    const target = await resolveTable(targetFlags(values), MAPPING_TABLE, 'mappingTableName', io.env);
    const { mappings, forgotten } = await readUserPartition(target, dmpUserId, { destroy: true });

    if (json) {
      io.stdout(JSON.stringify({ dmpUserId, mappings, forgotten }, null, 2));
      return 0;
    }
    if (mappings.length === 0) {
      io.stdout(
        `No mappings for DMP user ${dmpUserId} in ${target.description}.${
          forgotten ? ' The user was forgotten by a privacy request: syncs are refused (user_forgotten).' : ''
        }`,
      );
      return 0;
    }
    io.stdout(`Mappings of DMP user ${dmpUserId} in ${target.description}:\n`);
    io.stdout(
      renderTable(
        ['PLATFORM', 'PARTNER USER ID', 'FIRST SEEN', 'LAST SEEN', 'LAST CHANGED', 'PREVIOUS ID', 'EXPIRES'],
        mappings.map((mapping) => [
          String(mapping.platformId),
          mapping.partnerUserId,
          mapping.firstSeen ?? '-',
          mapping.lastSeen ?? '-',
          mapping.lastChanged ?? '-',
          mapping.previousPartnerUserId ?? '-',
          mapping.expiresAt ? `${mapping.expiresAt}${mapping.expired ? ' (expired)' : ''}` : '-',
        ]),
      ),
    );
    return 0;
  },
};

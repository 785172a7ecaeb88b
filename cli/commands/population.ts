import { readFileSync } from 'node:fs';
import { audienceQueueName, deliveryPlatforms, deliveryQueueName } from '../../src/infra/population.ts';
import { MAPPING_TABLE, POPULATION_TABLE } from '../../src/infra/resources.ts';
import { lapsed, NO_SEGMENT, OUTCOMES } from '../../src/population/accounting.ts';
import {
  MAX_MESSAGE_BYTES,
  MAX_USERS_PER_MESSAGE,
  ProducerAudienceEventSchema,
} from '../../src/population/message.ts';
import { isValidDmpUserId } from '../../src/sync/user-ids.ts';
import { CliContext, findPlatform, parsePlatformId } from '../context.ts';
import { progressBar, renderTable } from '../format.ts';
import { CliError, type Command, UsageError } from '../framework.ts';
import { TARGET_OPTIONS, targetFlags } from '../target.ts';
import { fileAccounting, fileWhy } from './file-accounting.ts';

/** The SDK-backed stores, loaded on use: `dmp --help` and other commands load no AWS SDK client. */
const populationStore = () => import('../../src/population/dynamo-store.ts');

/**
 * Segment population for operators: `dmp send` puts audience events on the queue exactly as a DMP
 * producer does; `dmp why` says where one user stands at a partner and why; `dmp stats` counts
 * every membership's outcome per platform and segment; `dmp rejected` lists what was set aside.
 */

const TARGET_HELP = '  --env <name>       a deployed environment (default: the local stack)';

function stringOption(values: Record<string, unknown>, name: string): string | undefined {
  return typeof values[name] === 'string' ? (values[name] as string) : undefined;
}

function required(values: Record<string, unknown>, name: string): string {
  const value = stringOption(values, name);
  if (value === undefined) throw new UsageError(`--${name} is required`);
  return value;
}

/** The users of `dmp send`: generated (`--users N`) or read from a file, one id per line. */
function usersOf(values: Record<string, unknown>, audienceId: string): string[] {
  const count = stringOption(values, 'users');
  const file = stringOption(values, 'file');
  if ((count === undefined) === (file === undefined))
    throw new UsageError('give one of --users N or --file <path>');
  if (count !== undefined) {
    if (!/^[1-9]\d{0,7}$/.test(count))
      throw new UsageError(`--users must be a positive number, got '${count}'`);
    const prefix = stringOption(values, 'prefix') ?? `send-${audienceId.replaceAll(/[^A-Za-z0-9._-]/g, '_')}`;
    return Array.from(
      { length: Number(count) },
      (_, index) => `${prefix}-${String(index + 1).padStart(8, '0')}`,
    );
  }
  let text: string;
  try {
    text = readFileSync(file as string, 'utf8');
  } catch (error) {
    throw new CliError(`cannot read ${file}: ${(error as Error).message}`);
  }
  return text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '');
}

/** Packs users into message bodies within the contract's limits (users and bytes per message). */
function packEvents(base: Record<string, unknown>, users: readonly string[], perMessage: number): string[] {
  const bodies: string[] = [];
  for (let index = 0; index < users.length; ) {
    let take = Math.min(perMessage, users.length - index);
    let body = JSON.stringify({ ...base, users: users.slice(index, index + take) });
    while (Buffer.byteLength(body) > MAX_MESSAGE_BYTES && take > 1) {
      take = Math.ceil(take / 2);
      body = JSON.stringify({ ...base, users: users.slice(index, index + take) });
    }
    bodies.push(body);
    index += take;
  }
  return bodies;
}

export const sendCommand: Command = {
  name: 'send',
  summary: 'put audience events on the audience-events queue, as a DMP producer does',
  usage:
    '--audience <id> --name <name> --platform <id> (--users N | --file <path>) [--op add|remove] [--ttl <s>] [--kind custom|lookalike] [--per-message N] [--json] [--env <name>]',
  help: [
    '  --audience <id>    the DMP audience id',
    '  --name <name>      the audience name (the partner segment is named after it)',
    '  --platform <id>    a platform to push to (repeat for several)',
    '  --users N          N generated users (<prefix>-00000001 ...; --prefix to choose it)',
    '  --file <path>      user ids, one per line',
    '  --op add|remove    default add',
    '  --ttl <seconds>    membership lifetime passed to partners that take one',
    `  --per-message N    users per SQS message (default 1000, at most ${MAX_USERS_PER_MESSAGE})`,
    TARGET_HELP,
  ].join('\n'),
  options: {
    ...TARGET_OPTIONS,
    audience: { type: 'string' },
    name: { type: 'string' },
    kind: { type: 'string' },
    platform: { type: 'string', multiple: true },
    users: { type: 'string' },
    file: { type: 'string' },
    prefix: { type: 'string' },
    op: { type: 'string' },
    ttl: { type: 'string' },
    'per-message': { type: 'string' },
  },
  async run({ values, json, io }) {
    const audienceId = required(values, 'audience');
    const platforms = ((values['platform'] as string[] | undefined) ?? []).map((value) =>
      parsePlatformId(value),
    );
    if (platforms.length === 0) throw new UsageError('--platform is required');
    const op = stringOption(values, 'op') ?? 'add';
    const ttl = stringOption(values, 'ttl');
    const perMessage = Number(stringOption(values, 'per-message') ?? 1000);
    if (!Number.isInteger(perMessage) || perMessage < 1 || perMessage > MAX_USERS_PER_MESSAGE) {
      throw new UsageError(`--per-message must be 1-${MAX_USERS_PER_MESSAGE}`);
    }
    const ts = new Date().toISOString();
    const base = {
      v: 1,
      audience: {
        id: audienceId,
        name: required(values, 'name'),
        kind: stringOption(values, 'kind') ?? 'custom',
      },
      platforms,
      op,
      ...(ttl === undefined ? {} : { ttlSeconds: Number(ttl) }),
      ts,
    };
    const users = usersOf(values, audienceId);
    // The contract as producers must honour it, checked before anything is sent.
    const check = ProducerAudienceEventSchema.safeParse({
      ...base,
      users: users.filter(isValidDmpUserId).slice(0, 1),
    });
    if (!check.success) {
      const issue = check.error.issues[0];
      throw new UsageError(
        `the event would be refused: ${issue?.path.join('.') || 'event'}: ${issue?.message}`,
      );
    }
    const invalid = users.filter((user) => !isValidDmpUserId(user)).length;
    const context = CliContext.open(targetFlags(values), io.env);
    try {
      const config = context.fileConfig();
      for (const platformId of platforms) findPlatform(config, platformId);
      const queue = audienceQueueName(context.environment);
      const { SqsQueues } = await import('../../src/population/sqs-queues.ts');
      const queues = new SqsQueues(await context.sqsClient(), (platformId) =>
        deliveryQueueName(context.environment, platformId),
      );
      const bodies = packEvents(base, users, perMessage);
      const showProgress = !json && users.length >= 10_000 && process.stderr.isTTY;
      let sent = 0;
      for (let index = 0; index < bodies.length; index += 10) {
        const chunk = bodies.slice(index, index + 10);
        await queues.sendTo(queue, chunk);
        sent += chunk.reduce((sum, body) => sum + (JSON.parse(body) as { users: string[] }).users.length, 0);
        if (showProgress) process.stderr.write(progressBar(sent, users.length, 'users'));
      }
      if (showProgress) process.stderr.write('\n');
      const summary = {
        queue,
        audienceId,
        op,
        platforms,
        users: users.length,
        invalidUsers: invalid,
        messages: bodies.length,
        ts,
      };
      if (json) io.stdout(JSON.stringify(summary));
      else {
        io.stdout(
          `sent ${users.length} user(s) of ${audienceId} (${op}) for platform(s) ${platforms.join(', ')} in ${bodies.length} message(s) to ${queue}` +
            (invalid > 0
              ? `\n${invalid} user id(s) are not DMP ids: the route step will set them aside (dmp rejected)`
              : ''),
        );
      }
    } finally {
      context.close();
    }
    return undefined;
  },
};

export const whyCommand: Command = {
  name: 'why',
  summary: 'where a DMP user stands at a platform, segment by segment, and why',
  usage: '<dmpUserId> --platform <id> [--json] [--env <name>]',
  help: [
    "  <dmpUserId>        the dmp_uid cookie value (one starting with '-': put -- before it)",
    '  --platform <id>    the platform',
    TARGET_HELP,
  ].join('\n'),
  options: { ...TARGET_OPTIONS, platform: { type: 'string' } },
  positionals: { min: 1, max: 1 },
  async run({ positionals, values, json, io }) {
    const dmpUserId = positionals[0] as string;
    if (!isValidDmpUserId(dmpUserId))
      throw new UsageError(`invalid DMP user id '${String(positionals[0]).slice(0, 140)}'`);
    const platformId = parsePlatformId(required(values, 'platform'));
    const context = CliContext.open(targetFlags(values), io.env);
    try {
      const population = await context.table(POPULATION_TABLE, 'populationTableName');
      const mappingTable = await context.table(MAPPING_TABLE, 'mappingTableName');
      const { DynamoPopulationStore } = await populationStore();
      const { DynamoMappingStore } = await import('../../src/sync/mapping-store.ts');
      const store = new DynamoPopulationStore(population.client, population.tableName);
      const digest = await (await context.userDigests()).of(dmpUserId);
      const nowSeconds = Math.floor(Date.now() / 1000);
      const mapping = (
        await new DynamoMappingStore(mappingTable.client, mappingTable.tableName).listForUser(
          dmpUserId,
          nowSeconds,
        )
      ).find((record) => record.platformId === platformId);
      const memberships = await store.membershipsOf(platformId, dmpUserId);
      const pending = await store.listPending(platformId, dmpUserId);
      const rejected = (await store.rejections()).filter(
        (entry) =>
          entry['userDigest'] === digest &&
          (entry['platformId'] === undefined || entry['platformId'] === platformId),
      );
      const segments = memberships.map((m) => {
        const event = `${m.op === 'add' ? 'add' : 'removal'} of ${new Date(m.ts).toISOString()}`;
        return {
          segmentId: m.segmentId,
          audienceId: m.audienceId,
          // An intent not acknowledged yet is what the next delivery sends (older events are ignored).
          state: m.acked ? (m.op === 'add' ? 'member' : 'removed') : m.op === 'add' ? 'adding' : 'removing',
          eventTime: new Date(m.ts).toISOString(),
          acknowledgedAt: m.acked ? (m.at ?? null) : null,
          partnerUserId: m.partnerUserId,
          why: m.acked
            ? `the partner acknowledged the ${event} at ${m.at}${m.op === 'add' && m.ttlSeconds ? ` (TTL ${m.ttlSeconds} s)` : ''}; older events for this segment are ignored`
            : `the ${event} is being sent (stored at ${m.at}, not acknowledged by the partner yet: retried by the queue, or in the DLQ); older events for this segment are ignored`,
        };
      });
      // File-mode platforms: staged for a file, delivered once the file is published.
      const connector = findPlatform(context.fileConfig(), platformId).connector;
      const files =
        connector?.population.mode === 'file'
          ? await fileWhy(context, platformId, connector.files?.opColumn ?? false, dmpUserId)
          : [];
      const waiting = pending.map((m) => {
        const lapseAt = new Date(m.lapseAt * 1000).toISOString();
        const gone = lapsed(m.lapseAt, nowSeconds);
        return {
          segmentId: m.segmentId,
          audienceId: m.audienceId,
          state: gone ? 'lapsed' : 'pending',
          eventTime: new Date(m.ts).toISOString(),
          op: m.op,
          lapseAt,
          why: gone
            ? `no partner id before ${lapseAt} (the time an event waits for the user's sync): never delivered, and a later sync does not deliver it (counted \`lapsed\` by dmp stats)`
            : mapping
              ? 'a partner id exists now: the release is under way (or failed: see the release function)'
              : `no partner id yet (the user has not synced with this platform): delivered as soon as the sync stores one, if before ${lapseAt}`,
        };
      });
      // A privacy request's tombstone: the user's events are set aside, its syncs refused.
      const forgotten = (await store.tombstoned([digest])).has(digest);
      const report = {
        dmpUserId,
        platformId,
        forgotten,
        partnerUserId: mapping?.partnerUserId ?? null,
        synced: mapping !== undefined,
        segments: [...segments, ...files, ...waiting],
        rejected,
      };
      if (json) {
        io.stdout(JSON.stringify(report));
        return undefined;
      }
      const lines = [
        `${dmpUserId} at platform ${platformId}: ${mapping ? `partner id ${mapping.partnerUserId} (last synced ${mapping.lastSeen})` : 'not synced (no partner id)'}`,
      ];
      if (forgotten)
        lines.push(
          '  forgotten by a privacy request (dmp forget audit --user): its events are set aside, its syncs refused',
        );
      if (report.segments.length === 0 && rejected.length === 0)
        lines.push('no population event for this user and platform');
      for (const segment of report.segments) {
        lines.push(
          `  segment ${segment.segmentId} (${segment.audienceId}): ${segment.state}: ${segment.why}`,
        );
      }
      for (const entry of rejected)
        lines.push(`  rejected ${entry['at']}: ${entry['reason']}: ${entry['detail']}`);
      io.stdout(lines.join('\n'));
    } finally {
      context.close();
    }
    return undefined;
  },
};

export const statsCommand: Command = {
  name: 'stats',
  summary: 'delivered, pending, rejected, DLQ, superseded and lapsed memberships per platform and segment',
  usage: '[--platform <id>] [--json] [--env <name>]',
  help: [
    '  --platform <id>    one platform (default: every platform that takes memberships)',
    '  each accepted membership is counted in exactly one outcome: delivered (the partner acknowledged',
    "  it), pending (waiting for the user's sync), rejected (dmp rejected), dlq, superseded (a newer",
    '  event won), lapsed (no sync within the 14 days a pending event waits: never delivered);',
    '  calls counts the partner calls whose answers were recorded (segment (none))',
    '  file-mode platforms add `pendingFile`: staged, counted as delivered once their file is published',
    TARGET_HELP,
  ].join('\n'),
  options: { ...TARGET_OPTIONS, platform: { type: 'string' } },
  async run({ values, json, io }) {
    const context = CliContext.open(targetFlags(values), io.env);
    try {
      const config = context.fileConfig();
      const only = stringOption(values, 'platform');
      const platforms = only
        ? [findPlatform(config, parsePlatformId(only)).id]
        : config.platforms.filter((platform) => platform.connector).map((platform) => platform.id);
      const apiPlatforms = new Set(deliveryPlatforms(config.platforms).map((platform) => platform.id));
      const population = await context.table(POPULATION_TABLE, 'populationTableName');
      const { DynamoPopulationStore } = await populationStore();
      const store = new DynamoPopulationStore(population.client, population.tableName);
      const files = await fileAccounting(
        context,
        platforms.filter(
          (platformId) => findPlatform(config, platformId).connector?.population.mode === 'file',
        ),
      );
      const rows: Record<string, unknown>[] = [];
      for (const platformId of [0, ...platforms]) {
        if (platformId !== 0 && !apiPlatforms.has(platformId) && !files.has(platformId)) continue;
        const fileCounts = files.get(platformId) ?? new Map();
        for (const { segmentId, counts } of await store.stats(platformId)) {
          if (platformId === 0 && only) continue;
          const file = fileCounts.get(segmentId);
          fileCounts.delete(segmentId);
          rows.push({ platformId, segmentId, ...counts, ...mergeFileCounts(counts, file) });
        }
        // Segments with file deliveries only (no pending, rejected... counted by population).
        for (const [segmentId, file] of fileCounts)
          rows.push({ platformId, segmentId, ...mergeFileCounts({}, file) });
      }
      if (json) {
        io.stdout(JSON.stringify({ environment: context.environment, rows }));
        return undefined;
      }
      if (rows.length === 0) {
        io.stdout('no population counts yet');
        return undefined;
      }
      const columns = [
        ...OUTCOMES,
        ...(rows.some((row) => row['pendingFile'] !== undefined) ? (['pendingFile'] as const) : []),
        'calls',
      ] as const;
      io.stdout(
        renderTable(
          ['platform', 'segment', ...columns],
          rows.map((row) => [
            row['platformId'] === 0 ? '(no platform)' : String(row['platformId']),
            row['segmentId'] === NO_SEGMENT ? '(none)' : String(row['segmentId']),
            ...columns.map((column) => String(row[column] ?? 0)),
          ]),
        ),
      );
    } finally {
      context.close();
    }
    return undefined;
  },
};

/**
 * A file-mode platform's row: its staged changes awaiting their file (`pendingFile`), and those of
 * published windows added to `delivered` and `superseded`.
 */
function mergeFileCounts(
  counts: Record<string, number>,
  file: { pendingFile: number; delivered: number; superseded: number } | undefined,
): Record<string, number> {
  if (!file) return {};
  return {
    pendingFile: file.pendingFile,
    delivered: (counts['delivered'] ?? 0) + file.delivered,
    superseded: (counts['superseded'] ?? 0) + file.superseded,
  };
}

export const rejectedCommand: Command = {
  name: 'rejected',
  summary: 'audience events and memberships set aside, with their reason (last 14 days)',
  usage: '[--days N] [--user <dmpUserId>] [--json] [--env <name>]',
  help: [
    '  --days N           how far back (default 14, the longest kept)',
    "  --user <id>        only this DMP user's rejections (records hold a keyed digest, not the id)",
    TARGET_HELP,
  ].join('\n'),
  options: { ...TARGET_OPTIONS, days: { type: 'string' }, user: { type: 'string' } },
  async run({ values, json, io }) {
    const days = Number(stringOption(values, 'days') ?? 14);
    if (!Number.isInteger(days) || days < 1 || days > 15) throw new UsageError('--days must be 1-15');
    const user = stringOption(values, 'user');
    if (user !== undefined && !isValidDmpUserId(user))
      throw new UsageError(`invalid DMP user id '${String(user).slice(0, 140)}'`);
    const context = CliContext.open(targetFlags(values), io.env);
    try {
      const population = await context.table(POPULATION_TABLE, 'populationTableName');
      const { DynamoPopulationStore } = await populationStore();
      const digest = user === undefined ? undefined : await (await context.userDigests()).of(user);
      const entries = (
        await new DynamoPopulationStore(population.client, population.tableName).rejections(days)
      ).filter((entry) => digest === undefined || entry['userDigest'] === digest);
      if (json) {
        io.stdout(JSON.stringify({ rejected: entries }));
        return undefined;
      }
      if (entries.length === 0) {
        io.stdout('nothing rejected');
        return undefined;
      }
      io.stdout(
        renderTable(
          ['at', 'reason', 'platform', 'audience', 'user digest', 'memberships', 'detail'],
          entries.map((entry) => [
            String(entry['at'] ?? ''),
            String(entry['reason'] ?? ''),
            entry['platformId'] === undefined ? '' : String(entry['platformId']),
            String(entry['audienceId'] ?? ''),
            String(entry['userDigest'] ?? '').slice(0, 12),
            String(entry['memberships'] ?? ''),
            String(entry['detail'] ?? entry['snippet'] ?? '').slice(0, 120),
          ]),
        ),
      );
    } finally {
      context.close();
    }
    return undefined;
  },
};

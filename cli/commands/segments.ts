import type { EnvironmentConfig } from '../../src/config/schema.ts';
import {
  type Audience,
  AudienceSchema,
  asSegmentId,
  MAX_AUDIENCE_NAME_LENGTH,
  partnerSegmentName,
  type SegmentError,
  type SegmentRecord,
} from '../../src/segments/segment.ts';
import type * as SegmentServiceModule from '../../src/segments/segment-service.ts';
import { CliContext, ConfigProblemsError, findConnectedPlatform, parsePlatformId } from '../context.ts';
import { renderTable } from '../format.ts';
import { CliError, type Command, type OptionValues, UsageError } from '../framework.ts';
import { TARGET_OPTIONS, targetFlags } from '../target.ts';

/**
 * `dmp segments`: the partner segments the service has obtained (or is obtaining) per platform
 * and DMP audience, from the segment table; `dmp segments ensure`: obtains one now, through the
 * same SegmentService the population step uses.
 */

/**
 * The segment service, and the connectors (auth schemes, templates, transport) it brings, are
 * loaded when a segments command runs, not when `dmp` starts: `dmp --help` and the other
 * commands skip them.
 */
async function loadConnectorModules() {
  const [service, client] = await Promise.all([
    import('../../src/segments/segment-service.ts'),
    import('../../src/connectors/http/client.ts'),
  ]);
  return { service, PartnerCallError: client.PartnerCallError };
}
type ConnectorModules = Awaited<ReturnType<typeof loadConnectorModules>>;

/** How the name at the partner relates to the DMP audience's current name. */
export type NameStatus =
  /** The partner segment carries the name the audience would get now. */
  | 'current'
  /** It differs; the connector can rename, but has not (yet): the next ensure under a new name does. */
  | 'renamePending'
  /** It differs and the last rename call failed (see renameError). */
  | 'renameFailed'
  /** It differs and the platform cannot rename (no rename call, or the name is the id). */
  | 'renameUnsupported'
  /** It differs; whether the platform can rename is unknown (no config for the platform). */
  | 'differs';

export interface SegmentView {
  readonly platformId: number;
  readonly audienceId: string;
  readonly audienceName: string;
  readonly kind: 'custom' | 'lookalike';
  readonly partnerSegmentId: string | null;
  readonly state: SegmentRecord['state'];
  /** The name the partner segment carries. */
  readonly nameAtPartner: string | null;
  /** null while there is no partner segment. */
  readonly nameStatus: NameStatus | null;
  /** Create calls started. */
  readonly attempts: number;
  /** How the id was obtained: created, existing, lookup, implicit. */
  readonly source: string | null;
  readonly possibleDuplicate: boolean;
  readonly outcomeUnknown: boolean;
  /** While `creating`: when the holder's lease runs out (ISO), and whether it has. */
  readonly leaseExpiresAt: string | null;
  readonly leaseExpired: boolean;
  /** While `retry`: no call to the partner before this time (ISO; its Retry-After), if it said. */
  readonly retryAt: string | null;
  /** Partner segments obtained for the audience that it does not use. */
  readonly orphans: readonly { partnerSegmentId: string; reason: string; at: string }[];
  /** The command that settles a flagged record (state unresolved, or possibleDuplicate), else null. */
  readonly resolve: string | null;
  readonly lastError: SegmentErrorView | null;
  readonly renameError: SegmentErrorView | null;
  readonly createdAt: string;
  readonly updatedAt: string;
}

export interface SegmentErrorView {
  /** The step that failed: credentials, token (the OAuth2 token endpoint), lookup, create, rename, claim. */
  readonly step: string | null;
  readonly status: number | null;
  readonly message: string;
  readonly at: string | null;
}

function errorView(error: SegmentError | undefined): SegmentErrorView | null {
  if (!error) return null;
  return {
    step: typeof error.step === 'string' ? error.step : null,
    status: typeof error.status === 'number' ? error.status : null,
    message: String(error.message ?? ''),
    at: typeof error.at === 'string' ? error.at : null,
  };
}

/** `dmp segments resolve ...` for a record an operator must settle, else null. */
function resolveCommand(record: SegmentRecord): string | null {
  if (record.state !== 'unresolved' && !record.possibleDuplicate) return null;
  const base = `dmp segments resolve --platform ${record.platformId} --audience ${record.audienceId}`;
  return record.state === 'unresolved'
    ? `${base} --adopt <partner segment id> (found at the partner), or --create (there is none)`
    : `${base} --adopt <the partner segment id to keep>`;
}

function nameStatusOf(record: SegmentRecord, config: EnvironmentConfig | undefined): NameStatus | null {
  if (record.nameAtPartner === undefined) return null;
  const platform = config?.platforms.find((candidate) => candidate.id === record.platformId);
  const segments = platform?.connector?.segments;
  if (!config || !segments) return record.nameAtPartner === record.audienceName ? 'current' : 'differs';
  const audience: Audience = { id: record.audienceId, name: record.audienceName, kind: record.kind };
  const expected =
    segments.creation === 'implicit'
      ? record.partnerSegmentId
      : partnerSegmentName(segments, audience, {
          environment: config.name,
          platformId: record.platformId,
          variables: platform.connector?.api.variables ?? {},
        });
  if (record.nameAtPartner === expected) return 'current';
  if (record.renameError) return 'renameFailed';
  return segments.creation === 'api' && segments.rename ? 'renamePending' : 'renameUnsupported';
}

export function segmentView(
  record: SegmentRecord,
  config: EnvironmentConfig | undefined,
  nowMs: number,
): SegmentView {
  const creating = record.state === 'creating' && record.leaseExpiresAt !== undefined;
  return {
    platformId: record.platformId,
    audienceId: record.audienceId,
    audienceName: record.audienceName,
    kind: record.kind,
    partnerSegmentId: record.partnerSegmentId ?? null,
    state: record.state,
    nameAtPartner: record.nameAtPartner ?? null,
    nameStatus: nameStatusOf(record, config),
    attempts: record.attempts,
    source: record.source ?? null,
    possibleDuplicate: record.possibleDuplicate,
    outcomeUnknown: record.outcomeUnknown,
    leaseExpiresAt: creating ? new Date(record.leaseExpiresAt as number).toISOString() : null,
    leaseExpired: creating && (record.leaseExpiresAt as number) <= nowMs,
    retryAt:
      record.state === 'retry' && record.retryAt !== undefined
        ? new Date(record.retryAt).toISOString()
        : null,
    orphans: (record.orphans ?? []).map((orphan) => ({
      partnerSegmentId: String(orphan.partnerSegmentId),
      reason: String(orphan.reason),
      at: String(orphan.at),
    })),
    resolve: resolveCommand(record),
    lastError: errorView(record.lastError),
    renameError: errorView(record.renameError),
    createdAt: record.createdAt,
    updatedAt: record.updatedAt,
  };
}

function describeError(
  error: SegmentErrorView | null,
  describeSegmentError: typeof SegmentServiceModule.describe,
): string {
  if (!error) return '-';
  return describeSegmentError({
    message: error.message,
    ...(error.status === null ? {} : { status: error.status }),
    ...(error.step === null ? {} : { step: error.step as NonNullable<SegmentError['step']> }),
  });
}

const NAME_NOTES: Record<NameStatus, string> = {
  current: '',
  renamePending: ' [differs: rename pending]',
  renameFailed: ' [differs: rename failed]',
  renameUnsupported: ' [differs: rename unsupported]',
  differs: ' [differs]',
};

/** Cells are one line each; long partner answers are cut (the JSON output has them whole). */
function short(text: string, limit = 80): string {
  const line = text.replaceAll(/\s+/g, ' ');
  return line.length > limit ? `${line.slice(0, limit - 1)}…` : line;
}

function stringOption(values: OptionValues, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

const TARGET_HELP = [
  '  --env <name>       local (default: the running `npm start` stack, via .local-data/endpoints.json)',
  '                     or a deployed environment: stack DmpActivation-<name>, output SegmentTableName',
  '  --endpoint <url>   DynamoDB endpoint (skips the endpoints file for the table)',
  '  --table <name>     segment table name (skips the lookup)',
  '  --region <region>  AWS region (default: the environment config, else the AWS SDK default)',
];

export const segmentsCommand: Command = {
  name: 'segments',
  summary: 'List the partner segments per platform and DMP audience, with their state',
  usage: '[--platform <id>] [--json] [--env <name>] [--endpoint <url>] [--table <name>] [--region <region>]',
  help: [
    'options:',
    '  --platform <id>    only this platform',
    ...TARGET_HELP,
    '  --json             {"segments": [...]}',
    '',
    'States: ready (the partner segment id is known), creating (a caller holds the creation lease),',
    'retry (the last attempt failed transiently; the next caller tries again, not before retryAt',
    "when the partner said when), failed (the partner refused: fix the cause, then 'dmp segments",
    "ensure ... --retry-failed'), unresolved (a create may have been carried out and nothing can",
    "tell: see 'dmp segments resolve').",
    'Flags: possibleDuplicate (the partner may hold a second segment of the audience: resolve it),',
    'outcomeUnknown (the partner may hold a segment we have not recorded), orphans=<ids> (partner',
    'segments obtained for the audience that it does not use), retryAt=<time>, leaseExpired.',
  ].join('\n'),
  options: { ...TARGET_OPTIONS, platform: { type: 'string' } },
  async run({ values, json, io }) {
    const platformOption = stringOption(values, 'platform');
    const platformId = platformOption === undefined ? undefined : parsePlatformId(platformOption);
    const context = CliContext.open(targetFlags(values), io.env);
    try {
      // The config says how names are rendered and whether the platform can rename; optional.
      let config: EnvironmentConfig | undefined;
      try {
        config = context.fileConfig();
      } catch (error) {
        if (error instanceof ConfigProblemsError) {
          io.stderr(`note: ${error.file} is invalid (dmp platforms validate); rename support unknown`);
        } else if (!(error instanceof CliError)) {
          throw error;
        }
      }
      const { store, table } = await context.segmentStore();
      const { service } = await loadConnectorModules();
      let records: SegmentRecord[];
      try {
        records = await store.list(platformId);
      } catch (error) {
        throw new CliError(
          `cannot read ${table.description}: ${(error as Error).name}: ${(error as Error).message}`,
          { cause: error },
        );
      }
      const now = Date.now();
      const segments = records.map((record) => segmentView(record, config, now));
      if (json) {
        io.stdout(JSON.stringify({ segments }, null, 2));
        return 0;
      }
      const scope = platformId === undefined ? '' : ` of platform ${platformId}`;
      if (segments.length === 0) {
        io.stdout(`No segments${scope} in ${table.description}.`);
        return 0;
      }
      io.stdout(`Segments${scope} in ${table.description}:\n`);
      io.stdout(
        renderTable(
          [
            'PLATFORM',
            'AUDIENCE',
            'AUDIENCE NAME',
            'KIND',
            'PARTNER ID',
            'STATE',
            'NAME AT PARTNER',
            'ATTEMPTS',
            'SOURCE',
            'FLAGS',
            'LAST ERROR',
            'RENAME ERROR',
          ],
          segments.map((segment) => {
            const flags = [
              ...(segment.possibleDuplicate ? ['possibleDuplicate'] : []),
              ...(segment.outcomeUnknown ? ['outcomeUnknown'] : []),
              ...(segment.leaseExpired ? ['leaseExpired'] : []),
              ...(segment.orphans.length > 0
                ? [`orphans=${segment.orphans.map((orphan) => orphan.partnerSegmentId).join('+')}`]
                : []),
              ...(segment.retryAt ? [`retryAt=${segment.retryAt}`] : []),
            ];
            return [
              String(segment.platformId),
              segment.audienceId,
              short(segment.audienceName, 40),
              segment.kind,
              segment.partnerSegmentId ?? '-',
              segment.state,
              segment.nameAtPartner === null
                ? '-'
                : `${short(segment.nameAtPartner, 40)}${segment.nameStatus ? NAME_NOTES[segment.nameStatus] : ''}`,
              String(segment.attempts),
              segment.source ?? '-',
              flags.length > 0 ? flags.join(',') : '-',
              short(describeError(segment.lastError, service.describe)),
              short(describeError(segment.renameError, service.describe)),
            ];
          }),
        ),
      );
      const flagged = segments.filter((segment) => segment.resolve !== null);
      if (flagged.length > 0) {
        io.stdout(`\n${flagged.length} segment(s) need an operator (check the partner first):`);
        for (const segment of flagged) io.stdout(`  ${segment.resolve}`);
      }
      return 0;
    } finally {
      context.close();
    }
  },
};

// ---------------------------------------------------------------------------------------------

export const segmentsEnsureCommand: Command = {
  name: 'segments ensure',
  summary: 'Obtain the partner segment of a DMP audience now (create it once, else reuse the stored id)',
  usage:
    '--platform <id> --audience <id> --name <name> [--kind custom|lookalike] [--retry-failed] [--json] [--env <name>]',
  help: [
    'options:',
    '  --platform <id>    the platform (must have a connector)',
    '  --audience <id>    the DMP audience id (letters, digits and . _ : -)',
    `  --name <name>      the audience's name in the DMP, 1 to ${MAX_AUDIENCE_NAME_LENGTH} characters (the partner`,
    '                     segment name is rendered from it by the connector nameTemplate)',
    '  --kind <kind>      custom (default) or lookalike',
    '  --retry-failed     try again a segment the partner refused before (after fixing the cause)',
    ...TARGET_HELP,
    '  --json             {"platformId", "audienceId", "partnerSegmentId", "obtainedNow", "state"}',
    '',
    "Uses the platform credentials from Secrets Manager and the environment's connector config,",
    'exactly as the service does; concurrent callers create one partner segment. Locally, the',
    'reference partner and the Secrets Manager stand-in are those of the running stack (its',
    'endpoints file is needed even with --endpoint).',
    'Exit status: 0 ready, 1 refused, not ready yet or failed, 2 usage.',
  ].join('\n'),
  options: {
    ...TARGET_OPTIONS,
    platform: { type: 'string' },
    audience: { type: 'string' },
    name: { type: 'string' },
    kind: { type: 'string' },
    'retry-failed': { type: 'boolean', default: false },
  },
  async run({ values, json, io }) {
    const platformOption = stringOption(values, 'platform');
    const audienceId = stringOption(values, 'audience');
    const name = stringOption(values, 'name');
    if (platformOption === undefined) throw new UsageError('--platform is required');
    if (audienceId === undefined) throw new UsageError('--audience is required');
    if (name === undefined) throw new UsageError('--name is required');
    const platformId = parsePlatformId(platformOption);
    const kind = stringOption(values, 'kind') ?? 'custom';
    const parsed = AudienceSchema.safeParse({ id: audienceId, name, kind });
    if (!parsed.success) {
      const issues = parsed.error.issues.map((issue) => {
        const field = issue.path[0] === 'id' ? '--audience' : issue.path[0] === 'name' ? '--name' : '--kind';
        return `${field}: ${issue.message}`;
      });
      throw new UsageError(`invalid audience: ${issues.join('; ')}`);
    }
    const audience = parsed.data;
    const retryFailed = values['retry-failed'] === true;

    const modules = await loadConnectorModules();
    const context = CliContext.open(targetFlags(values), io.env);
    try {
      const config = context.runtimeConfig();
      const platform = findConnectedPlatform(config, platformId);
      const { service, table } = await context.segmentService();
      if (platform.connector.segments.creation === 'api') {
        // Credentials first: a missing or unfitting secret is reported before any lease is taken.
        try {
          await context.partnerClients().for(platform);
        } catch (error) {
          if (error instanceof CliError) throw error;
          throw new CliError(
            `platform ${platform.id}: the credentials do not fit its connector: ${(error as Error).message}`,
            { cause: error },
          );
        }
      }

      let result: Awaited<ReturnType<typeof service.ensure>>;
      try {
        result = await service.ensure(platform, audience, { retryFailed });
      } catch (error) {
        throw ensureFailure(modules, error, platform.id, audience, table.description);
      }
      const { partnerSegmentId, obtainedNow, record } = result;
      if (json) {
        io.stdout(
          JSON.stringify(
            {
              platformId: platform.id,
              audienceId: audience.id,
              partnerSegmentId,
              obtainedNow,
              state: record.state,
              nameAtPartner: record.nameAtPartner ?? null,
              source: record.source ?? null,
              possibleDuplicate: record.possibleDuplicate,
            },
            null,
            2,
          ),
        );
        return 0;
      }
      const how = obtainedNow ? (OBTAINED_NOW[record.source ?? ''] ?? 'obtained now') : 'already known';
      io.stdout(
        `platform ${platform.id}, audience ${audience.id}: partner segment ${partnerSegmentId} (${how})` +
          (record.possibleDuplicate
            ? `\nwarning: possible duplicate at the partner (see dmp segments); once checked: ${resolveCommand(record)}`
            : '') +
          (record.renameError
            ? `\nwarning: rename at the partner failed: ${describeError(errorView({ ...record.renameError, step: record.renameError.step === 'rename' ? undefined : record.renameError.step }), modules.service.describe)}`
            : ''),
      );
      return 0;
    } finally {
      context.close();
    }
  },
};

/** How `ensure` obtained an id, by the record's source. */
const OBTAINED_NOW: Record<string, string> = {
  created: 'created now',
  existing: 'obtained now: the partner already had a segment of that name',
  lookup: 'obtained now: found at the partner by name',
  implicit: 'recorded now: the name is the id',
  adopted: 'adopted by an operator',
};

function ensureFailure(
  modules: ConnectorModules,
  error: unknown,
  platformId: number,
  audience: Audience,
  where: string,
): Error {
  const { SegmentRefusedError, SegmentNotReadyError, describe } = modules.service;
  const subject = `platform ${platformId}, audience ${audience.id}`;
  if (error instanceof SegmentRefusedError) {
    return new CliError(
      `${subject}: ${error.message}\n` +
        'Fix the cause (connector config, credentials, the audience name), then run again with --retry-failed.',
      { cause: error },
    );
  }
  if (error instanceof SegmentNotReadyError) {
    if (error.reason === 'possibleDuplicate') {
      return new CliError(`${subject}: needs an operator: ${error.message}`, { cause: error });
    }
    const last = describeError(errorView(error.record?.lastError), describe);
    const detail = error.record?.lastError && !error.message.includes(last) ? `; last error: ${last}` : '';
    const when =
      error.retryAt === undefined ? 'retry' : `retry after ${new Date(error.retryAt).toISOString()}`;
    return new CliError(`${subject}: not ready yet, ${when}: ${error.message}${detail}`, { cause: error });
  }
  if (error instanceof CliError) return error;
  if (error instanceof modules.PartnerCallError) {
    return new CliError(`${subject}: ${error.message}`, { cause: error });
  }
  const name = (error as Error).name ?? 'Error';
  if (/^(ResourceNotFound|ConditionalCheckFailed|ProvisionedThroughputExceeded|AccessDenied)/.test(name)) {
    return new CliError(`cannot use ${where}: ${name}: ${(error as Error).message}`, { cause: error });
  }
  return error as Error;
}

// ---------------------------------------------------------------------------------------------

export const segmentsResolveCommand: Command = {
  name: 'segments resolve',
  summary:
    'Settle a segment flagged possibleDuplicate or unresolved: adopt the partner id, or confirm a new create',
  usage: '--platform <id> --audience <id> (--adopt <partnerSegmentId> | --create) [--json] [--env <name>]',
  help: [
    'options:',
    '  --platform <id>      the platform',
    '  --audience <id>      the DMP audience',
    "  --adopt <id>         this partner segment is the audience's (found at the partner): the record",
    '                       becomes ready with it; an id it replaces is kept as an orphan',
    '  --create             the partner holds no segment of the audience (checked): create it now',
    ...TARGET_HELP,
    '  --json               {"platformId", "audienceId", "partnerSegmentId", "state", "source"}',
    '',
    'A segment is unresolved when a create may have been carried out by the partner (a 5xx, a',
    'timeout, a reset after it was sent) and the connector can neither look it up by name nor',
    'repeat it safely. Look for the segment at the partner (by its name, see dmp segments), then',
    'adopt its id, or confirm that there is none. Both refuse while a caller holds the lease.',
  ].join('\n'),
  options: {
    ...TARGET_OPTIONS,
    platform: { type: 'string' },
    audience: { type: 'string' },
    adopt: { type: 'string' },
    create: { type: 'boolean', default: false },
  },
  async run({ values, json, io }) {
    const platformOption = stringOption(values, 'platform');
    const audienceId = stringOption(values, 'audience');
    const adopt = stringOption(values, 'adopt');
    const create = values['create'] === true;
    if (platformOption === undefined) throw new UsageError('--platform is required');
    if (audienceId === undefined) throw new UsageError('--audience is required');
    if ((adopt === undefined) === !create)
      throw new UsageError('give exactly one of --adopt <id> and --create');
    if (adopt !== undefined && (asSegmentId(adopt) === undefined || !/^[\x21-\x7e]+$/.test(adopt))) {
      throw new UsageError('--adopt: a partner segment id (printable ASCII, 1 to 256 characters)');
    }
    const platformId = parsePlatformId(platformOption);

    const modules = await loadConnectorModules();
    const context = CliContext.open(targetFlags(values), io.env);
    try {
      const { store, table } = await context.segmentStore();
      const record = await store.get(platformId, audienceId);
      if (!record) {
        throw new CliError(
          `platform ${platformId}, audience ${audienceId}: no segment in ${table.description}`,
        );
      }
      const subject = `platform ${platformId}, audience ${audienceId}`;
      let result: SegmentRecord;
      if (adopt !== undefined) {
        const outcome = await modules.service.adoptPartnerSegment(
          store,
          platformId,
          audienceId,
          adopt,
          Date.now(),
        );
        if (!outcome.adopted) {
          throw new CliError(
            outcome.reason === 'claimed'
              ? `${subject}: partner segment ${adopt} already belongs to audience ${outcome.holder}`
              : `${subject}: a caller holds the creation lease; try again when it is settled`,
          );
        }
        result = outcome.record;
      } else {
        if (record.state !== 'unresolved') {
          throw new CliError(
            `${subject}: nothing to confirm (state ${record.state}); 'dmp segments ensure' creates what is missing`,
          );
        }
        const platform = findConnectedPlatform(context.runtimeConfig(), platformId);
        const { service } = await context.segmentService();
        const audience: Audience = { id: record.audienceId, name: record.audienceName, kind: record.kind };
        try {
          result = (await service.ensure(platform, audience, { confirmCreate: true })).record;
        } catch (error) {
          throw ensureFailure(modules, error, platformId, audience, table.description);
        }
      }
      if (json) {
        io.stdout(
          JSON.stringify(
            {
              platformId,
              audienceId,
              partnerSegmentId: result.partnerSegmentId ?? null,
              state: result.state,
              source: result.source ?? null,
              possibleDuplicate: result.possibleDuplicate,
            },
            null,
            2,
          ),
        );
        return 0;
      }
      io.stdout(
        `${subject}: partner segment ${result.partnerSegmentId} (${OBTAINED_NOW[result.source ?? ''] ?? result.source})` +
          ((result.orphans ?? []).length > 0
            ? `\nnote: orphan partner segments of this audience: ${(result.orphans ?? []).map((o) => o.partnerSegmentId).join(', ')} (delete them at the partner if unused)`
            : ''),
      );
      return 0;
    } finally {
      context.close();
    }
  },
};

import { markdownTable } from '../registry.ts';
import {
  MEMBERSHIP_DESIGN,
  perSecond,
  REFERENCE_LOAD,
  SECRET_CACHE_SECONDS,
  SYNC_MIX,
  SYNC_SECRETS_PER_CONTAINER,
  syncAssumptions,
} from './inputs.ts';
import { membershipWork, mixWork, type SyncCallbackWork, syncCallbackWork, type Work } from './model.ts';
import type { Prices } from './prices.ts';

/**
 * What breaks first at 1x, 10x and 1000x a large DMP's month (1 billion syncs, 10 billion
 * membership changes): each AWS or partner limit against the demand the cost model's work implies
 * at the peak hour. Pure arithmetic; docs/scaling.md holds the rendered block (rewritten by
 * `npm run bench`, checked by test/unit/scaling.test.ts) and explains the changes that move each
 * limit.
 */

/** Default quotas (us-east-1) as AWS documents them; the partner's is an assumption. */
export const LIMITS = {
  apiGatewayRps: {
    value: 10_000,
    what: 'API Gateway account throttle, requests/s per region (burst 5,000)',
    source: 'https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html',
  },
  lambdaConcurrency: {
    value: 1_000,
    what: 'Lambda concurrent executions per account and region',
    source: 'https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html',
  },
  dynamoTableWru: {
    value: 40_000,
    what: 'DynamoDB on-demand table, write units/s (table-level default maximum)',
    source: 'https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html',
  },
  dynamoTableRru: {
    value: 40_000,
    what: 'DynamoDB on-demand table, read units/s (table-level default maximum)',
    source: 'https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html',
  },
  partitionWcu: {
    value: 1_000,
    what: 'DynamoDB, write units/s on one partition key (1 KB writes)',
    source: 'https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html',
  },
  partitionRcu: {
    value: 3_000,
    what: 'DynamoDB, read units/s on one partition key',
    source: 'https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html',
  },
  sqsInFlight: {
    value: 120_000,
    what: 'SQS standard queue, messages in flight (received, not deleted)',
    source: 'https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html',
  },
  eventSourceConcurrency: {
    value: 1_000,
    what: 'Lambda SQS event source, maximum concurrency setting (2-1000)',
    source: 'https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html',
  },
  secretsManagerRps: {
    value: 10_000,
    what: 'Secrets Manager GetSecretValue, requests/s per region',
    source: 'https://docs.aws.amazon.com/secretsmanager/latest/userguide/reference_limits.html',
  },
  partnerRps: {
    value: 100,
    what: "one partner's API, requests/s (ASSUMED: a common order of magnitude; per platform in practice)",
    source: 'assumption',
  },
} as const;

export type LimitId = keyof typeof LIMITS;

/** Traffic is not flat: the peak hour against the month's average (assumed). */
export const PEAK_TO_AVERAGE = 3;
/** Share of all membership changes that go to the largest segment of one platform (assumed). */
export const LARGEST_SEGMENT_SHARE = 0.1;
export const SCALES = [1, 10, 1000] as const;

/** Per-unit figures the scaling arithmetic needs, taken from the cost model's work. */
export interface ScalingInputs {
  readonly syncLambdaMs: number;
  readonly syncWriteUnits: number;
  readonly syncReadUnits: number;
  readonly syncSecretsPerContainer: number;
  readonly secretCacheSeconds: number;
  /** Per membership: the mapping lookup (mapping table), and state read and write (population table). */
  readonly membershipMappingReadUnits: number;
  readonly membershipStateReadUnits: number;
  readonly membershipStateWriteUnits: number;
  /** Memberships per route and per deliver invocation, and their durations. */
  readonly usersPerRouteInvocation: number;
  readonly routeMs: number;
  readonly usersPerDeliverInvocation: number;
  readonly deliverMs: number;
  readonly usersPerPartnerCall: number;
  readonly usersPerDeliveryMessage: number;
}

/** The measured sync work (exact counts) the inputs come from, as docs/scaling.md records them. */
export type MeasuredSyncMix = Readonly<Record<keyof typeof SYNC_MIX, SyncCallbackWork>>;

export function syncMixWork(measured: MeasuredSyncMix, prices: Prices): Work {
  const assumptions = syncAssumptions();
  return mixWork(
    (Object.entries(SYNC_MIX) as [keyof typeof SYNC_MIX, number][]).map(([kind, weight]) => ({
      weight,
      work: syncCallbackWork(measured[kind], assumptions, prices),
    })),
  );
}

export function scalingInputs(measured: MeasuredSyncMix, prices: Prices): ScalingInputs {
  const sync = syncMixWork(measured, prices);
  const design = MEMBERSHIP_DESIGN;
  const membership = membershipWork(design, prices);
  const usersPerRouteInvocation = design.usersPerMessage * design.messagesPerRouteInvocation;
  return {
    syncLambdaMs: sync.lambdaBilledMs,
    syncWriteUnits: sync.dynamoWriteUnits,
    syncReadUnits: sync.dynamoReadUnits,
    syncSecretsPerContainer: SYNC_SECRETS_PER_CONTAINER,
    secretCacheSeconds: SECRET_CACHE_SECONDS,
    membershipMappingReadUnits: design.mappingReadUnits,
    membershipStateReadUnits: design.stateReadUnitsPerMembership,
    membershipStateWriteUnits: membership.dynamoWriteUnits,
    usersPerRouteInvocation,
    routeMs: design.routeFixedMs + (design.routeMsPer1000Users * usersPerRouteInvocation) / 1000,
    usersPerDeliverInvocation: design.usersPerPartnerCall * design.partnerCallsPerDeliverInvocation,
    deliverMs: design.deliverMsPerInvocation,
    usersPerPartnerCall: design.usersPerPartnerCall,
    usersPerDeliveryMessage: design.usersPerDeliveryMessage,
  };
}

export interface Demand {
  readonly limit: LimitId;
  /** What consumes the limit, in words. */
  readonly what: string;
  readonly unit: string;
  /** A counterfactual shown for contrast (the same load without a design choice), not a target. */
  readonly whatIf?: boolean;
  /** Demand at the peak for each of SCALES. */
  readonly atScale: readonly number[];
}

export function demands(inputs: ScalingInputs): Demand[] {
  const at = (fn: (syncsPerSecond: number, membershipsPerSecond: number) => number) =>
    SCALES.map((scale) =>
      fn(
        perSecond(REFERENCE_LOAD.syncsPerMonth) * scale * PEAK_TO_AVERAGE,
        perSecond(REFERENCE_LOAD.membershipChangesPerMonth) * scale * PEAK_TO_AVERAGE,
      ),
    );
  const syncConcurrency = (syncs: number) => (syncs * inputs.syncLambdaMs) / 1000;
  const routeConcurrency = (members: number) =>
    ((members / inputs.usersPerRouteInvocation) * inputs.routeMs) / 1000;
  const deliverConcurrency = (members: number) =>
    ((members / inputs.usersPerDeliverInvocation) * inputs.deliverMs) / 1000;
  return [
    {
      limit: 'apiGatewayRps',
      what: '/uid callbacks per second',
      unit: 'req/s',
      atScale: at((syncs) => syncs),
    },
    {
      limit: 'lambdaConcurrency',
      what: 'user-sync + route + deliver executions in flight',
      unit: 'executions',
      atScale: at(
        (syncs, members) => syncConcurrency(syncs) + routeConcurrency(members) + deliverConcurrency(members),
      ),
    },
    {
      limit: 'dynamoTableWru',
      what: 'mapping table writes (syncs)',
      unit: 'WRU/s',
      atScale: at((syncs) => syncs * inputs.syncWriteUnits),
    },
    {
      limit: 'dynamoTableRru',
      what: "mapping table reads (syncs, and the route step's lookups)",
      unit: 'RRU/s',
      atScale: at(
        (syncs, members) => syncs * inputs.syncReadUnits + members * inputs.membershipMappingReadUnits,
      ),
    },
    {
      limit: 'dynamoTableRru',
      what: 'population table reads (per-membership state)',
      unit: 'RRU/s',
      atScale: at((_, members) => members * inputs.membershipStateReadUnits),
    },
    {
      limit: 'dynamoTableWru',
      what: 'population table writes (per-membership state)',
      unit: 'WRU/s',
      atScale: at((_, members) => members * inputs.membershipStateWriteUnits),
    },
    {
      limit: 'partitionWcu',
      what: 'count item of the largest segment (one update per deliver invocation)',
      unit: 'WRU/s',
      atScale: at((_, members) => (members * LARGEST_SEGMENT_SHARE) / inputs.usersPerDeliverInvocation),
    },
    {
      limit: 'sqsInFlight',
      what: 'delivery queue of one platform, messages in flight',
      unit: 'messages',
      atScale: at((_, members) => ((members / inputs.usersPerDeliveryMessage) * inputs.deliverMs) / 1000),
    },
    {
      limit: 'eventSourceConcurrency',
      what: "deliver executions of one platform's queue",
      unit: 'executions',
      atScale: at((_, members) => deliverConcurrency(members)),
    },
    {
      limit: 'partnerRps',
      what: 'partner calls per second, all memberships on one platform',
      unit: 'calls/s',
      atScale: at((_, members) => members / inputs.usersPerPartnerCall),
    },
    {
      limit: 'partnerRps',
      what: 'partner calls per second, the same on a no-batch platform (one user per call)',
      unit: 'calls/s',
      atScale: at((_, members) => members),
    },
    {
      limit: 'secretsManagerRps',
      what: 'secret reads, cached 5 min per container',
      unit: 'calls/s',
      atScale: at(
        (syncs) => (syncConcurrency(syncs) * inputs.syncSecretsPerContainer) / inputs.secretCacheSeconds,
      ),
    },
    {
      limit: 'secretsManagerRps',
      what: 'secret reads if every request read them (no cache)',
      unit: 'calls/s',
      whatIf: true,
      atScale: at((syncs) => syncs * inputs.syncSecretsPerContainer),
    },
  ];
}

/** The smallest scale (of SCALES) at which the demand exceeds the limit, or undefined. */
export function firstBreak(demand: Demand): number | undefined {
  const limit = LIMITS[demand.limit].value;
  const index = demand.atScale.findIndex((value) => value > limit);
  return index === -1 ? undefined : SCALES[index];
}

const fmt = (value: number) =>
  value >= 100 ? Math.round(value).toLocaleString('en-US') : value >= 1 ? value.toFixed(1) : value.toFixed(2);

export const BLOCK_BEGIN =
  '<!-- scaling:begin (written by `npm run bench`, bench/cost/scaling.ts; do not edit) -->';
export const BLOCK_END = '<!-- scaling:end -->';

/** The generated block of docs/scaling.md: the inputs it was computed from, then the table. */
export function renderScalingBlock(measured: MeasuredSyncMix, prices: Prices): string {
  const inputs = scalingInputs(measured, prices);
  const rows = demands(inputs).map((demand) => {
    const limit = LIMITS[demand.limit];
    const breaks = firstBreak(demand);
    return [
      limit.what,
      fmt(limit.value),
      demand.what,
      ...demand.atScale.map((value) => `${fmt(value)} (${Math.round((value / limit.value) * 100)} %)`),
      breaks === undefined ? 'no' : `**${breaks}x**`,
    ];
  });
  const syncs = perSecond(REFERENCE_LOAD.syncsPerMonth);
  const members = perSecond(REFERENCE_LOAD.membershipChangesPerMonth);
  return [
    BLOCK_BEGIN,
    '',
    `1x = ${REFERENCE_LOAD.syncsPerMonth.toExponential(0)} syncs and ${REFERENCE_LOAD.membershipChangesPerMonth.toExponential(0)} membership changes a month: ${fmt(syncs)} syncs/s and ${fmt(members)} memberships/s on average, x${PEAK_TO_AVERAGE} at the peak (assumed). Demand at the peak, and its share of the limit:`,
    '',
    ...markdownTable(
      ['limit (default)', 'value', 'consumed by', ...SCALES.map((scale) => `${scale}x`), 'breaks at'],
      rows,
    ),
    '',
    'Per-unit inputs, from the cost model (bench/cost/model.ts) applied to the sync work measured by `npm run bench` (below) and the population design figures (bench/cost/inputs.ts):',
    '',
    '```json',
    JSON.stringify({ measuredSyncWork: measured, inputs }, null, 2),
    '```',
    '',
    BLOCK_END,
  ].join('\n');
}

/** Replaces the generated block of a scaling document. */
export function replaceScalingBlock(document: string, block: string): string {
  const begin = document.indexOf(BLOCK_BEGIN);
  const end = document.indexOf(BLOCK_END);
  if (begin === -1 || end === -1 || end < begin)
    throw new Error('docs/scaling.md has no generated block markers');
  return `${document.slice(0, begin)}${block}${document.slice(end + BLOCK_END.length)}`;
}

/** The measured-work record embedded in a rendered block (for the consistency test). */
export function measuredFromBlock(document: string): MeasuredSyncMix {
  const begin = document.indexOf(BLOCK_BEGIN);
  const json = /```json\n([\s\S]*?)\n```/.exec(document.slice(begin));
  if (begin === -1 || !json?.[1]) throw new Error('docs/scaling.md has no generated block with its inputs');
  return (JSON.parse(json[1]) as { measuredSyncWork: MeasuredSyncMix }).measuredSyncWork;
}

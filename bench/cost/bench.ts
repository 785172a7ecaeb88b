import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FUNCTIONS, type FunctionRuntimeSettings, runtimeOf } from '../../src/infra/resources.ts';
import { REPO_ROOT } from '../fixtures.ts';
import { type MembershipWorkMeasured, membershipWorkOfThisRun } from '../population-work.ts';
import type { BenchModule, Figure } from '../registry.ts';
import { type RequestWork, type SyncKind, syncWorkOfThisRun } from '../sync-work.ts';
import {
  MAPPING_STREAM_SHARDS,
  MEMBERSHIP_BYTES,
  MEMBERSHIP_WORK_USERS,
  membershipPipelineOf,
  PARTNER_REQUEST_OVERHEAD_BYTES,
  PLATFORM_LOG_BYTES_AT_INFO,
  perSecond,
  REFERENCE_LOAD,
  SYNC_MIX,
  streamConsumerAssumptions,
  syncAssumptions,
} from './inputs.ts';
import {
  addWork,
  COST_LINES,
  type Cost,
  costOf,
  type MembershipPipeline,
  membershipFloorWork,
  membershipWork,
  mixWork,
  perMillion,
  type StreamConsumerAssumptions,
  type SyncAssumptions,
  streamConsumerWork,
  syncCallbackWork,
  syncFloorWork,
  type Work,
  xraySampledFraction,
} from './model.ts';
import { loadPrices, type Prices } from './prices.ts';
import {
  demands,
  firstBreak,
  LIMITS,
  type MeasuredSyncMix,
  renderScalingBlock,
  replaceScalingBlock,
  SCALES,
  scalingInputs,
} from './scaling.ts';

/**
 * Section "cost" of `npm run bench`: dollars per million syncs from the work measured in this run
 * (bench/sync-work.ts) and per million memberships from the work measured in this run
 * (bench/population-work.ts), each beside its floor, and what three design choices cost or save.
 * Prices: bench/cost/prices.json.
 */

/** Targets of the issue. */
export const SYNC_TARGET_RATIO = 1.1;
export const MEMBERSHIP_TARGET_DOLLARS_PER_MILLION = 1;

const money = (dollars: number) => `$${dollars.toFixed(4)}`;

/** "api $1.0000, lambda req $0.2000, ..." for the lines that cost something. */
export function breakdown(cost: Cost): string {
  return COST_LINES.filter((line) => cost.lines[line] > 0)
    .map((line) => `${line} ${money(cost.lines[line] * 1e6)}`)
    .join(', ');
}

/** A change to the deployed design, priced on the same measured work. */
export interface SyncLever {
  readonly name: string;
  readonly assumptions?: Partial<SyncAssumptions>;
  readonly request?: (request: RequestWork) => RequestWork;
  /** For the mapping stream's consumer (release-pending). */
  readonly stream?: Partial<StreamConsumerAssumptions>;
}

/**
 * Records per second reaching the stream consumer at the reference load: the mix's syncs per
 * second times the records each kind's request put past the filter (measured).
 */
export function streamRecordsPerSecond(measured: readonly RequestWork[], syncsPerMonth: number): number {
  const byKind = new Map(measured.map((request) => [request.kind, request]));
  const perSync = (Object.entries(SYNC_MIX) as [SyncKind, number][]).reduce(
    (sum, [kind, share]) => sum + share * (byKind.get(kind)?.stream.delivered ?? 0),
    0,
  );
  return perSecond(syncsPerMonth) * perSync;
}

/** One callback's work: the request's own, and the stream consumer's for the records it wrote. */
export function syncWorkWithStream(
  request: RequestWork,
  assumptions: SyncAssumptions,
  stream: StreamConsumerAssumptions,
  prices: Prices,
): Work {
  return addWork(
    syncCallbackWork(request, assumptions, prices),
    streamConsumerWork(request.stream, stream, prices),
  );
}

const getItemUnits = (request: RequestWork) => request.unitsByCommand['GetItemCommand'] ?? 0;

/**
 * What each choice of the deployed design costs or saves, on the steady-state mix: the
 * alternatives to what FUNCTIONS.userSync.runtime deploys (bench/cost/inputs.ts reads the same
 * settings), and two store choices.
 */
export function syncLevers(
  runtime: FunctionRuntimeSettings = runtimeOf(FUNCTIONS.userSync),
  release: FunctionRuntimeSettings = runtimeOf(FUNCTIONS.releasePending),
): SyncLever[] {
  const atReferenceLoad = xraySampledFraction(perSecond(REFERENCE_LOAD.syncsPerMonth));
  return [
    {
      // Every record of the mapping table's stream invokes release-pending (refreshes, replay
      // guards): the handler skips them, at no DynamoDB cost, but they share its invocations.
      name: 'no filter on the mapping stream (every record reaches release-pending)',
      request: (request) => ({
        ...request,
        stream: { ...request.stream, delivered: request.stream.records },
      }),
    },
    // release-pending runs with the project's default runtime (active tracing, Lambda's platform
    // lines at INFO): what user-sync's settings would save on it.
    ...(release.tracing === 'active' || release.systemLogLevel === 'INFO'
      ? [
          {
            name: 'release-pending without X-Ray and platform log lines (as user-sync; not deployed)',
            stream: { xraySampledFraction: 0, platformLogBytesPerInvocation: 0 },
          },
        ]
      : []),
    {
      // Without the read-then-decide: every callback is one unconditional write and no GetItem.
      name: 'every callback writes blind (no GetItem, no skip of unchanged)',
      request: (request) => ({
        ...request,
        // Its GetItem goes; a callback that wrote nothing writes once instead.
        dynamoCalls:
          request.dynamoCalls - (request.calls['GetItemCommand'] ?? 0) + (request.writeUnits > 0 ? 0 : 1),
        readUnits: request.readUnits - getItemUnits(request),
        writeUnits: Math.max(1, request.writeUnits),
      }),
    },
    {
      name: 'GetItem eventually consistent (not deployed: the read stays exact)',
      request: (request) => ({ ...request, readUnits: request.readUnits - getItemUnits(request) / 2 }),
    },
    runtime.tracing === 'active'
      ? { name: 'no X-Ray active tracing', assumptions: { xraySampledFraction: 0 } }
      : {
          name: 'X-Ray active tracing on (not deployed on user-sync)',
          assumptions: { xraySampledFraction: atReferenceLoad },
        },
    runtime.systemLogLevel === 'INFO'
      ? {
          name: 'no Lambda platform log lines (systemLogLevel WARN)',
          assumptions: { platformLogBytesPerInvocation: 0 },
        }
      : {
          name: 'Lambda platform log lines (systemLogLevel INFO, not deployed on user-sync)',
          assumptions: { platformLogBytesPerInvocation: PLATFORM_LOG_BYTES_AT_INFO },
        },
    {
      name: 'no per-request INFO line (applicationLogLevel WARN: no funnel metrics either)',
      request: (request) => ({ ...request, logBytes: request.emfBytes }),
    },
  ];
}

export interface SyncCosts {
  readonly perKind: readonly { kind: SyncKind; work: Work; cost: Cost; floor: Cost }[];
  readonly mix: { work: Work; cost: Cost; floor: Cost };
  /** What the mapping stream's consumer (release-pending) adds to the mix, and its assumptions. */
  readonly stream: { cost: Cost; assumptions: StreamConsumerAssumptions; recordsPerSecond: number };
  /** The mix priced with each lever pulled alone. */
  readonly levers: readonly { name: string; cost: Cost }[];
  /** The mix with the project's default runtime (active tracing, platform lines at INFO). */
  readonly defaultRuntime: Cost;
}

function mixOf(measured: readonly RequestWork[], toWork: (request: RequestWork) => Work): Work {
  const byKind = new Map(measured.map((request) => [request.kind, request]));
  return mixWork(
    (Object.entries(SYNC_MIX) as [SyncKind, number][]).map(([kind, weight]) => {
      const request = byKind.get(kind);
      if (!request) throw new Error(`cost model: no measured work for ${kind}`);
      return { weight, work: toWork(request) };
    }),
  );
}

export function syncCosts(measured: readonly RequestWork[], prices: Prices): SyncCosts {
  const assumptions = syncAssumptions();
  const recordsPerSecond = streamRecordsPerSecond(measured, REFERENCE_LOAD.syncsPerMonth);
  const stream = streamConsumerAssumptions(recordsPerSecond);
  const priced = (levers: readonly SyncLever[]) => {
    const adjusted: SyncAssumptions = Object.assign(
      {},
      assumptions,
      ...levers.map((lever) => lever.assumptions),
    );
    const requests = measured.map((request) =>
      levers.reduce((current, lever) => lever.request?.(current) ?? current, request),
    );
    // The records reaching the consumer set how many share an invocation.
    const consumer: StreamConsumerAssumptions = Object.assign(
      streamConsumerAssumptions(streamRecordsPerSecond(requests, REFERENCE_LOAD.syncsPerMonth)),
      ...levers.map((lever) => lever.stream),
    );
    const work = mixOf(requests, (request) => syncWorkWithStream(request, adjusted, consumer, prices));
    return costOf(work, prices);
  };
  const perKind = measured
    .filter((request) => request.kind !== 'pixel')
    .map((request) => {
      const work = syncWorkWithStream(request, assumptions, stream, prices);
      return {
        kind: request.kind,
        work,
        cost: costOf(work, prices),
        floor: costOf(syncFloorWork(request.responseBytes, assumptions, prices), prices),
      };
    });
  const work = mixOf(measured, (request) => syncWorkWithStream(request, assumptions, stream, prices));
  const floorWork = mixOf(measured, (request) => syncFloorWork(request.responseBytes, assumptions, prices));
  const streamWork = mixOf(measured, (request) => streamConsumerWork(request.stream, stream, prices));
  return {
    perKind,
    mix: { work, cost: costOf(work, prices), floor: costOf(floorWork, prices) },
    stream: { cost: costOf(streamWork, prices), assumptions: stream, recordsPerSecond },
    levers: syncLevers().map((lever) => ({ name: lever.name, cost: priced([lever]) })),
    defaultRuntime: priced([
      {
        name: "the project's default runtime",
        assumptions: {
          xraySampledFraction: xraySampledFraction(perSecond(REFERENCE_LOAD.syncsPerMonth)),
          platformLogBytesPerInvocation: PLATFORM_LOG_BYTES_AT_INFO,
        },
      },
    ]),
  };
}

export interface MembershipCosts {
  readonly design: Cost;
  readonly floor: Cost;
  readonly onePerMessage: Cost;
  readonly onePerCall: Cost;
  readonly withoutState: Cost;
}

export function membershipCosts(prices: Prices, design: MembershipPipeline): MembershipCosts {
  return {
    design: costOf(membershipWork(design, prices), prices),
    floor: costOf(membershipFloorWork(design, prices), prices),
    onePerMessage: costOf(
      membershipWork(
        {
          ...design,
          usersPerMessage: 1,
          messageBytes: MEMBERSHIP_BYTES.perUserInMessage + MEMBERSHIP_BYTES.messageEnvelope,
        },
        prices,
      ),
      prices,
    ),
    // A no-batch platform: the same packed delivery message, one partner call per user (50 at a
    // time, ~200 ms each) in one invocation.
    onePerCall: costOf(
      membershipWork(
        {
          ...design,
          usersPerPartnerCall: 1,
          partnerCallsPerDeliverInvocation: design.usersPerDeliveryMessage,
          partnerRequestBytes: MEMBERSHIP_BYTES.perPartnerItem + MEMBERSHIP_BYTES.partnerEnvelope,
          deliverMsPerInvocation: (design.usersPerDeliveryMessage / 50) * 200,
        },
        prices,
      ),
      prices,
    ),
    withoutState: costOf(
      membershipWork({ ...design, stateReadUnitsPerMembership: 0, stateWriteUnitsPerMembership: 0 }, prices),
      prices,
    ),
  };
}

/** What the membership row is made of: the measured counts, and what is still assumed. */
export function membershipNotes(measured: MembershipWorkMeasured, pipeline: MembershipPipeline): string[] {
  const n = measured.memberships;
  const units = Object.entries(measured.dynamoByTable)
    .map(
      ([table, { read, write }]) => `${table} ${(read / n).toFixed(4)} RRU + ${(write / n).toFixed(4)} WRU`,
    )
    .join(', ');
  const calls = (record: Readonly<Record<string, number>>) =>
    Object.entries(record)
      .map(([command, count]) => `${command.replace(/Command$/, '')} ${count}`)
      .join(', ');
  return [
    `membership, measured per membership over ${n.toLocaleString('en-US')} (bench/population-work.ts): ${units}; DynamoDB calls ${calls(measured.dynamoCalls)}; ${pipeline.usersPerMessage.toFixed(0)} users/audience message of ${(pipeline.messageBytes / 1024).toFixed(1)} KiB, ${pipeline.usersPerDeliveryMessage.toFixed(0)} users/delivery message of ${(pipeline.deliveryMessageBytes / 1024).toFixed(1)} KiB, ${pipeline.usersPerPartnerCall.toFixed(0)} users/partner call of ${(measured.partnerBodyBytes / Math.max(1, measured.partnerCalls) / 1024).toFixed(1)} KiB body`,
    `membership, measured: route ${measured.route.invocations} invocations (${pipeline.messagesPerRouteInvocation.toFixed(1)} messages, ${pipeline.routeFixedMs.toFixed(0)} ms each), deliver ${measured.deliver.invocations} (${(measured.deliver.records / Math.max(1, measured.deliver.invocations)).toFixed(1)} messages, ${pipeline.deliverMsPerInvocation.toFixed(0)} ms each), priced at ${pipeline.routeMemoryMb} / ${pipeline.deliverMemoryMb} MB arm64; SQS calls of the functions ${calls(measured.sqsCalls)} (${measured.functionSqsRequests} billed), producer ${measured.producerSqsRequests} billed; log ${pipeline.logBytesPerInvocation.toFixed(0)} B/invocation`,
    `membership, assumed: durations are this machine's against local stand-ins (not AWS's), Lambda's SQS pollers receive 10 messages a call, platform log lines ${pipeline.platformLogBytesPerInvocation} B/invocation and X-Ray ${pipeline.tracing ? 'sampled' : 'off'} as deployed, at ${REFERENCE_LOAD.membershipChangesPerMonth.toExponential(0)} memberships/month, ${PARTNER_REQUEST_OVERHEAD_BYTES} B of headers per partner request`,
  ];
}

/** What the stream consumer's line is made of: measured per kind, and what is assumed. */
export function streamNotes(measured: readonly RequestWork[], sync: SyncCosts, prices: Prices): string[] {
  const a = sync.stream.assumptions;
  const perKind = measured
    .map(({ kind, stream }) => {
      const calls = Object.entries(stream.calls)
        .map(([command, count]) => `${count} ${command.replace(/Command$/, '')}`)
        .join(' + ');
      return `${kind} ${stream.delivered} of ${stream.records}${stream.delivered > 0 ? ` (${calls || 'no DynamoDB call'}; ${stream.readUnits} RRU, ${stream.writeUnits} WRU; ${stream.logBytes} B logged; ${stream.ms.toFixed(1)} ms here)` : ''}`;
    })
    .join(', ');
  const without = sync.mix.cost.total - sync.stream.cost.total;
  return [
    `stream consumer, measured (bench/stream-work.ts): records a request put on the mapping stream that pass RELEASE_STREAM_FILTERS, of all it put there: ${perKind}`,
    `stream consumer, assumed: ${sync.stream.recordsPerSecond.toFixed(0)} records/s at ${REFERENCE_LOAD.syncsPerMonth.toExponential(0)} syncs/month over ${MAPPING_STREAM_SHARDS} shards: ${a.recordsPerInvocation.toFixed(1)} records per invocation; ${a.cpuMsPerInvocation} ms CPU + ${a.dynamoRoundTripMs} ms per round of ${a.concurrentCalls} calls, at ${a.memoryMb} MB arm64; platform log lines ${a.platformLogBytesPerInvocation} B and X-Ray share ${(a.xraySampledFraction * 100).toFixed(1)} % per invocation (as deployed); stream reads by a Lambda trigger $${prices.dynamodbStreams.lambdaTriggerReadsPerMillion}/M (bench/cost/prices.json: dynamodbStreams)`,
    `stream consumer, per million syncs: ${breakdown(sync.stream.cost)}; the mix without it ${money(without * 1e6)}/M, ${(without / sync.mix.floor.total).toFixed(3)}x the floor; with it ${(sync.mix.cost.total / sync.mix.floor.total).toFixed(3)}x (target ${SYNC_TARGET_RATIO}x: ${sync.mix.cost.total / sync.mix.floor.total <= SYNC_TARGET_RATIO ? 'met' : 'NOT met'})`,
  ];
}

function versusFloor(name: string, cost: Cost, floor: Cost, unit: string, target?: Figure['target']): Figure {
  return {
    name,
    value: perMillion(cost),
    unit,
    baseline: perMillion(floor),
    ratio: cost.total / floor.total,
    ...(target ? { target } : {}),
  };
}

export const costBench: BenchModule = {
  id: 'cost',
  describe: 'cost model: $ per million syncs and memberships (work measured in this run), against the floor',
  async run({ quick }) {
    const prices = loadPrices();
    const measured = await syncWorkOfThisRun();
    const sync = syncCosts(measured, prices);
    const memberWork = await membershipWorkOfThisRun(
      quick ? MEMBERSHIP_WORK_USERS.quick : MEMBERSHIP_WORK_USERS.full,
    );
    const pipeline = membershipPipelineOf(memberWork);
    const members = membershipCosts(prices, pipeline);
    const syncTarget = { on: 'ratio', atMost: SYNC_TARGET_RATIO } as const;
    const unitSync = '$/M syncs';
    const unitMember = '$/M memberships';
    const pixel = measured.find((request) => request.kind === 'pixel');
    const pixelCost = pixel ? costOf(syncCallbackWork(pixel, syncAssumptions(), prices), prices) : undefined;

    const figures: Figure[] = [
      ...sync.perKind.map(({ kind, cost, floor }) =>
        versusFloor(`6  /uid ${kind}, per million`, cost, floor, unitSync, syncTarget),
      ),
      versusFloor(
        '6  /uid, steady-state mix (assumed shares)',
        sync.mix.cost,
        sync.mix.floor,
        unitSync,
        syncTarget,
      ),
      {
        // Its share of the mix, against the mix's floor: the mix's ratio less this is the ratio
        // without the consumer.
        name: '6  mix, of which the mapping stream consumer (release-pending)',
        value: perMillion(sync.stream.cost),
        unit: unitSync,
        baseline: perMillion(sync.mix.floor),
        ratio: sync.stream.cost.total / sync.mix.floor.total,
      },
      ...sync.levers.map(({ name, cost }) => ({
        name: `6  mix, ${name}`,
        value: perMillion(cost),
        unit: unitSync,
        baseline: perMillion(sync.mix.cost),
        ratio: cost.total / sync.mix.cost.total,
      })),
      versusFloor(
        "6  mix with the project's default runtime (active tracing, Lambda platform lines)",
        sync.defaultRuntime,
        sync.mix.floor,
        unitSync,
      ),
      ...(pixelCost
        ? [{ name: '6  /sync pixel entry (once per chain)', value: perMillion(pixelCost), unit: '$/M' }]
        : []),
      versusFloor(
        `6  membership, measured (${memberWork.memberships.toLocaleString('en-US')} through the local stack)`,
        members.design,
        members.floor,
        unitMember,
        {
          on: 'value',
          atMost: MEMBERSHIP_TARGET_DOLLARS_PER_MILLION,
        },
      ),
      {
        name: '6  membership without per-membership state',
        value: perMillion(members.withoutState),
        unit: unitMember,
        baseline: perMillion(members.design),
        ratio: members.withoutState.total / members.design.total,
      },
      {
        name: '6  membership, 1 user per SQS message',
        value: perMillion(members.onePerMessage),
        unit: unitMember,
        baseline: perMillion(members.design),
        ratio: members.onePerMessage.total / members.design.total,
      },
      {
        name: '6  membership, 1 user per partner call',
        value: perMillion(members.onePerCall),
        unit: unitMember,
        baseline: perMillion(members.design),
        ratio: members.onePerCall.total / members.design.total,
      },
    ];
    const assumptions = syncAssumptions();
    const newKind = sync.perKind.find((entry) => entry.kind === 'new');
    const staticSigned = sync.perKind.find((entry) => entry.kind === 'signed-static-new');
    const notes = [
      `prices: ${prices.region} list prices recorded ${prices.recorded} (bench/cost/prices.json); baseline column = the floor, or for variants the design/mix they change`,
      `sync floor: 1 API request, 1 Lambda request of ${assumptions.dynamoRoundTripMs} ms at ${assumptions.memoryMb} MB arm64, 1 WRU, the same answer bytes; nothing else`,
      `user-sync as deployed (FUNCTIONS.userSync.runtime, applied by the CDK stack): tracing ${runtimeOf(FUNCTIONS.userSync).tracing}, systemLogLevel ${runtimeOf(FUNCTIONS.userSync).systemLogLevel}, metrics ${runtimeOf(FUNCTIONS.userSync).metrics}`,
      `sync assumptions (not measurable locally): DynamoDB round trip ${assumptions.dynamoRoundTripMs} ms, CPU ${assumptions.cpuMsPerRequest} ms/request, Lambda platform log lines ${assumptions.platformLogBytesPerInvocation} B/invocation, X-Ray sampled share ${(assumptions.xraySampledFraction * 100).toFixed(2)} % at ${REFERENCE_LOAD.syncsPerMonth.toExponential(0)} syncs/month, ${assumptions.secretCallsPerRequest.toFixed(5)} Secrets Manager calls/request; mix ${Object.entries(
        SYNC_MIX,
      )
        .map(([kind, share]) => `${kind} ${share}`)
        .join(', ')}`,
      ...(newKind
        ? [
            `/uid new, per million: ${breakdown(newKind.cost)}`,
            `its floor, per million: ${breakdown(newKind.floor)}`,
          ]
        : []),
      `mix, per million: ${breakdown(sync.mix.cost)}`,
      ...(newKind
        ? [
            `/uid new and changed: ${(newKind.cost.total / newKind.floor.total).toFixed(2)}x the floor on their own. Beyond it: the stream consumer's strongly consistent Query of the user's pending events (${money(newKind.cost.lines.dynamoReads * 1e6)}/M; it is what delivers an audience event that came before the user's sync, and must see the route's pending write) and the one outcome line per request (${money(newKind.cost.lines.logs * 1e6)}/M; the funnel metrics are read from it). The 1.1x target is read on the steady-state mix (what a million syncs cost); the kinds are shown with it so that a change of the mix can be judged`,
          ]
        : []),
      ...streamNotes(measured, sync, prices),
      ...(staticSigned
        ? [
            `/uid signed-static-new: ${(staticSigned.cost.total / staticSigned.floor.total).toFixed(2)}x the floor, the price of replay protection: a signature over the static token binds the URL to no browser, so each is claimed once in a replay guard (a second write); signed over the token /sync minted (signed-new) the callback is bound to the browser and needs none`,
          ]
        : []),
      `read-then-skip vs blind write: a strongly consistent GetItem (1 RRU, ${money(prices.dynamodbOnDemand.readUnitsPerMillion)}/M) saves a write (${money(prices.dynamodbOnDemand.writeUnitsPerMillion)}/M) on every unchanged callback: it pays off above ${((prices.dynamodbOnDemand.readUnitsPerMillion / prices.dynamodbOnDemand.writeUnitsPerMillion) * 100).toFixed(0)} % unchanged callbacks`,
      ...membershipNotes(memberWork, pipeline),
      `membership, per million: ${breakdown(members.design)}`,
      `membership floor, per million: ${breakdown(members.floor)}`,
    ];
    return {
      id: 'cost',
      title: `6. cost model, us-east-1 list prices of ${prices.recorded} (baseline: the zero-overhead floor)`,
      figures,
      notes,
    };
  },
};

export const SCALING_DOC = join(REPO_ROOT, 'docs', 'scaling.md');

/** The exact counts of the kinds the steady-state mix is made of, as the scaling block records them. */
export function measuredMix(measured: readonly RequestWork[]): MeasuredSyncMix {
  const pick = (kind: SyncKind) => {
    const request = measured.find((entry) => entry.kind === kind);
    if (!request) throw new Error(`scaling: no measured work for ${kind}`);
    const { dynamoCalls, readUnits, writeUnits, logBytes, responseBytes } = request;
    return { dynamoCalls, readUnits, writeUnits, logBytes, responseBytes };
  };
  return {
    new: pick('new'),
    refreshed: pick('refreshed'),
    changed: pick('changed'),
    unchanged: pick('unchanged'),
  };
}

/** Section "scaling": each limit against the peak demand at 10x; rewrites docs/scaling.md's block. */
export const scalingBench: BenchModule = {
  id: 'scaling',
  describe: "limits at 1x, 10x and 1000x a large DMP (docs/scaling.md), from the cost model's work",
  async run({ writeDocs }) {
    const prices = loadPrices();
    const mix = measuredMix(await syncWorkOfThisRun());
    const tenfold = SCALES.indexOf(10);
    const figures: Figure[] = demands(scalingInputs(mix, prices)).map((demand) => {
      const limit = LIMITS[demand.limit].value;
      const atTen = demand.atScale[tenfold] ?? Number.NaN;
      return {
        name: `7  ${demand.what}, peak at 10x`,
        value: atTen,
        unit: demand.unit,
        baseline: limit,
        ratio: atTen / limit,
        ...(demand.whatIf ? {} : { target: { on: 'ratio', atMost: 1 } as const }),
      };
    });
    const notes = demands(scalingInputs(mix, prices)).map((demand) => {
      const breaks = firstBreak(demand);
      return `${demand.what} vs ${LIMITS[demand.limit].what}: ${breaks === undefined ? 'fits at 1000x' : `exceeds it from ${breaks}x`}`;
    });
    if (writeDocs) {
      const document = await readFile(SCALING_DOC, 'utf8');
      await writeFile(SCALING_DOC, replaceScalingBlock(document, renderScalingBlock(mix, prices)));
      notes.push('docs/scaling.md: generated block rewritten');
    }
    return {
      id: 'scaling',
      title: '7. scaling: peak demand at 10x a large DMP against the default limit (docs/scaling.md)',
      figures,
      notes,
    };
  },
};

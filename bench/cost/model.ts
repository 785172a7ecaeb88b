import type { Prices } from './prices.ts';

/**
 * The cost model: dollars for a unit of work (one `/uid` sync callback, one membership change
 * delivered to one platform), from billable work counts and the list prices of prices.json. Pure
 * arithmetic, no I/O: bench/cost/bench.ts feeds it the counts measured in the run (or, for
 * memberships until the population benchmark measures them, the design's figures, labelled so),
 * and test/unit/cost-model.test.ts checks it against hand-computed examples.
 */

/** Billable work for one unit. Every field is "per unit" (fractions when work is shared). */
export interface Work {
  readonly apiRequests: number;
  readonly lambdaInvocations: number;
  /** Billed Lambda milliseconds per unit (each invocation already rounded up to the granularity). */
  readonly lambdaBilledMs: number;
  /** Memory of the function(s) doing the work (arm64). */
  readonly lambdaMemoryMb: number;
  /** On-demand read request units (4 KB strongly consistent, or two eventually consistent reads). */
  readonly dynamoReadUnits: number;
  /** On-demand write request units (1 KB each). */
  readonly dynamoWriteUnits: number;
  /** Billed SQS requests: every 64 KB chunk of a request's payload is one. */
  readonly sqsRequests: number;
  readonly s3Puts: number;
  readonly s3Gets: number;
  readonly secretsManagerCalls: number;
  /** Bytes ingested by CloudWatch Logs (application lines, EMF metrics, Lambda's platform lines). */
  readonly logBytes: number;
  /** X-Ray traces recorded (the sampled fraction of invocations). */
  readonly xrayTraces: number;
  /** Bytes sent to the internet (responses to browsers, requests to partners). */
  readonly transferOutBytes: number;
}

export const NO_WORK: Work = {
  apiRequests: 0,
  lambdaInvocations: 0,
  lambdaBilledMs: 0,
  lambdaMemoryMb: 0,
  dynamoReadUnits: 0,
  dynamoWriteUnits: 0,
  sqsRequests: 0,
  s3Puts: 0,
  s3Gets: 0,
  secretsManagerCalls: 0,
  logBytes: 0,
  xrayTraces: 0,
  transferOutBytes: 0,
};

export const COST_LINES = [
  'apiGateway',
  'lambdaRequests',
  'lambdaDuration',
  'dynamoReads',
  'dynamoWrites',
  'sqs',
  's3',
  'secretsManager',
  'logs',
  'xray',
  'transferOut',
] as const;
export type CostLine = (typeof COST_LINES)[number];

export interface Cost {
  /** Dollars per unit. */
  readonly total: number;
  readonly lines: Readonly<Record<CostLine, number>>;
}

const GIB = 1024 ** 3;

export function costOf(work: Work, prices: Prices): Cost {
  const lines: Record<CostLine, number> = {
    apiGateway: (work.apiRequests * prices.apiGatewayHttp.requestsPerMillion) / 1e6,
    lambdaRequests: (work.lambdaInvocations * prices.lambda.requestsPerMillion) / 1e6,
    lambdaDuration:
      (work.lambdaBilledMs / 1000) * (work.lambdaMemoryMb / 1024) * prices.lambda.arm64PerGbSecond,
    dynamoReads: (work.dynamoReadUnits * prices.dynamodbOnDemand.readUnitsPerMillion) / 1e6,
    dynamoWrites: (work.dynamoWriteUnits * prices.dynamodbOnDemand.writeUnitsPerMillion) / 1e6,
    sqs: (work.sqsRequests * prices.sqs.standardRequestsPerMillion) / 1e6,
    s3: (work.s3Puts * prices.s3.putPerThousand + work.s3Gets * prices.s3.getPerThousand) / 1000,
    secretsManager: (work.secretsManagerCalls * prices.secretsManager.apiCallsPerTenThousand) / 1e4,
    logs: (work.logBytes / GIB) * prices.cloudwatchLogs.ingestionPerGb,
    xray: (work.xrayTraces * prices.xray.tracesRecordedPerMillion) / 1e6,
    transferOut: (work.transferOutBytes / GIB) * prices.dataTransferOut.internetPerGb,
  };
  const total = COST_LINES.reduce((sum, line) => sum + lines[line], 0);
  return { total, lines };
}

/** Dollars per million units. */
export const perMillion = (cost: Cost): number => cost.total * 1e6;

/** Lambda bills each invocation's duration rounded up to the granularity (1 ms). */
export function billedMs(ms: number, granularityMs: number): number {
  return Math.ceil(ms / granularityMs - 1e-9) * granularityMs;
}

/** Billed SQS requests for one API call carrying `payloadBytes` (at least one). */
export function sqsRequestsFor(payloadBytes: number, chunkBytes: number): number {
  return Math.max(1, Math.ceil(payloadBytes / chunkBytes));
}

/**
 * Lambda's default X-Ray sampling: the first request each second, then 5 % of the rest. The
 * fraction of invocations traced at a steady `requestsPerSecond`.
 */
export function xraySampledFraction(requestsPerSecond: number, reservoirPerSecond = 1, rate = 0.05): number {
  if (requestsPerSecond <= reservoirPerSecond) return 1;
  return (reservoirPerSecond + rate * (requestsPerSecond - reservoirPerSecond)) / requestsPerSecond;
}

/**
 * Secrets Manager calls per request when each container caches each secret for `cacheSeconds`:
 * a container serving `requestsPerSecondPerContainer` reads each of its secrets once per period.
 */
export function secretCallsPerRequest(
  secretsPerContainer: number,
  cacheSeconds: number,
  requestsPerSecondPerContainer: number,
): number {
  return secretsPerContainer / (cacheSeconds * requestsPerSecondPerContainer);
}

// ---------------------------------------------------------------------------------------------
// Syncs: one `/uid` callback.

/** What the sync-work benchmark measures per callback, for one kind of mapping write. */
export interface SyncCallbackWork {
  readonly dynamoCalls: number;
  readonly readUnits: number;
  readonly writeUnits: number;
  /** Bytes the function wrote to stdout (log lines and EMF metric records). */
  readonly logBytes: number;
  /** Bytes of the HTTP response (status line, headers, body). */
  readonly responseBytes: number;
}

/** Figures the run cannot measure locally; printed with the results (bench/cost/bench.ts). */
export interface SyncAssumptions {
  readonly memoryMb: number;
  /** One DynamoDB call in the region, as the function waits for it. */
  readonly dynamoRoundTripMs: number;
  /** The function's CPU per request at its memory size (parsing, consent, tokens, SDK). */
  readonly cpuMsPerRequest: number;
  /** Lambda's own START/REPORT lines in JSON format (X-Ray fields included). */
  readonly platformLogBytesPerInvocation: number;
  readonly xraySampledFraction: number;
  readonly secretCallsPerRequest: number;
}

export function syncCallbackWork(
  measured: SyncCallbackWork,
  assumptions: SyncAssumptions,
  prices: Prices,
): Work {
  return {
    ...NO_WORK,
    apiRequests: 1,
    lambdaInvocations: 1,
    lambdaBilledMs: billedMs(
      measured.dynamoCalls * assumptions.dynamoRoundTripMs + assumptions.cpuMsPerRequest,
      prices.lambda.billingGranularityMs,
    ),
    lambdaMemoryMb: assumptions.memoryMb,
    dynamoReadUnits: measured.readUnits,
    dynamoWriteUnits: measured.writeUnits,
    secretsManagerCalls: assumptions.secretCallsPerRequest,
    logBytes: measured.logBytes + assumptions.platformLogBytesPerInvocation,
    xrayTraces: assumptions.xraySampledFraction,
    transferOutBytes: measured.responseBytes,
  };
}

/**
 * The floor of a sync: the same answer to the browser after one API request, one Lambda request and
 * one write (1 WRU) with zero overhead: no read, no logs, no tracing, no secret, no CPU beyond the
 * call. Same memory and architecture as the real function.
 */
export function syncFloorWork(responseBytes: number, assumptions: SyncAssumptions, prices: Prices): Work {
  return {
    ...NO_WORK,
    apiRequests: 1,
    lambdaInvocations: 1,
    lambdaBilledMs: billedMs(assumptions.dynamoRoundTripMs, prices.lambda.billingGranularityMs),
    lambdaMemoryMb: assumptions.memoryMb,
    dynamoWriteUnits: 1,
    transferOutBytes: responseBytes,
  };
}

// ---------------------------------------------------------------------------------------------
// The mapping table's stream consumer (release-pending): what a sync's mapping write costs there.

/**
 * What bench/stream-work.ts measures for the records one request put on the mapping table's
 * stream: those that passed the event source's filter (and so reached the function), the
 * DynamoDB calls and units of the invocation that handled them, and its log bytes.
 */
export interface StreamRecordsMeasured {
  readonly delivered: number;
  readonly invocations: number;
  readonly dynamoCalls: number;
  readonly readUnits: number;
  readonly writeUnits: number;
  readonly logBytes: number;
}

/** Figures the run cannot measure locally (bench/cost/inputs.ts says where each comes from). */
export interface StreamConsumerAssumptions {
  readonly memoryMb: number;
  /** Records per invocation in AWS: the batching window gathers a shard's records. */
  readonly recordsPerInvocation: number;
  /** DynamoDB calls the handler makes at once (its concurrency limit). */
  readonly concurrentCalls: number;
  readonly dynamoRoundTripMs: number;
  readonly cpuMsPerInvocation: number;
  readonly platformLogBytesPerInvocation: number;
  /** Share of invocations X-Ray records. */
  readonly xraySampledFraction: number;
  readonly secretCallsPerInvocation: number;
}

/**
 * The consumer's work for the records of one request. Measured with one record per invocation,
 * its calls and units are per record; in AWS an invocation takes `recordsPerInvocation` records, so
 * the invocation itself (request, duration, log lines, trace, secret reads) is shared by them:
 * its duration is the CPU plus the calls per record, `concurrentCalls` of them at a time, in turn.
 */
export function streamConsumerWork(
  measured: StreamRecordsMeasured,
  assumptions: StreamConsumerAssumptions,
  prices: Prices,
): Work {
  const records = measured.delivered;
  if (records === 0) return NO_WORK;
  const perInvocation = assumptions.recordsPerInvocation;
  const callsPerRecord = measured.dynamoCalls / records;
  const rounds = callsPerRecord * Math.ceil(perInvocation / assumptions.concurrentCalls);
  const invocationMs = billedMs(
    assumptions.cpuMsPerInvocation + rounds * assumptions.dynamoRoundTripMs,
    prices.lambda.billingGranularityMs,
  );
  // The handler's log lines are per invocation (measured on invocations of one record).
  const logBytesPerInvocation = measured.invocations > 0 ? measured.logBytes / measured.invocations : 0;
  const share = records / perInvocation;
  return {
    ...NO_WORK,
    lambdaInvocations: share,
    lambdaBilledMs: invocationMs * share,
    lambdaMemoryMb: assumptions.memoryMb,
    dynamoReadUnits: measured.readUnits,
    dynamoWriteUnits: measured.writeUnits,
    secretsManagerCalls: assumptions.secretCallsPerInvocation * share,
    logBytes: (logBytesPerInvocation + assumptions.platformLogBytesPerInvocation) * share,
    xrayTraces: assumptions.xraySampledFraction * share,
  };
}

/** Weighted average of per-unit work (weights need not sum to 1; they are normalised). */
export function mixWork(parts: readonly { readonly weight: number; readonly work: Work }[]): Work {
  const totalWeight = parts.reduce((sum, part) => sum + part.weight, 0);
  if (!(totalWeight > 0)) throw new Error('mixWork: weights must add up to more than 0');
  const keys = Object.keys(NO_WORK) as (keyof Work)[];
  const mixed = Object.fromEntries(
    keys.map((key) => [
      key,
      parts.reduce((sum, part) => sum + (part.weight / totalWeight) * part.work[key], 0),
    ]),
  ) as unknown as Work;
  // Memory is a setting, not an amount: averaging it weighted by duration keeps GB-s exact.
  const ms = parts.reduce((sum, part) => sum + part.weight * part.work.lambdaBilledMs, 0);
  const mbMs = parts.reduce(
    (sum, part) => sum + part.weight * part.work.lambdaBilledMs * part.work.lambdaMemoryMb,
    0,
  );
  return { ...mixed, lambdaMemoryMb: ms > 0 ? mbMs / ms : 0 };
}

/** Sum of several pieces of work per unit (e.g. the route and deliver functions of a membership). */
export function addWork(...parts: readonly Work[]): Work {
  if (parts.length === 0) return NO_WORK;
  return scaleWork(mixWork(parts.map((work) => ({ weight: 1, work }))), parts.length);
}

export function scaleWork(work: Work, factor: number): Work {
  const keys = Object.keys(NO_WORK) as (keyof Work)[];
  const scaled = Object.fromEntries(keys.map((key) => [key, work[key] * factor])) as unknown as Work;
  return { ...scaled, lambdaMemoryMb: work.lambdaMemoryMb };
}

// ---------------------------------------------------------------------------------------------
// Memberships: one (user, platform) change delivered.

/**
 * How the population pipeline packs and spends work, per message, invocation and partner call.
 * Measured by the population benchmark once it exists; until then the design's figures.
 */
export interface MembershipPipeline {
  /** Users in one audience-event message the DMP sends (SendMessage). */
  readonly usersPerMessage: number;
  readonly messageBytes: number;
  /** Messages per route invocation (the event source's batch). */
  readonly messagesPerRouteInvocation: number;
  /** Route duration: a fixed part per invocation plus a part per 1000 users. */
  readonly routeFixedMs: number;
  readonly routeMsPer1000Users: number;
  readonly routeMemoryMb: number;
  /** Mapping reads per membership (BatchGetItem): 0.5 RRU eventually consistent, item < 4 KB. */
  readonly mappingReadUnits: number;
  /** Reads of per-membership state (order, accounting) per membership. */
  readonly stateReadUnitsPerMembership: number;
  /** Users per partner call (1 for no-batch platforms, 10-1000 for micro-batch). */
  readonly usersPerPartnerCall: number;
  /** Users packed in one delivery-queue message, and its bytes. */
  readonly usersPerDeliveryMessage: number;
  readonly deliveryMessageBytes: number;
  readonly partnerCallsPerDeliverInvocation: number;
  readonly deliverMsPerInvocation: number;
  readonly deliverMemoryMb: number;
  /** Bytes of one partner request. */
  readonly partnerRequestBytes: number;
  /** Write units per membership for per-membership accounting state (0: counts per batch only). */
  readonly stateWriteUnitsPerMembership: number;
  readonly logBytesPerInvocation: number;
  readonly platformLogBytesPerInvocation: number;
  /** Active tracing on both functions (sampled by Lambda's default rule at their invocation rates). */
  readonly tracing: boolean;
  /** The load, which sets the invocation rates and so X-Ray's sampled share. */
  readonly membershipsPerSecond: number;
  /** ReceiveMessage returns up to 10 messages; DeleteMessageBatch deletes up to 10. */
  readonly messagesPerReceive: number;
}

/** SQS requests per message of `bytes`: send, the share of a receive, the share of a delete. */
function sqsPerMessage(bytes: number, perReceive: number, prices: Prices): number {
  const chunk = prices.sqs.chunkBytes;
  const send = sqsRequestsFor(bytes, chunk);
  const receive = sqsRequestsFor(bytes * perReceive, chunk) / perReceive;
  const remove = 1 / perReceive;
  return send + receive + remove;
}

export function membershipWork(pipeline: MembershipPipeline, prices: Prices): Work {
  const usersPerRoute = pipeline.usersPerMessage * pipeline.messagesPerRouteInvocation;
  const usersPerDeliver = pipeline.usersPerPartnerCall * pipeline.partnerCallsPerDeliverInvocation;
  const granularity = prices.lambda.billingGranularityMs;
  const traced = (usersPerInvocation: number) =>
    pipeline.tracing ? xraySampledFraction(pipeline.membershipsPerSecond / usersPerInvocation) : 0;
  const route: Work = {
    ...NO_WORK,
    lambdaInvocations: 1 / usersPerRoute,
    lambdaBilledMs:
      billedMs(pipeline.routeFixedMs + (pipeline.routeMsPer1000Users * usersPerRoute) / 1000, granularity) /
      usersPerRoute,
    lambdaMemoryMb: pipeline.routeMemoryMb,
    dynamoReadUnits: pipeline.mappingReadUnits + pipeline.stateReadUnitsPerMembership,
    dynamoWriteUnits: pipeline.stateWriteUnitsPerMembership,
    sqsRequests:
      sqsPerMessage(pipeline.messageBytes, pipeline.messagesPerReceive, prices) / pipeline.usersPerMessage,
    logBytes: (pipeline.logBytesPerInvocation + pipeline.platformLogBytesPerInvocation) / usersPerRoute,
    xrayTraces: traced(usersPerRoute) / usersPerRoute,
  };
  const deliver: Work = {
    ...NO_WORK,
    lambdaInvocations: 1 / usersPerDeliver,
    lambdaBilledMs: billedMs(pipeline.deliverMsPerInvocation, granularity) / usersPerDeliver,
    lambdaMemoryMb: pipeline.deliverMemoryMb,
    sqsRequests:
      sqsPerMessage(pipeline.deliveryMessageBytes, pipeline.messagesPerReceive, prices) /
      pipeline.usersPerDeliveryMessage,
    logBytes: (pipeline.logBytesPerInvocation + pipeline.platformLogBytesPerInvocation) / usersPerDeliver,
    xrayTraces: traced(usersPerDeliver) / usersPerDeliver,
    transferOutBytes: pipeline.partnerRequestBytes / pipeline.usersPerPartnerCall,
  };
  return addWork(route, deliver);
}

/**
 * The floor of a membership: one mapping read, plus the same packed SQS messages, Lambda
 * invocations and partner requests, with zero overhead (no state, no logs, no tracing).
 */
export function membershipFloorWork(pipeline: MembershipPipeline, prices: Prices): Work {
  return membershipWork(
    {
      ...pipeline,
      stateReadUnitsPerMembership: 0,
      stateWriteUnitsPerMembership: 0,
      logBytesPerInvocation: 0,
      platformLogBytesPerInvocation: 0,
      tracing: false,
    },
    prices,
  );
}

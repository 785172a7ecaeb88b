import { RELEASE_STREAM } from '../../src/infra/population.ts';
import { FUNCTIONS, runtimeOf } from '../../src/infra/resources.ts';
import { RELEASE_CONCURRENCY } from '../../src/population/release-service.ts';
import type { MembershipWorkMeasured } from '../population-work.ts';
import {
  type MembershipPipeline,
  type StreamConsumerAssumptions,
  type SyncAssumptions,
  secretCallsPerRequest,
  xraySampledFraction,
} from './model.ts';

/**
 * What the cost model needs and the local run cannot measure, in one place, each with its reason.
 * bench/cost/bench.ts prints them under the figures; docs/cost-model.md explains them.
 */

/** The load the issue sizes for: a large DMP's month (docs/scaling.md takes 10x and 1000x of it). */
export const REFERENCE_LOAD = {
  syncsPerMonth: 1e9,
  membershipChangesPerMonth: 10e9,
} as const;

export const SECONDS_PER_MONTH = 30 * 86_400;

/** Average requests per second of a monthly volume. */
export const perSecond = (perMonth: number) => perMonth / SECONDS_PER_MONTH;

/** Secrets the user-sync function reads (the platform's, the token key) and how long it caches them. */
export const SYNC_SECRETS_PER_CONTAINER = 2;
export const SECRET_CACHE_SECONDS = 300;

/** Lambda's JSON platform lines per invocation (platform.start, platform.report with X-Ray ids). */
export const PLATFORM_LOG_BYTES_AT_INFO = 550;

/**
 * Sync assumptions at the reference load. Tracing and Lambda's own log lines are read from the
 * user-sync function's deployed settings (FUNCTIONS.userSync.runtime, which the CDK stack applies):
 * the figure priced is the configuration deployed. X-Ray's sampled share depends on the rate.
 */
export function syncAssumptions(syncsPerMonth: number = REFERENCE_LOAD.syncsPerMonth): SyncAssumptions {
  const runtime = runtimeOf(FUNCTIONS.userSync);
  return {
    memoryMb: FUNCTIONS.userSync.memorySizeMb,
    // In-region DynamoDB single-item calls answer in single-digit milliseconds; 5 ms is a
    // deliberately unflattering average including the SDK's own work.
    dynamoRoundTripMs: 5,
    // Parsing, consent, tokens and the SDK's serialisation at 512 MB (0.29 of a vCPU): the domain
    // benchmark's callback is ~20-50 us on a full core, the SDK's pipeline a few hundred us per call.
    cpuMsPerRequest: 3,
    // At systemLogLevel WARN Lambda writes none of its lines for a request that went well.
    platformLogBytesPerInvocation: runtime.systemLogLevel === 'INFO' ? PLATFORM_LOG_BYTES_AT_INFO : 0,
    xraySampledFraction: runtime.tracing === 'active' ? xraySampledFraction(perSecond(syncsPerMonth)) : 0,
    // Each container caches each secret 5 minutes (src/aws/secrets.ts): the platform's secret and
    // the token key, read by a container serving ~10 requests per second.
    secretCallsPerRequest: secretCallsPerRequest(SYNC_SECRETS_PER_CONTAINER, SECRET_CACHE_SECONDS, 10),
  };
}

/**
 * Shards of the mapping table's stream at the reference load: DynamoDB gives a stream a shard per
 * table partition, and a large DMP's mapping table (around a hundred million browsers, a few
 * platforms each, a few hundred bytes a mapping: over 100 GB at 10 GB a partition) has over ten.
 * Lambda polls each shard on its own: the fewer records a shard carries per batching window, the
 * fewer share an invocation. Assumed, not measured; the more shards, the dearer each record.
 */
export const MAPPING_STREAM_SHARDS = 16;

/** Concurrent reads of the release handler, as it runs them. */
export const RELEASE_CONCURRENT_CALLS = RELEASE_CONCURRENCY;

/** The privacy key (the user digests of tombstones): the release function's one secret. */
export const RELEASE_SECRETS_PER_CONTAINER = 1;

/**
 * The stream consumer's assumptions at `recordsPerSecond` records reaching it (what the sync mix
 * puts on the stream past the filter, at the reference load): records per invocation from the
 * batching window and the shards (at least one, at most the batch size), the function's memory,
 * tracing and log settings as deployed (FUNCTIONS.releasePending), and the same round trip as the
 * sync's. One container per shard reads the privacy key once per cache period.
 */
export function streamConsumerAssumptions(recordsPerSecond: number): StreamConsumerAssumptions {
  const definition = FUNCTIONS.releasePending;
  const runtime = runtimeOf(definition);
  const perShard = recordsPerSecond / MAPPING_STREAM_SHARDS;
  const recordsPerInvocation = Math.min(
    RELEASE_STREAM.batchSize,
    Math.max(1, perShard * Math.max(RELEASE_STREAM.maxBatchingWindowSeconds, 1)),
  );
  const invocationsPerSecond = recordsPerSecond / recordsPerInvocation;
  return {
    memoryMb: definition.memorySizeMb,
    recordsPerInvocation,
    concurrentCalls: RELEASE_CONCURRENT_CALLS,
    dynamoRoundTripMs: syncAssumptions().dynamoRoundTripMs,
    // Parsing the batch, the filter's second look at each record, Powertools, the SDK's pipeline.
    cpuMsPerInvocation: 3,
    platformLogBytesPerInvocation: runtime.systemLogLevel === 'INFO' ? PLATFORM_LOG_BYTES_AT_INFO : 0,
    xraySampledFraction: runtime.tracing === 'active' ? xraySampledFraction(invocationsPerSecond) : 0,
    secretCallsPerInvocation: secretCallsPerRequest(
      RELEASE_SECRETS_PER_CONTAINER,
      SECRET_CACHE_SECONDS,
      invocationsPerSecond / MAPPING_STREAM_SHARDS,
    ),
  };
}

/**
 * Share of `/uid` callbacks by kind of mapping write in a steady state: most callbacks come when
 * the schedule says a platform is due again (refreshed), first syncs of new browsers (new), a few
 * partners re-issuing ids (changed) and repeats inside the refresh interval (unchanged). Assumed,
 * not measured: the split depends on the DMP's traffic; per-kind figures are printed too.
 */
export const SYNC_MIX = { new: 0.3, refreshed: 0.5, changed: 0.05, unchanged: 0.15 } as const;

/** Where the membership design figures (scaling, docs/scaling.md) come from. */
export const MEMBERSHIP_DESIGN_SOURCE =
  'src/population/dynamo-store.ts and deliver-service.ts (one intent write per membership, progress per message)';

/** Bytes per user in each message or request, and each one's fixed part (JSON envelopes). */
export const MEMBERSHIP_BYTES = {
  // A DMP user id of ~22 characters as a JSON string in the audience message's `users`.
  perUserInMessage: 25,
  messageEnvelope: 250,
  // A delivery item [segment, audience, dmpUser, partnerUser, op, ts].
  perDeliveryItem: 90,
  deliveryEnvelope: 50,
  // A micro-batch entry like {"segment":12345,"userid":"<22 chars>"}.
  perPartnerItem: 48,
  partnerEnvelope: 500,
} as const;

/**
 * Membership work from the population design: what docs/scaling.md sizes the limits with. The cost
 * model prices the work measured in the run instead (membershipPipelineOf). Labelled "design
 * figures" wherever printed.
 */
export const MEMBERSHIP_DESIGN: MembershipPipeline = {
  // The DMP packs one audience's users in one message (shared/design/architecture.md, section 4).
  usersPerMessage: 1000,
  // One 64 KB chunk.
  messageBytes: 1000 * MEMBERSHIP_BYTES.perUserInMessage + MEMBERSHIP_BYTES.messageEnvelope,
  messagesPerRouteInvocation: 10,
  // Parsing and the segment lookup, then 100 BatchGetItem calls of 100 keys per 10,000 users,
  // partly in parallel: 250 ms for a batch of ten 1000-user messages.
  routeFixedMs: 20,
  routeMsPer1000Users: 23,
  routeMemoryMb: 512,
  // Eventually consistent mapping lookups, items well under 4 KB.
  mappingReadUnits: 0.5,
  // The design keeps the newest event per membership: a conditional write of the intent before
  // the call (1 WRU: order holds whatever the timing, docs/population.md section 3); what the partner
  // acknowledged is written once per delivery message (2 WRU per 1000), as are the tallies; the
  // privacy check reads a tombstone per user at the route and at the deliver step (2 x 0.5 RRU).
  stateReadUnitsPerMembership: 1.001,
  stateWriteUnitsPerMembership: 1.003,
  usersPerPartnerCall: 1000,
  usersPerDeliveryMessage: 1000,
  // Two 64 KB chunks.
  deliveryMessageBytes: 1000 * MEMBERSHIP_BYTES.perDeliveryItem + MEMBERSHIP_BYTES.deliveryEnvelope,
  partnerCallsPerDeliverInvocation: 1,
  // The partner's answer (~200 ms) plus 1000 conditional writes, 16 at a time.
  deliverMsPerInvocation: 600,
  deliverMemoryMb: FUNCTIONS.deliver.memorySizeMb,
  partnerRequestBytes: 1000 * MEMBERSHIP_BYTES.perPartnerItem + MEMBERSHIP_BYTES.partnerEnvelope,
  logBytesPerInvocation: 2000,
  platformLogBytesPerInvocation: 550,
  tracing: true,
  membershipsPerSecond: perSecond(REFERENCE_LOAD.membershipChangesPerMonth),
  messagesPerReceive: 10,
};

/**
 * Bytes of a partner request beyond its body (request line, headers, TLS records): assumed, the
 * reference partner's log keeps bodies only.
 */
export const PARTNER_REQUEST_OVERHEAD_BYTES = 500;

/** Memberships the cost model's measurement delivers (bench/population-work.ts). */
export const MEMBERSHIP_WORK_USERS = { full: 20_000, quick: 2_000 } as const;

/**
 * The pipeline as measured in this run: packing, invocations, durations, capacity units and bytes
 * per membership from bench/population-work.ts. Still assumed: Lambda's platform log lines, X-Ray's
 * sampling at the reference load, ten messages per SQS receive (Lambda's pollers), the request
 * overhead above; durations are this machine's, against local stand-ins (not AWS's).
 */
export function membershipPipelineOf(measured: MembershipWorkMeasured): MembershipPipeline {
  const per = (total: number, count: number) => (count > 0 ? total / count : 0);
  const invocations = measured.route.invocations + measured.deliver.invocations;
  return {
    ...MEMBERSHIP_DESIGN,
    usersPerMessage: per(measured.memberships, measured.audienceMessages),
    messageBytes: per(measured.audienceBytes, measured.audienceMessages),
    messagesPerRouteInvocation: per(measured.route.records, measured.route.invocations),
    routeFixedMs: per(measured.route.ms, measured.route.invocations),
    routeMsPer1000Users: 0,
    routeMemoryMb: FUNCTIONS.route.memorySizeMb,
    mappingReadUnits: per(measured.mappingReadUnits, measured.memberships),
    stateReadUnitsPerMembership: per(measured.stateReadUnits, measured.memberships),
    stateWriteUnitsPerMembership: per(measured.stateWriteUnits, measured.memberships),
    usersPerPartnerCall: per(measured.memberships, measured.partnerCalls),
    usersPerDeliveryMessage: per(measured.memberships, measured.deliveryMessages),
    deliveryMessageBytes: per(measured.deliveryBytes, measured.deliveryMessages),
    partnerCallsPerDeliverInvocation: per(measured.partnerCalls, measured.deliver.invocations),
    deliverMsPerInvocation: per(measured.deliver.ms, measured.deliver.invocations),
    deliverMemoryMb: FUNCTIONS.deliver.memorySizeMb,
    partnerRequestBytes:
      per(measured.partnerBodyBytes, measured.partnerCalls) + PARTNER_REQUEST_OVERHEAD_BYTES,
    logBytesPerInvocation: per(measured.logBytes, invocations),
    // As deployed (FUNCTIONS' runtime settings, which the CDK stack applies).
    platformLogBytesPerInvocation:
      runtimeOf(FUNCTIONS.deliver).systemLogLevel === 'INFO' ? PLATFORM_LOG_BYTES_AT_INFO : 0,
    tracing: runtimeOf(FUNCTIONS.deliver).tracing === 'active',
  };
}

import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { syncLevers } from '../../bench/cost/bench.ts';
import {
  MAPPING_STREAM_SHARDS,
  membershipPipelineOf,
  PARTNER_REQUEST_OVERHEAD_BYTES,
  PLATFORM_LOG_BYTES_AT_INFO,
  streamConsumerAssumptions,
  syncAssumptions,
} from '../../bench/cost/inputs.ts';
import {
  billedMs,
  costOf,
  type MembershipPipeline,
  membershipFloorWork,
  membershipWork,
  mixWork,
  NO_WORK,
  perMillion,
  secretCallsPerRequest,
  sqsRequestsFor,
  streamConsumerWork,
  syncCallbackWork,
  syncFloorWork,
  type Work,
  xraySampledFraction,
} from '../../bench/cost/model.ts';
import { loadPrices, PRICES_FILE } from '../../bench/cost/prices.ts';
import type { MembershipWorkMeasured } from '../../bench/population-work.ts';
import { NO_STREAM_WORK } from '../../bench/stream-work.ts';
import type { RequestWork, SyncKind } from '../../bench/sync-work.ts';
import { RELEASE_STREAM } from '../../src/infra/population.ts';
import { DEFAULT_RUNTIME, FUNCTIONS, runtimeOf } from '../../src/infra/resources.ts';

// Every expected figure below is worked out by hand from bench/cost/prices.json (us-east-1):
// API Gateway HTTP $1.00/M requests, Lambda $0.20/M requests and $0.0000133334 per GB-s (arm64),
// DynamoDB $0.125/M RRU and $0.625/M WRU, SQS $0.40/M requests, S3 $0.005/1000 PUT and
// $0.0004/1000 GET, Secrets Manager $0.05/10,000 calls, Logs $0.50/GiB, X-Ray $5.00/M traces,
// transfer out $0.09/GiB.
const prices = loadPrices();
const GIB = 1024 ** 3;

describe('prices.json', () => {
  it('holds the list prices the hand computations below use, with their date and sources', () => {
    expect(prices.recorded).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(prices.region).toBe('us-east-1');
    expect(prices.apiGatewayHttp.requestsPerMillion).toBe(1);
    expect(prices.lambda).toMatchObject({ requestsPerMillion: 0.2, arm64PerGbSecond: 0.0000133334 });
    expect(prices.dynamodbOnDemand).toMatchObject({
      readUnitsPerMillion: 0.125,
      writeUnitsPerMillion: 0.625,
    });
    expect(prices.sqs).toMatchObject({ standardRequestsPerMillion: 0.4, chunkBytes: 65536 });
    expect(Object.keys(prices.sources)).toEqual(
      expect.arrayContaining(['lambda', 'apiGatewayHttp', 'dynamodb', 'sqs', 's3', 'secretsManager']),
    );
  });

  it('refuses a price file with a negative or missing price, naming the field', () => {
    const document = JSON.parse(readFileSync(PRICES_FILE, 'utf8')) as Record<string, Record<string, unknown>>;
    document['sqs'] = { ...document['sqs'], standardRequestsPerMillion: -1 };
    delete document['xray'];
    const file = join(mkdtempSync(join(tmpdir(), 'prices-')), 'prices.json');
    writeFileSync(file, JSON.stringify(document));
    expect(() => loadPrices(file)).toThrow(
      /sqs\.standardRequestsPerMillion.*xray|xray.*sqs\.standardRequestsPerMillion/,
    );
  });
});

describe('costOf', () => {
  it('prices every line of a sync-like unit of work', () => {
    const work: Work = {
      ...NO_WORK,
      apiRequests: 1,
      lambdaInvocations: 1,
      lambdaBilledMs: 10,
      lambdaMemoryMb: 512,
      dynamoReadUnits: 1.5,
      dynamoWriteUnits: 1,
    };
    const cost = costOf(work, prices);
    expect(cost.lines.apiGateway).toBeCloseTo(1e-6, 15);
    expect(cost.lines.lambdaRequests).toBeCloseTo(2e-7, 15);
    // 10 ms x 0.5 GB = 0.005 GB-s x $0.0000133334
    expect(cost.lines.lambdaDuration).toBeCloseTo(6.6667e-8, 12);
    expect(cost.lines.dynamoReads).toBeCloseTo(1.875e-7, 15);
    expect(cost.lines.dynamoWrites).toBeCloseTo(6.25e-7, 15);
    // 1.0 + 0.2 + 0.066667 + 0.1875 + 0.625 dollars per million
    expect(perMillion(cost)).toBeCloseTo(2.079167, 5);
  });

  it('prices the other services per their units', () => {
    const cost = costOf(
      {
        ...NO_WORK,
        sqsRequests: 3,
        s3Puts: 2,
        s3Gets: 10,
        secretsManagerCalls: 4,
        logBytes: GIB,
        xrayTraces: 0.5,
        transferOutBytes: 2 * GIB,
      },
      prices,
    );
    expect(cost.lines.sqs).toBeCloseTo(1.2e-6, 15);
    // 2 x $0.005/1000 + 10 x $0.0004/1000 = $0.00001 + $0.000004
    expect(cost.lines.s3).toBeCloseTo(1.4e-5, 15);
    expect(cost.lines.secretsManager).toBeCloseTo(2e-5, 15);
    expect(cost.lines.logs).toBeCloseTo(0.5, 12);
    expect(cost.lines.xray).toBeCloseTo(2.5e-6, 15);
    expect(cost.lines.transferOut).toBeCloseTo(0.18, 12);
    expect(cost.total).toBeCloseTo(1.2e-6 + 1.4e-5 + 2e-5 + 0.5 + 2.5e-6 + 0.18, 12);
  });
});

describe('units', () => {
  it('bills Lambda per started millisecond and SQS per started 64 KB chunk, at least one', () => {
    expect(billedMs(12.2, 1)).toBe(13);
    expect(billedMs(13, 1)).toBe(13);
    expect(billedMs(0.1, 1)).toBe(1);
    expect(sqsRequestsFor(0, 65536)).toBe(1);
    expect(sqsRequestsFor(65536, 65536)).toBe(1);
    expect(sqsRequestsFor(65537, 65536)).toBe(2);
  });

  it("samples as Lambda's default X-Ray rule does: 1 per second, then 5 %", () => {
    expect(xraySampledFraction(0.5)).toBe(1);
    expect(xraySampledFraction(101)).toBeCloseTo(6 / 101, 12);
  });

  it('reads each cached secret once per cache period per container', () => {
    // 2 secrets, 300 s, 10 requests/s: 2 calls per 3000 requests
    expect(secretCallsPerRequest(2, 300, 10)).toBeCloseTo(2 / 3000, 12);
  });

  it('mixes work by weight and keeps GB-seconds exact across memory sizes', () => {
    const small: Work = { ...NO_WORK, apiRequests: 1, lambdaBilledMs: 10, lambdaMemoryMb: 128 };
    const large: Work = { ...NO_WORK, apiRequests: 3, lambdaBilledMs: 30, lambdaMemoryMb: 1024 };
    const mixed = mixWork([
      { weight: 3, work: small },
      { weight: 1, work: large },
    ]);
    expect(mixed.apiRequests).toBeCloseTo(1.5, 12);
    expect(mixed.lambdaBilledMs).toBeCloseTo(15, 12);
    // (0.75 x 10 x 128 + 0.25 x 30 x 1024) MB-ms = 8640 = 15 ms x 576 MB
    expect(mixed.lambdaBilledMs * mixed.lambdaMemoryMb).toBeCloseTo(8640, 9);
  });
});

describe('syncs', () => {
  const assumptions = {
    memoryMb: 512,
    dynamoRoundTripMs: 5,
    cpuMsPerRequest: 3,
    platformLogBytesPerInvocation: 550,
    xraySampledFraction: 0.05,
    secretCallsPerRequest: 0.001,
  };
  const measured = { dynamoCalls: 3, readUnits: 1.5, writeUnits: 1, logBytes: 1000, responseBytes: 658 };

  it('turns a measured callback into billable work', () => {
    const work = syncCallbackWork(measured, assumptions, prices);
    expect(work).toMatchObject({
      apiRequests: 1,
      lambdaInvocations: 1,
      lambdaBilledMs: 18, // 3 calls x 5 ms + 3 ms of CPU
      lambdaMemoryMb: 512,
      dynamoReadUnits: 1.5,
      dynamoWriteUnits: 1,
      logBytes: 1550,
      xrayTraces: 0.05,
      secretsManagerCalls: 0.001,
      transferOutBytes: 658,
    });
    // 1 + 0.2 + 18 ms x 0.5 GB x 13.3334 + 0.1875 + 0.625 + 1550 B x 0.5/GiB x 1e6 + 0.05 x 5
    //   + 0.001 x 5 + 658 B x 0.09/GiB x 1e6  (dollars per million)
    const expected =
      1 + 0.2 + 0.12 + 0.1875 + 0.625 + (1550 / GIB) * 0.5e6 + 0.25 + 0.005 + (658 / GIB) * 0.09e6;
    expect(perMillion(costOf(work, prices))).toBeCloseTo(expected, 4);
  });

  it('has a floor of one API request, one Lambda request, one write and the answer', () => {
    const floor = syncFloorWork(658, assumptions, prices);
    expect(floor).toEqual({
      ...NO_WORK,
      apiRequests: 1,
      lambdaInvocations: 1,
      lambdaBilledMs: 5,
      lambdaMemoryMb: 512,
      dynamoWriteUnits: 1,
      transferOutBytes: 658,
    });
    // 1 + 0.2 + 5 ms x 0.5 GB x 13.3334 (= 0.0333335) + 0.625 + 658 B x 0.09/GiB x 1e6
    expect(perMillion(costOf(floor, prices))).toBeCloseTo(1.8583335 + (658 / GIB) * 0.09e6, 6);
  });
});

describe("the mapping stream's consumer (release-pending)", () => {
  const assumptions = {
    memoryMb: 512,
    recordsPerInvocation: 8,
    concurrentCalls: 16,
    dynamoRoundTripMs: 5,
    cpuMsPerInvocation: 3,
    platformLogBytesPerInvocation: 550,
    xraySampledFraction: 0.1,
    secretCallsPerInvocation: 0.001,
  };
  const measured = {
    delivered: 1,
    invocations: 1,
    dynamoCalls: 2,
    readUnits: 1.5,
    writeUnits: 0,
    logBytes: 434,
  };

  it("shares an invocation among its records and adds each record's reads", () => {
    const work = streamConsumerWork(measured, assumptions, prices);
    // One record of the 8 an invocation takes; the invocation: 3 ms + 2 calls x 5 ms (8 records, 16 at once).
    expect(work).toEqual({
      ...NO_WORK,
      lambdaInvocations: 0.125,
      lambdaBilledMs: 13 * 0.125,
      lambdaMemoryMb: 512,
      dynamoReadUnits: 1.5,
      secretsManagerCalls: 0.000125,
      logBytes: (434 + 550) * 0.125,
      xrayTraces: 0.0125,
    });
    // 0.2 x 0.125 + 1.625 ms x 0.5 GB x 13.3334 + 1.5 x 0.125 + 123 B x 0.5/GiB x 1e6 + 0.0125 x 5
    //   + 0.000125 x 5  (dollars per million)
    const expected = 0.025 + 0.0108334 + 0.1875 + (123 / GIB) * 0.5e6 + 0.0625 + 0.000625;
    expect(perMillion(costOf(work, prices))).toBeCloseTo(expected, 6);
    expect(streamConsumerWork({ ...measured, delivered: 0 }, assumptions, prices)).toEqual(NO_WORK);
  });

  it('takes more records per invocation as more reach a shard in a batching window, up to the batch size', () => {
    const perInvocation = (recordsPerSecond: number) =>
      streamConsumerAssumptions(recordsPerSecond).recordsPerInvocation;
    expect(perInvocation(MAPPING_STREAM_SHARDS / 2)).toBe(1);
    expect(perInvocation(MAPPING_STREAM_SHARDS * 8)).toBe(8 * RELEASE_STREAM.maxBatchingWindowSeconds);
    expect(perInvocation(MAPPING_STREAM_SHARDS * 10_000)).toBe(RELEASE_STREAM.batchSize);
    const deployed = runtimeOf(FUNCTIONS.releasePending);
    const at = streamConsumerAssumptions(MAPPING_STREAM_SHARDS * 8);
    expect(at.memoryMb).toBe(FUNCTIONS.releasePending.memorySizeMb);
    expect(at.xraySampledFraction > 0).toBe(deployed.tracing === 'active');
    expect(at.platformLogBytesPerInvocation).toBe(
      deployed.systemLogLevel === 'INFO' ? PLATFORM_LOG_BYTES_AT_INFO : 0,
    );
  });
});

describe('syncs as deployed', () => {
  it('reads tracing and Lambda log lines from the settings the CDK stack applies', () => {
    const runtime = runtimeOf(FUNCTIONS.userSync);
    const assumptions = syncAssumptions();
    expect(assumptions.xraySampledFraction > 0).toBe(runtime.tracing === 'active');
    expect(assumptions.platformLogBytesPerInvocation).toBe(
      runtime.systemLogLevel === 'INFO' ? PLATFORM_LOG_BYTES_AT_INFO : 0,
    );
  });

  it('prices the alternative to each deployed choice', () => {
    const names = (runtime = runtimeOf(FUNCTIONS.userSync)) => syncLevers(runtime).map((lever) => lever.name);
    const off = { ...DEFAULT_RUNTIME, tracing: 'off', systemLogLevel: 'WARN' } as const;
    expect(names(off)).toContain('X-Ray active tracing on (not deployed on user-sync)');
    expect(names(DEFAULT_RUNTIME)).toContain('no X-Ray active tracing');
    expect(names(off).some((name) => name.startsWith('Lambda platform log lines'))).toBe(true);
    expect(names(DEFAULT_RUNTIME)).toContain('no Lambda platform log lines (systemLogLevel WARN)');
  });
});

describe('the blind-write lever', () => {
  const request = (
    kind: SyncKind,
    calls: Record<string, number>,
    readUnits: number,
    writeUnits: number,
  ): RequestWork => ({
    kind,
    outcome: 'stored',
    status: 302,
    calls,
    unitsByCommand: calls['GetItemCommand'] ? { GetItemCommand: readUnits } : ({} as Record<string, number>),
    dynamoCalls: Object.values(calls).reduce((sum, count) => sum + count, 0),
    readUnits,
    writeUnits,
    logBytes: 300,
    emfBytes: 0,
    logLines: 1,
    responseBytes: 700,
    stream: NO_STREAM_WORK,
  });
  const blind = syncLevers().find((lever) => lever.name.startsWith('every callback writes blind'))!;

  it.each([
    ['a write alone (new, changed in one call)', request('changed', { UpdateItemCommand: 1 }, 0, 1)],
    ['a read alone (unchanged)', request('unchanged', { GetItemCommand: 1 }, 1, 0)],
    ['a read, then a write', request('changed', { GetItemCommand: 1, UpdateItemCommand: 1 }, 1, 1)],
  ])('%s: becomes one call, one write unit, no read', (_, measured) => {
    expect(blind.request!(measured)).toMatchObject({ dynamoCalls: 1, readUnits: 0, writeUnits: 1 });
  });
});

describe('memberships', () => {
  const pipeline: MembershipPipeline = {
    usersPerMessage: 100,
    messageBytes: 1000,
    messagesPerRouteInvocation: 10,
    routeFixedMs: 10,
    routeMsPer1000Users: 10,
    routeMemoryMb: 1024,
    mappingReadUnits: 0.5,
    stateReadUnitsPerMembership: 1,
    stateWriteUnitsPerMembership: 1,
    usersPerPartnerCall: 500,
    usersPerDeliveryMessage: 500,
    deliveryMessageBytes: 70_000,
    partnerCallsPerDeliverInvocation: 2,
    deliverMsPerInvocation: 400,
    deliverMemoryMb: 1024,
    partnerRequestBytes: 50_000,
    logBytesPerInvocation: 1000,
    platformLogBytesPerInvocation: 0,
    tracing: false,
    membershipsPerSecond: 1000,
    messagesPerReceive: 10,
  };

  it('shares packed SQS requests, invocations and partner bytes among the users they carry', () => {
    const work = membershipWork(pipeline, prices);
    // route: 1000 users per invocation, 10 + 10 ms; deliver: 1000 users per invocation, 400 ms
    expect(work.lambdaInvocations).toBeCloseTo(1 / 1000 + 1 / 1000, 12);
    expect(work.lambdaBilledMs).toBeCloseTo(20 / 1000 + 400 / 1000, 12);
    expect(work.lambdaMemoryMb).toBeCloseTo(1024, 9);
    // audience message of 1000 B: send 1, receive ceil(10,000/65,536) = 1 per 10, delete 1 per 10
    //   -> 1.2 per 100 users; delivery message of 70,000 B: send 2, receive ceil(700,000/65,536) = 11
    //   per 10, delete 1 per 10 -> 3.2 per 500 users
    expect(work.sqsRequests).toBeCloseTo(1.2 / 100 + 3.2 / 500, 12);
    expect(work.dynamoReadUnits).toBe(1.5);
    expect(work.dynamoWriteUnits).toBe(1);
    expect(work.logBytes).toBeCloseTo(1000 / 1000 + 1000 / 1000, 12);
    expect(work.transferOutBytes).toBeCloseTo(100, 12);
    // dollars per million: 0.2 x 0.002 + 0.42 ms x 1 GB x 13.3334 + 1.5 x 0.125 + 0.625
    //   + 0.4 x 0.0184 + 2 B x 0.5/GiB x 1e6 + 100 B x 0.09/GiB x 1e6
    const expected =
      0.0004 + 0.42 * 0.0133334 + 0.1875 + 0.625 + 0.00736 + (2 / GIB) * 0.5e6 + (100 / GIB) * 0.09e6;
    expect(perMillion(costOf(work, prices))).toBeCloseTo(expected, 6);
  });

  it('has a floor of the mapping read and the same packed pipeline, nothing else', () => {
    const floor = membershipFloorWork(pipeline, prices);
    expect(floor.dynamoReadUnits).toBe(0.5);
    expect(floor.dynamoWriteUnits).toBe(0);
    expect(floor.logBytes).toBe(0);
    expect(floor.xrayTraces).toBe(0);
    expect(floor.sqsRequests).toBeCloseTo(membershipWork(pipeline, prices).sqsRequests, 12);
    // the per-membership state is what separates design and floor: 1 RRU + 1 WRU = $0.75 per million
    const design = perMillion(costOf(membershipWork(pipeline, prices), prices));
    expect(design - perMillion(costOf(floor, prices))).toBeCloseTo(0.75 + (2 / GIB) * 0.5e6, 6);
  });

  it('traces invocations at their own rate when tracing is on', () => {
    const traced = membershipWork({ ...pipeline, tracing: true }, prices);
    // 1000 memberships/s over 1000 users per invocation: 1 invocation/s each, all sampled
    expect(traced.xrayTraces).toBeCloseTo(2 / 1000, 12);
  });
});

describe('memberships measured in the run', () => {
  it('prices what bench/population-work.ts counted, per membership', () => {
    const measured: MembershipWorkMeasured = {
      memberships: 4000,
      audienceMessages: 4,
      audienceBytes: 64_000,
      producerSqsRequests: 1,
      sqsCalls: { SendMessageBatchCommand: 1 },
      functionSqsRequests: 5,
      deliveryMessages: 8,
      deliveryBytes: 296_000,
      route: { invocations: 2, records: 4, ms: 500 },
      deliver: { invocations: 2, records: 8, ms: 3000 },
      partnerCalls: 4,
      partnerBodyBytes: 176_000,
      dynamoCalls: { UpdateItemCommand: 4000 },
      dynamoByTable: {},
      mappingReadUnits: 2000,
      stateReadUnits: 4004,
      stateWriteUnits: 4012,
      logBytes: 4000,
    };
    const pipeline = membershipPipelineOf(measured);
    expect(pipeline).toMatchObject({
      usersPerMessage: 1000,
      messageBytes: 16_000,
      messagesPerRouteInvocation: 2,
      routeFixedMs: 250,
      routeMsPer1000Users: 0,
      mappingReadUnits: 0.5,
      stateReadUnitsPerMembership: 1.001,
      stateWriteUnitsPerMembership: 1.003,
      usersPerPartnerCall: 1000,
      usersPerDeliveryMessage: 500,
      deliveryMessageBytes: 37_000,
      partnerCallsPerDeliverInvocation: 2,
      deliverMsPerInvocation: 1500,
      partnerRequestBytes: 44_000 + PARTNER_REQUEST_OVERHEAD_BYTES,
      logBytesPerInvocation: 1000,
    });
    // Route: 2000 users and 250 ms per invocation; deliver: 2000 users and 1500 ms per invocation.
    const work = membershipWork(pipeline, prices);
    expect(work.lambdaBilledMs).toBeCloseTo(250 / 2000 + 1500 / 2000, 12);
    expect(work.dynamoReadUnits).toBeCloseTo(1.501, 12);
    expect(work.dynamoWriteUnits).toBeCloseTo(1.003, 12);
  });
});

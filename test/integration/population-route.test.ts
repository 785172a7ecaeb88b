import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { LambdaHandler } from '../../local/lambda.ts';
import { audienceQueueName } from '../../src/infra/population.ts';
import type { EventTally } from '../../src/population/accounting.ts';
import { DynamoPopulationStore } from '../../src/population/dynamo-store.ts';
import {
  audienceEvent,
  BATCH_PLATFORM,
  countsAdded,
  partnerIdOf,
  segmentOf,
  statsTotals,
  sync,
  usePopulationStack,
  users,
} from './population-support.ts';

/**
 * The route and release steps under pressure: an invocation with little time left finishes the
 * message it started and hands the others back; a crash between a step's writes and its counts
 * (route: pending stored, not counted; release: sent to delivery, not counted) is redelivered, and
 * `dmp stats` still counts every accepted membership exactly once.
 */

let routeHandler: LambdaHandler | undefined;
const harness = usePopulationStack({
  wrapFunction: (key, handler) => {
    if (key === 'route') routeHandler = handler;
    return handler;
  },
});

afterEach(() => {
  vi.restoreAllMocks();
});

/** Lambda's context for an invocation that has `remainingMs` left, whatever the clock says. */
function contextWithRemaining(remainingMs: number): Context {
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: 'dmp-local-route',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:eu-west-1:000000000000:function:dmp-local-route',
    memoryLimitInMB: '1024',
    awsRequestId: 'little-time-left',
    logGroupName: '/aws/lambda/dmp-local-route',
    logStreamName: 'local',
    getRemainingTimeInMillis: () => remainingMs,
    done: () => {},
    fail: () => {},
    succeed: () => {},
  };
}

describe('the route step within its time', () => {
  it('finishes the message it started and hands back the others: nothing lost, nothing counted twice', {
    timeout: 120_000,
  }, async () => {
    // Three messages of 330 users whose ids are long enough (106 characters) that each message
    // (about 35 KiB) is a routing group of its own.
    const people = users(`little-time-route-${'x'.repeat(80)}`, 990);
    await sync(harness, BATCH_PLATFORM, people);
    await harness.idle();
    const before = await statsTotals(harness, BATCH_PLATFORM);
    const bodies = [0, 1, 2].map((n) =>
      JSON.stringify(audienceEvent(people.slice(n * 330, (n + 1) * 330), { audience: 'aud-little-time' })),
    );
    const event: SQSEvent = {
      Records: bodies.map((body, n) => ({
        messageId: `little-time-${n}`,
        receiptHandle: `receipt-${n}`,
        body,
        attributes: {
          ApproximateReceiveCount: '1',
          SentTimestamp: String(Date.now()),
          SenderId: 'producer',
          ApproximateFirstReceiveTimestamp: String(Date.now()),
        },
        messageAttributes: {},
        md5OfBody: '',
        eventSource: 'aws:sqs',
        eventSourceARN: `arn:aws:sqs:${harness.stack.region}:000000000000:${audienceQueueName('local')}`,
        awsRegion: harness.stack.region,
      })),
    };
    // 6 s left: 5 s are kept for the response, so only the first message fits.
    const response = (await routeHandler?.(event, contextWithRemaining(6000))) as SQSBatchResponse;
    expect(response.batchItemFailures.map((failure) => failure.itemIdentifier)).toEqual([
      'little-time-1',
      'little-time-2',
    ]);
    await harness.idle();
    const segment = await segmentOf(harness, BATCH_PLATFORM, 'aud-little-time');
    expect(harness.stack.partner.members(segment)).toHaveLength(330);

    // The queue brings the two back (as SQS does with reported failures).
    for (const body of bodies.slice(1)) await harness.send(body);
    await harness.idle();
    expect(new Set(harness.stack.partner.members(segment))).toEqual(new Set(people.map(partnerIdOf)));
    expect(countsAdded(await statsTotals(harness, BATCH_PLATFORM), before)).toMatchObject({
      delivered: 990,
      pending: 0,
      rejected: 0,
      dlq: 0,
      superseded: 0,
      lapsed: 0,
    });
    const state = harness.stack.partner.population
      .state()
      .find((entry) => String(entry.segment_id) === segment);
    expect(state).toMatchObject({ adds: 990, duplicateAdds: 0 });
  });
});

describe('route and release counts under crashes', () => {
  it('counts every membership once when the route dies before counting pending users and the release before deleting them', {
    timeout: 120_000,
  }, async () => {
    const before = await statsTotals(harness, BATCH_PLATFORM);
    const people = users('crash-pending', 600);
    const [kept, cancelled] = [people.slice(0, 300), people.slice(300)];
    const crashed: string[] = [];
    // Each step dies once, right after its state writes and before its counts: the route before
    // counting its pending events, the release after its send, before marking them handed over.
    const pendingTallies = DynamoPopulationStore.prototype.putPendingTallies;
    vi.spyOn(DynamoPopulationStore.prototype, 'putPendingTallies').mockImplementation(function (
      this: DynamoPopulationStore,
      batch: readonly EventTally[],
      nowMs: number,
    ) {
      if (!crashed.includes('route') && batch.some((tally) => tally.counts.pending === 1)) {
        crashed.push('route');
        return Promise.reject(new Error('the route step died before counting'));
      }
      return pendingTallies.call(this, batch, nowMs);
    });
    const handOver = DynamoPopulationStore.prototype.markHandedOver;
    vi.spyOn(DynamoPopulationStore.prototype, 'markHandedOver').mockImplementation(function (
      this: DynamoPopulationStore,
      batch,
    ) {
      if (!crashed.includes('release')) {
        crashed.push('release');
        return Promise.reject(new Error('the release step died before counting'));
      }
      return handOver.call(this, batch);
    });

    // Unsynced: all 600 pending; then a removal cancels the add of 300 of them (superseded).
    await harness.send(audienceEvent(people, { audience: 'aud-crash-pending', ts: '2026-11-30T10:00:00Z' }));
    await harness.idle();
    await harness.send(
      audienceEvent(cancelled, { audience: 'aud-crash-pending', op: 'remove', ts: '2026-11-30T10:05:00Z' }),
    );
    await harness.idle();
    expect(countsAdded(await statsTotals(harness, BATCH_PLATFORM), before)).toMatchObject({
      pending: 600,
      superseded: 300,
    });

    // Their syncs arrive: every pending event is released (the release dies once and is retried).
    await sync(harness, BATCH_PLATFORM, people);
    await harness.idle();

    expect(crashed).toEqual(['route', 'release']);
    const segment = await segmentOf(harness, BATCH_PLATFORM, 'aud-crash-pending');
    expect(new Set(harness.stack.partner.members(segment))).toEqual(new Set(kept.map(partnerIdOf)));
    // 900 accepted memberships (600 adds, 300 removes): each in exactly one outcome.
    expect(countsAdded(await statsTotals(harness, BATCH_PLATFORM), before)).toMatchObject({
      delivered: 600,
      pending: 0,
      rejected: 0,
      dlq: 0,
      superseded: 300,
      lapsed: 0,
    });
  });
});

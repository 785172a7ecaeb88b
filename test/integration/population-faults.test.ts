import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { beforeEach, describe, expect, it } from 'vitest';
import { deliveryQueueName } from '../../src/infra/population.ts';
import { userDigest } from '../../src/privacy/digest.ts';
import {
  audienceEvent,
  BATCH_PLATFORM,
  type PopulationHarness,
  partnerIdOf,
  SINGLE_PLATFORM,
  segmentOf,
  sync,
  type Totals,
  usePopulationStack,
  users,
} from './population-support.ts';
import { PRIVACY_KEY } from './support.ts';

/**
 * Population against a partner that misbehaves: 429 with Retry-After, 30% 500s after doing the
 * work, slow answers, resets, a bad record in a batch, a deliver Lambda that crashes after its
 * work, a partner down and back. Each ends with a conservation check: every user delivered or
 * rejected exactly once in our counts, nothing in a DLQ, the partner holding exactly the members it
 * should.
 */

let crashes = 0;
const harness = usePopulationStack({
  // Dies after doing its work, before answering: the event source gets no partial response, and
  // the whole batch comes back. Lambda would bring it back after the visibility timeout (6 min
  // here); the test makes it visible at once rather than wait.
  wrapDeliver: (handler) => async (event, context) => {
    const result = (await handler(event, context)) as SQSBatchResponse;
    if (crashes > 0) {
      crashes -= 1;
      await harness.expireVisibility(event as SQSEvent);
      throw new Error('crashed after the partner calls');
    }
    return result;
  },
});
const partner = () => harness.stack.partner;

beforeEach(() => {
  partner().clearFaults();
  partner().population.configure({});
});

async function counts(platformId: number): Promise<Totals> {
  return harness.totals(platformId);
}

function diff(after: Totals, before: Totals) {
  return {
    delivered: after.delivered - before.delivered,
    rejected: after.rejected - before.rejected,
    pending: after.pending - before.pending,
    dlq: after.dlq - before.dlq,
  };
}

/** Sends `count` synced users for a fresh audience (its segment created first) and waits for the end. */
async function run(
  h: PopulationHarness,
  name: string,
  count: number,
  faults: () => void,
  platformId = BATCH_PLATFORM,
) {
  const people = users(name, count);
  await sync(h, platformId, people);
  // The segment exists before the faults start: these tests are about population calls.
  await h.send(audienceEvent(people.slice(0, 1), { audience: `aud-${name}`, platforms: [platformId] }));
  await h.idle();
  const before = await counts(platformId);
  faults();
  for (let index = 1; index < people.length; index += 200) {
    await h.send(
      audienceEvent(people.slice(index, index + 200), { audience: `aud-${name}`, platforms: [platformId] }),
    );
  }
  await h.idle();
  const segment = await segmentOf(h, platformId, `aud-${name}`);
  return {
    people,
    segment,
    counts: diff(await counts(platformId), before),
    members: new Set(partner().members(segment)),
    state: partner()
      .population.state()
      .find((entry) => String(entry.segment_id) === segment),
  };
}

async function noDlq() {
  expect(await harness.dlqDepth(deliveryQueueName('local', BATCH_PLATFORM))).toBe(0);
  expect(await harness.dlqDepth(deliveryQueueName('local', SINGLE_PLATFORM))).toBe(0);
}

describe('population under partner faults', () => {
  it('rides out 429 with Retry-After and 30% of calls failing with 500 after doing the work', async () => {
    const result = await run(harness, 'flaky', 1201, () => {
      partner().addFault({ pathPrefix: '/v1/segment', method: 'POST', status: 429, retryAfter: 1, count: 2 });
      partner().addFault({
        pathPrefix: '/v1/segment',
        method: 'POST',
        status: 500,
        ratio: 0.3,
        process: true,
      });
    });
    expect(result.members).toEqual(new Set(result.people.map(partnerIdOf)));
    expect(result.counts).toEqual({ delivered: 1200, rejected: 0, pending: 0, dlq: 0 });
    // A partner that answers 500 after applying the batch receives it again: visible, never lost.
    expect(result.state?.adds).toBeGreaterThanOrEqual(1201);
    await noDlq();
  });

  it('takes slow answers and connection resets', async () => {
    const result = await run(harness, 'slow', 401, () => {
      partner().addFault({ pathPrefix: '/v1/segment', delayMs: 300, count: 2 });
      partner().addFault({ pathPrefix: '/v1/segment', reset: true, count: 2 });
    });
    expect(result.members).toEqual(new Set(result.people.map(partnerIdOf)));
    expect(result.counts).toEqual({ delivered: 400, rejected: 0, pending: 0, dlq: 0 });
    await noDlq();
  });

  it('bisects a batch the partner refuses whole for one bad record', async () => {
    const result = await run(harness, 'poison', 301, () => {
      partner().population.configure({
        badItems: 'rejectBatch',
        answer: 'empty',
        rejectUserIds: '^ppoison-000123$',
      });
    });
    const bad = partnerIdOf('poison-000123');
    expect(result.members).toEqual(new Set(result.people.map(partnerIdOf).filter((id) => id !== bad)));
    expect(result.counts).toEqual({ delivered: 299, rejected: 1, pending: 0, dlq: 0 });
    const rejected = await harness.store.rejections();
    expect(rejected).toContainEqual(
      expect.objectContaining({
        reason: 'partner_refused',
        // The user's keyed digest, never the id (docs/privacy.md).
        userDigest: userDigest(PRIVACY_KEY, 'local', 'poison-000123'),
        platformId: BATCH_PLATFORM,
      }),
    );
  });

  it('a short mutation count is resolved, not taken as success', async () => {
    const result = await run(harness, 'short', 101, () => {
      partner().population.configure({
        badItems: 'perItem',
        answer: 'count',
        rejectUserIds: '^pshort-00005[0-9]$',
      });
    });
    // The first user (sent before the settings) and 90 of the other 100.
    expect(result.members.size).toBe(91);
    expect(result.counts).toEqual({ delivered: 90, rejected: 10, pending: 0, dlq: 0 });
  });

  it('a deliver Lambda that crashes after its calls redelivers without adding anyone twice', async () => {
    const result = await run(harness, 'crash', 301, () => {
      crashes = 1;
    });
    expect(crashes).toBe(0);
    expect(result.members).toEqual(new Set(result.people.map(partnerIdOf)));
    expect(result.state?.duplicateAdds).toBe(0);
    expect(result.counts).toEqual({ delivered: 300, rejected: 0, pending: 0, dlq: 0 });
  });

  it('rides out a partner that is down, and drains the backlog when it is back', {
    timeout: 180_000,
  }, async () => {
    const people = users('down', 200);
    await sync(harness, SINGLE_PLATFORM, people);
    await harness.send(
      audienceEvent(people.slice(0, 1), { audience: 'aud-down', platforms: [SINGLE_PLATFORM] }),
    );
    await harness.idle();
    const before = await counts(SINGLE_PLATFORM);
    const down = partner().addFault({ pathPrefix: '/v1/segment', status: 503 });
    await harness.send(
      audienceEvent(people.slice(1), { audience: 'aud-down', platforms: [SINGLE_PLATFORM] }),
    );
    // Down for a while: wait until the partner has refused at least 8 calls (several receives).
    await waitFor(
      () =>
        (partner()
          .activeFaults()
          .find((fault) => fault.id === down.id)?.applied ?? 0) >= 8,
    );
    partner().clearFaults();
    await harness.idle();
    const segment = await segmentOf(harness, SINGLE_PLATFORM, 'aud-down');
    expect(new Set(partner().members(segment))).toEqual(new Set(people.map(partnerIdOf)));
    expect(diff(await counts(SINGLE_PLATFORM), before)).toEqual({
      delivered: 199,
      rejected: 0,
      pending: 0,
      dlq: 0,
    });
    await noDlq();
  });
});

/** Resolves when `condition` holds, checking as the partner's state changes (no fixed sleep). */
async function waitFor(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 20));
}

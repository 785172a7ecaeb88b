import type { SQSEvent } from 'aws-lambda';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DynamoPopulationStore } from '../../src/population/dynamo-store.ts';
import {
  audienceEvent,
  BATCH_PLATFORM,
  partnerIdOf,
  segmentOf,
  sync,
  usePopulationStack,
  users,
} from './population-support.ts';

/**
 * Exact accounting under crashes: the deliver Lambda dies after writing the memberships' states
 * and before counting them (the counting write fails once, as a crash there would), so the whole
 * batch comes back. Every accepted membership must still end counted exactly once.
 */

const harness = usePopulationStack({
  // A crashed invocation's batch comes back: Lambda after the visibility timeout, here at once.
  wrapDeliver: (handler) => async (event, context) => {
    try {
      return await handler(event, context);
    } catch (error) {
      await harness.expireVisibility(event as SQSEvent);
      throw error;
    }
  },
});

afterEach(() => {
  vi.restoreAllMocks();
});

describe('population accounting', () => {
  it('counts every membership exactly once when the deliver step dies between the state write and the count', async () => {
    const people = users('count-crash', 1200);
    await sync(harness, BATCH_PLATFORM, people);
    await harness.idle();
    const before = await harness.totals(BATCH_PLATFORM);
    const countWrite = DynamoPopulationStore.prototype.putTallies;
    let crashes = 0;
    vi.spyOn(DynamoPopulationStore.prototype, 'putTallies').mockImplementation(function (
      this: DynamoPopulationStore,
      tallies,
    ) {
      // The memberships' count (the invocation's calls are counted in a write of their own before).
      if (crashes === 0 && tallies.some((tally) => !tally.recordId.startsWith('calls#'))) {
        crashes += 1;
        return Promise.reject(new Error('crashed between the state write and the count'));
      }
      return countWrite.call(this, tallies);
    });

    for (let index = 0; index < people.length; index += 400) {
      await harness.send(audienceEvent(people.slice(index, index + 400), { audience: 'aud-count-crash' }));
    }
    await harness.idle();

    expect(crashes).toBe(1);
    const segment = await segmentOf(harness, BATCH_PLATFORM, 'aud-count-crash');
    expect(new Set(harness.stack.partner.members(segment))).toEqual(new Set(people.map(partnerIdOf)));
    const after = await harness.totals(BATCH_PLATFORM);
    // Conservation: 1200 accepted, 1200 in exactly one outcome (the redelivery sent nothing again).
    expect({
      delivered: after.delivered - before.delivered,
      pending: after.pending - before.pending,
      rejected: after.rejected - before.rejected,
      dlq: after.dlq - before.dlq,
      superseded: after.superseded - before.superseded,
    }).toEqual({ delivered: 1200, pending: 0, rejected: 0, dlq: 0, superseded: 0 });
    const state = harness.stack.partner.population
      .state()
      .find((entry) => String(entry.segment_id) === segment);
    expect(state).toMatchObject({ adds: 1200, duplicateAdds: 0 });
  });
});

import type { SQSEvent } from 'aws-lambda';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DynamoPopulationStore } from '../../src/population/dynamo-store.ts';
import { STATUS } from '../../src/population/progress.ts';
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
 * Order whatever the timing: the deliver Lambda dies (a crash, the function timeout) after the
 * partner acknowledged a membership and before that is written (its message's progress). Here an
 * add dies so, then a later remove of some of its users dies so, then the add comes back first:
 * the stale add must not put the removed users back at the partner, and every membership ends
 * counted exactly once. The remove meets the add's intents while the dead add's calls could still
 * be under way (until its deadline): it is held back until then, and sent after.
 */

const settled: { event: SQSEvent; crashed: boolean }[] = [];
const waiters = new Set<() => void>();

function settle(event: SQSEvent, crashed: boolean) {
  settled.push({ event, crashed });
  for (const wake of [...waiters]) wake();
}

/** Resolves once a delivery invocation matching `matches` has ended (awaited, not polled). */
async function delivery(matches: (entry: { event: SQSEvent; crashed: boolean }) => boolean) {
  for (;;) {
    const found = settled.find(matches);
    if (found) return found;
    await new Promise<void>((resolve) => {
      const wake = () => {
        waiters.delete(wake);
        resolve();
      };
      waiters.add(wake);
    });
  }
}

const harness = usePopulationStack({
  // A crashed batch is left invisible: the test brings it back when it wants (time compressed).
  // Each invocation has 8 s left (its calls end 3 s on): what a dead one may still have under way.
  wrapDeliver: (handler) => async (event, context) => {
    const shortened = { ...context, getRemainingTimeInMillis: () => 8_000 };
    try {
      const result = await handler(event, shortened);
      settle(event as SQSEvent, false);
      return result;
    } catch (error) {
      settle(event as SQSEvent, true);
      throw error;
    }
  },
});

afterEach(() => {
  vi.restoreAllMocks();
});

const messageIds = (event: SQSEvent) => event.Records.map((record) => record.messageId);

describe('population order under crashes', () => {
  it('never lets a redelivered older add undo a remove whose state write died after the partner call', async () => {
    const people = users('order-crash', 20);
    const removed = people.slice(0, 5);
    await sync(harness, BATCH_PLATFORM, people);
    await harness.idle();
    const before = await harness.totals(BATCH_PLATFORM);

    // The write after the partner's acknowledgement dies once for the add and once for the remove.
    let crashNext = true;
    const writeProgress = DynamoPopulationStore.prototype.recordProgress;
    vi.spyOn(DynamoPopulationStore.prototype, 'recordProgress').mockImplementation(function (
      this: DynamoPopulationStore,
      entries,
      nowMs,
    ) {
      if (crashNext && entries.some((entry) => entry.statuses.includes(STATUS.delivered))) {
        crashNext = false;
        return Promise.reject(new Error('timed out between the partner call and the progress write'));
      }
      return writeProgress.call(this, entries, nowMs);
    });

    const now = Date.now();
    await harness.send(
      audienceEvent(people, { audience: 'aud-order-crash', ts: new Date(now - 60_000).toISOString() }),
    );
    const add = await delivery((entry) => entry.crashed);
    const segment = await segmentOf(harness, BATCH_PLATFORM, 'aud-order-crash');
    expect(new Set(harness.stack.partner.members(segment))).toEqual(new Set(people.map(partnerIdOf)));

    crashNext = true;
    await harness.send(
      audienceEvent(removed, {
        audience: 'aud-order-crash',
        op: 'remove',
        ts: new Date(now - 30_000).toISOString(),
      }),
    );
    const remove = await delivery((entry) => entry.crashed && entry !== add);
    const kept = people.slice(5).map(partnerIdOf);
    expect(new Set(harness.stack.partner.members(segment))).toEqual(new Set(kept));

    // The older add comes back first (SQS redelivers in any order): it is stale, nothing is sent.
    const addIds = messageIds(add.event);
    await harness.expireVisibility(add.event);
    await delivery((entry) => !entry.crashed && messageIds(entry.event).some((id) => addIds.includes(id)));
    expect(new Set(harness.stack.partner.members(segment))).toEqual(new Set(kept));

    // Then the remove: the same event, never acknowledged, is sent again and recorded.
    await harness.expireVisibility(remove.event);
    await harness.idle();
    expect(new Set(harness.stack.partner.members(segment))).toEqual(new Set(kept));
    for (const user of removed) {
      const [state] = await harness.store.membershipsOf(BATCH_PLATFORM, user);
      expect(state).toMatchObject({ op: 'remove', acked: true });
    }

    // Conservation: 25 accepted (20 adds, 5 removes), each in exactly one outcome.
    const after = await harness.totals(BATCH_PLATFORM);
    expect({
      delivered: after.delivered - before.delivered,
      pending: after.pending - before.pending,
      rejected: after.rejected - before.rejected,
      dlq: after.dlq - before.dlq,
      superseded: after.superseded - before.superseded,
    }).toEqual({ delivered: 20, pending: 0, rejected: 0, dlq: 0, superseded: 5 });
  });
});

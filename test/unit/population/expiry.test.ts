import { describe, expect, it } from 'vitest';
import type { ExpiryIndex } from '../../../src/population/dynamo-store.ts';
import {
  EXPIRY_OVERLAP_SECONDS,
  EXPIRY_SHARDS,
  expiryShard,
  removalAtExpiry,
  removalDueAt,
  sendsRemovalsAtExpiry,
  sweepExpired,
} from '../../../src/population/expiry.ts';
import { decodeDeliveryMessage, type Membership } from '../../../src/population/membership.ts';
import { orderVerdict } from '../../../src/population/ordering.ts';
import { membership, seedConnector } from './support.ts';

describe('removals at expiry: which partners, when', () => {
  it('applies to partners with a removal call and no lifetime in the add', () => {
    expect(sendsRemovalsAtExpiry(seedConnector())).toBe(true);
    expect(sendsRemovalsAtExpiry(seedConnector({ removal: { via: 'ttl' } }))).toBe(false);
    expect(
      sendsRemovalsAtExpiry(
        seedConnector({ item: { segment: '{segmentId}', userid: '{userId}', ttl: '{ttlSeconds}' } }),
      ),
    ).toBe(false);
  });

  it("is due at the event's ts plus its ttlSeconds, else the connector's defaultTtlSeconds", () => {
    const add = membership(1, { ts: 1_000_000, ttlSeconds: 120 });
    expect(removalDueAt(seedConnector(), add)).toBe(1000 + 120);
    expect(removalDueAt(seedConnector({ defaultTtlSeconds: 600 }), membership(1, { ts: 1_000_000 }))).toBe(
      1600,
    );
    expect(removalDueAt(seedConnector(), membership(1, { ts: 1_000_000 }))).toBeUndefined();
    expect(removalDueAt(seedConnector(), { ...add, op: 'remove' })).toBeUndefined();
  });

  it("removes with the add's ts: it ends that add, and loses to any newer event", () => {
    const add = membership(1, { ts: 5_000, ttlSeconds: 60 });
    const removal = removalAtExpiry(add);
    expect(removal).toMatchObject({ op: 'remove', ts: 5_000, expiry: true });
    expect(removal.ttlSeconds).toBeUndefined();
    expect(orderVerdict({ ts: 5_000, op: 'add' }, removal)).toBe('apply');
    expect(orderVerdict({ ts: 6_000, op: 'add' }, removal)).toBe('stale');
    expect(orderVerdict({ ts: 5_000, op: 'remove' }, removal)).toBe('duplicate');
  });

  it('spreads users over the shards', () => {
    const shards = new Set(Array.from({ length: 500 }, (_, i) => expiryShard(`dmp-user-${i}`)));
    expect(shards.size).toBe(EXPIRY_SHARDS);
  });
});

/** The index as a sorted list per shard, one item a page (pagination exercised). */
class ListIndex implements ExpiryIndex {
  swept: number | undefined;
  readonly reads: { from: number; to: number }[] = [];
  constructor(private readonly due: (Membership & { removeAt: number })[]) {}
  async dueAdds(
    _platformId: number,
    shard: number,
    from: number,
    to: number,
    startKey?: Record<string, never>,
  ) {
    this.reads.push({ from, to });
    const matching = this.due
      .filter((m) => expiryShard(m.dmpUserId) === shard && m.removeAt >= from && m.removeAt <= to)
      .sort((a, b) => a.removeAt - b.removeAt);
    const at = startKey ? Number((startKey as unknown as { at: number }).at) : 0;
    const page = matching.slice(at, at + 1);
    return {
      due: page,
      ...(at + 1 < matching.length ? { nextKey: { at: at + 1 } as unknown as Record<string, never> } : {}),
    };
  }
  async sweptUpTo() {
    return this.swept;
  }
  async setSweptUpTo(_platformId: number, upTo: number) {
    this.swept = upTo;
  }
}

describe('the expiry sweep', () => {
  const due = (index: number, removeAt: number) => ({ ...membership(index, { ts: 1000 }), removeAt });

  it('sends every due add as a removal and moves the watermark to now', async () => {
    const index = new ListIndex([due(1, 100), due(2, 200), due(3, 300), due(4, 5_000)]);
    const sent: string[] = [];
    const result = await sweepExpired({
      index,
      queues: { send: async (_p, bodies) => void sent.push(...bodies) },
      platforms: [{ platformId: 99999, batchSize: 1000 }],
      nowMs: 1_000_000,
      deadlineMs: Number.POSITIVE_INFINITY,
    });
    const removals = sent.flatMap((body) => decodeDeliveryMessage(body) ?? []);
    expect(removals.map((m) => m.dmpUserId).sort()).toEqual(
      [1, 2, 3].map((i) => membership(i).dmpUserId).sort(),
    );
    expect(removals.every((m) => m.op === 'remove' && m.expiry === true && m.ts === 1000)).toBe(true);
    expect(result).toEqual({ removals: 3, sweptUpTo: { 99999: 1000 } });
    expect(index.swept).toBe(1000);

    // The next run reads from the watermark less the overlap.
    index.reads.length = 0;
    await sweepExpired({
      index,
      queues: { send: async () => {} },
      platforms: [{ platformId: 99999, batchSize: 1000 }],
      nowMs: 2_000_000,
      deadlineMs: Number.POSITIVE_INFINITY,
    });
    expect(index.reads.every((read) => read.from === 1000 - EXPIRY_OVERLAP_SECONDS && read.to === 2000)).toBe(
      true,
    );
  });

  it('out of time, keeps the watermark below what it has not sent', async () => {
    const index = new ListIndex([due(1, 100), due(2, 200)]);
    const result = await sweepExpired({
      index,
      queues: { send: async () => {} },
      platforms: [{ platformId: 99999, batchSize: 1000 }],
      nowMs: 1_000_000,
      deadlineMs: 0,
    });
    expect(result.removals).toBe(0);
    expect(result.sweptUpTo[99999]).toBe(99);
  });

  it('leaves the watermark where it was when sending fails', async () => {
    const index = new ListIndex([due(1, 100)]);
    index.swept = 50;
    await expect(
      sweepExpired({
        index,
        queues: {
          send: async () => {
            throw new Error('SQS is down');
          },
        },
        platforms: [{ platformId: 99999, batchSize: 1000 }],
        nowMs: 1_000_000,
        deadlineMs: Number.POSITIVE_INFINITY,
      }),
    ).rejects.toThrow('SQS is down');
    expect(index.swept).toBe(50);
  });
});

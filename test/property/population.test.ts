import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Membership, membershipKey } from '../../src/population/membership.ts';
import {
  type AppliedState,
  compareEvents,
  newestPerKey,
  orderVerdict,
} from '../../src/population/ordering.ts';
import { planRequests } from '../../src/population/requests.ts';
import { AdaptiveThrottle, rateWindow } from '../../src/population/throttle.ts';
import { membership, seedConnector } from '../unit/population/support.ts';

const event = fc.record({
  user: fc.integer({ min: 0, max: 4 }),
  segment: fc.constantFrom('1', '2'),
  op: fc.constantFrom<'add' | 'remove'>('add', 'remove'),
  ts: fc.integer({ min: 0, max: 20 }),
});

describe('ordering per (platform, segment, user)', () => {
  it('ends in the newest event whatever the delivery order and duplicates, applying each once', () => {
    fc.assert(
      fc.property(
        fc.array(event, { minLength: 1, maxLength: 40 }),
        fc.array(fc.nat(), { maxLength: 40 }),
        (events, dupes) => {
          const memberships = events.map((e) =>
            membership(e.user, { segmentId: e.segment, op: e.op, ts: e.ts }),
          );
          // SQS may deliver any of them again, in any order.
          const deliveries = [
            ...memberships,
            ...dupes.map((d) => memberships[d % memberships.length] as Membership),
          ];
          const shuffled = fc.sample(
            fc.shuffledSubarray(deliveries, { minLength: deliveries.length }),
            1,
          )[0] as Membership[];
          const state = new Map<string, AppliedState>();
          const applied = new Map<string, number>();
          // Each receive is a batch of 1-3 messages: newest per key first, then the stored order.
          for (let index = 0; index < shuffled.length; index += 3) {
            const { newest } = newestPerKey(shuffled.slice(index, index + 3));
            for (const m of newest) {
              const key = membershipKey(m);
              if (orderVerdict(state.get(key), m) !== 'apply') continue;
              state.set(key, { ts: m.ts, op: m.op });
              const id = `${key}#${m.ts}#${m.op}`;
              applied.set(id, (applied.get(id) ?? 0) + 1);
            }
          }
          for (const count of applied.values()) expect(count).toBe(1);
          const expected = new Map<string, AppliedState>();
          for (const m of memberships) {
            const key = membershipKey(m);
            const current = expected.get(key);
            if (!current || compareEvents(m, current) > 0) expected.set(key, { ts: m.ts, op: m.op });
          }
          expect(state).toEqual(expected);
        },
      ),
    );
  });
});

describe('request planning', () => {
  it('puts every membership in exactly one request within batchSize and maxRequestBytes', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            id: fc.string({ unit: fc.constantFrom(...'abcdef0123456789-_.'), minLength: 1, maxLength: 60 }),
            segment: fc.constantFrom('12345', '45678', '9'),
            op: fc.constantFrom<'add' | 'remove'>('add', 'remove'),
          }),
          { maxLength: 300 },
        ),
        fc.integer({ min: 1, max: 50 }),
        fc.integer({ min: 1024, max: 4096 }),
        (rows, batchSize, maxRequestBytes) => {
          const memberships = rows.map((row, i) =>
            membership(i, { partnerUserId: row.id, segmentId: row.segment, op: row.op }),
          );
          const plan = planRequests(memberships, {
            connector: seedConnector({ batchSize, maxRequestBytes }),
            environment: 't',
          });
          expect(plan.refused).toEqual([]);
          const sent = plan.requests.flatMap((r) => r.items);
          expect(new Set(sent)).toEqual(new Set(memberships));
          expect(sent).toHaveLength(memberships.length);
          for (const { request, items } of plan.requests) {
            expect(items.length).toBeLessThanOrEqual(batchSize);
            expect(request.body?.length ?? 0).toBeLessThanOrEqual(maxRequestBytes);
            expect(new Set(items.map((m) => m.op)).size).toBe(1);
            expect(JSON.parse(request.body?.toString() ?? '[]')).toHaveLength(items.length);
          }
          // As few calls as the limits allow per op: never a call per segment.
          for (const op of ['add', 'remove'] as const) {
            const count = memberships.filter((m) => m.op === op).length;
            const calls = plan.requests.filter((r) => r.items[0]?.op === op).length;
            if (count > 0 && maxRequestBytes >= 4096 && batchSize <= 20)
              expect(calls).toBe(Math.ceil(count / batchSize));
          }
        },
      ),
    );
  });
});

describe('throttle', () => {
  it('a fixed window holds at least one call and never more than the rate', () => {
    fc.assert(
      fc.property(fc.double({ min: 0.01, max: 100_000, noNaN: true }), (rate) => {
        const window = rateWindow(rate);
        expect(window.callsPerWindow).toBeGreaterThanOrEqual(1);
        expect(window.callsPerWindow / (window.windowMs / 1000)).toBeLessThanOrEqual(
          Math.max(rate, 1 / (window.windowMs / 1000)) + 1e-9,
        );
      }),
    );
  });

  it('backs off on 429s, holds for Retry-After, and recovers by itself', () => {
    let now = 0;
    const throttle = new AdaptiveThrottle(100, () => now);
    expect(throttle.rate()).toBe(100);
    for (let i = 0; i < 10; i++) throttle.observe(i < 5 ? 429 : 200, i === 0 ? 2000 : undefined);
    expect(throttle.heldUntil()).toBe(2000);
    now = 1000;
    expect(throttle.rate()).toBeCloseTo(70);
    now = 2500;
    expect(throttle.heldUntil()).toBe(0);
    now = 20_000;
    expect(throttle.rate()).toBe(100);
  });

  it('learns a rate for partners without one when they throttle', () => {
    let now = 0;
    const throttle = new AdaptiveThrottle(undefined, () => now);
    expect(throttle.rate()).toBeUndefined();
    for (let i = 0; i < 17; i++) throttle.observe(200);
    for (let i = 0; i < 3; i++) throttle.observe(429);
    now = 1000;
    // 18 tries in the second before the first 429, then x0.7 for 15% throttled.
    expect(throttle.rate()).toBeCloseTo(18 * 0.7);
    now = 10_000;
    expect(throttle.rate()).toBeUndefined();
  });
});

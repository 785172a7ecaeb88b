import { describe, expect, it } from 'vitest';
import {
  callsTally,
  classifyEventTally,
  lapsed,
  NO_SEGMENT,
  pendingEventKey,
  pendingTallies,
} from '../../../src/population/accounting.ts';
import { type DeliveryRecord, tallies } from '../../../src/population/deliver-service.ts';
import {
  decodeDeliveryMessage,
  type Membership,
  packDeliveryMessages,
} from '../../../src/population/membership.ts';
import { StatusLine } from '../../../src/population/progress.ts';
import { releaseTarget } from '../../../src/population/release-service.ts';
import { seedConnector } from './support.ts';

/**
 * The pure rules of pending accounting: a pending tally counted `lapsed` once its time is past,
 * released events marked in their delivery message and counted in their own event tally, the
 * partner calls' tally keyed by invocation.
 */

const NOW = 1_800_000_000;

const event = {
  platformId: 99999,
  segmentId: '12345',
  audienceId: 'aud-1',
  dmpUserId: 'dmp-user-1',
  op: 'add' as const,
  ts: 1_764_000_000_000,
};

describe('classifyEventTally', () => {
  it('counts a pending tally lapsed from its lapse time on, and leaves every other count alone', () => {
    expect(classifyEventTally({ pending: 1 }, NOW + 1, NOW)).toEqual({ pending: 1 });
    expect(classifyEventTally({ pending: 1 }, NOW, NOW)).toEqual({ lapsed: 1 });
    expect(classifyEventTally({ pending: 1 }, undefined, NOW)).toEqual({ pending: 1 });
    expect(classifyEventTally({ superseded: 1 }, NOW - 10, NOW)).toEqual({ superseded: 1 });
    expect(classifyEventTally({ delivered: 1 }, NOW - 10, NOW)).toEqual({ delivered: 1 });
    expect(lapsed(NOW, NOW)).toBe(true);
    expect(lapsed(NOW + 1, NOW)).toBe(false);
  });
});

describe('pendingTallies', () => {
  it('carries the lapse time on a pending count only, and counts the replaced events superseded', () => {
    const pending = { ...event, replaced: [{ ts: event.ts - 1, op: 'remove' as const }], lapseAt: NOW };
    expect(pendingTallies([pending], { pending: 1 })).toEqual([
      {
        platformId: 99999,
        segmentId: '12345',
        key: pendingEventKey(event),
        counts: { pending: 1 },
        lapseAt: NOW,
      },
      {
        platformId: 99999,
        segmentId: '12345',
        key: pendingEventKey({ ...event, ts: event.ts - 1, op: 'remove' }),
        counts: { superseded: 1 },
      },
    ]);
    expect(pendingTallies([pending], {})[0]).not.toHaveProperty('lapseAt');
    // The user enters the key as a digest, never in clear.
    expect(pendingEventKey(event)).not.toContain('dmp-user-1');
  });
});

describe('released events in delivery messages', () => {
  it('round-trip their released flag (op A / R), next to plain adds, removes and expiries', () => {
    const memberships: Membership[] = [
      { ...event, partnerUserId: 'p1', released: true },
      { ...event, dmpUserId: 'dmp-user-2', partnerUserId: 'p2', op: 'remove', released: true },
      { ...event, dmpUserId: 'dmp-user-3', partnerUserId: 'p3' },
      { ...event, dmpUserId: 'dmp-user-4', partnerUserId: 'p4', op: 'remove', expiry: true },
    ];
    const [body] = packDeliveryMessages(99999, memberships, 1000);
    expect(JSON.parse(body as string).items.map((item: unknown[]) => item[4])).toEqual(['A', 'R', 'a', 'x']);
    expect(decodeDeliveryMessage(body as string)).toEqual(memberships);
  });
});

describe('the deliver step’s tallies', () => {
  it('counts a released membership in its event tally, the others in their message’s tally', () => {
    const record: DeliveryRecord = {
      id: 'msg-1',
      lastReceive: false,
      memberships: [
        { ...event, partnerUserId: 'p1', released: true },
        { ...event, dmpUserId: 'dmp-user-2', partnerUserId: 'p2' },
        { ...event, dmpUserId: 'dmp-user-3', partnerUserId: 'p3', released: true },
      ],
    };
    const line = new StatusLine(3);
    line.set(0, 'd');
    line.set(1, 'd');
    line.set(2, 's');
    const { byMessage, byEvent } = tallies([record], new Map([['msg-1', line]]), [], () => true);
    expect(byMessage).toEqual([
      { recordId: 'msg-1', platformId: 99999, segmentId: '12345', counts: { delivered: 1 } },
    ]);
    expect(byEvent).toEqual([
      { platformId: 99999, segmentId: '12345', key: pendingEventKey(event), counts: { delivered: 1 } },
      {
        platformId: 99999,
        segmentId: '12345',
        key: pendingEventKey({ ...event, dmpUserId: 'dmp-user-3' }),
        counts: { superseded: 1 },
      },
    ]);
  });

  it('counts nothing for a message not settled (it comes back), and dlq on its last receive', () => {
    const record: DeliveryRecord = {
      id: 'msg-2',
      lastReceive: true,
      memberships: [{ ...event, partnerUserId: 'p1', released: true }],
    };
    const lines = new Map([['msg-2', new StatusLine(1)]]);
    expect(tallies([record], lines, [], () => false)).toEqual({ byMessage: [], byEvent: [] });
    expect(tallies([record], lines, [], () => true).byEvent).toMatchObject([{ counts: { dlq: 1 } }]);
  });
});

describe('callsTally', () => {
  it('keys the calls by invocation, under no segment', () => {
    expect(callsTally(99999, 'inv-1', 3)).toEqual({
      recordId: 'calls#inv-1',
      platformId: 99999,
      segmentId: NO_SEGMENT,
      counts: { calls: 3 },
    });
  });
});

describe('releaseTarget', () => {
  it('sends API platforms to their queue with their batch size, file platforms to staging', () => {
    const connector = seedConnector();
    expect(releaseTarget({ id: 1, name: 'p', connector } as never)).toEqual({
      batchSize: connector.population.batchSize,
    });
    expect(
      releaseTarget({ id: 1, name: 'p', connector: { ...connector, population: { mode: 'file' } } } as never),
    ).toBe('file');
    expect(releaseTarget({ id: 1, name: 'p' } as never)).toBeUndefined();
    expect(releaseTarget(undefined)).toBeUndefined();
  });
});

import { describe, expect, it } from 'vitest';
import { callDeadline, intentStopAt } from '../../../src/population/deliver-service.ts';
import { orderVerdict } from '../../../src/population/ordering.ts';
import {
  IN_FLIGHT_MARGIN_MS,
  inFlightUntil,
  outcomeOf,
  STATUS,
  StatusLine,
} from '../../../src/population/progress.ts';

describe('order against the stored intent', () => {
  const remove = { ts: 2_000, op: 'remove' as const };

  it('skips an older event against an intent the partner has not acknowledged yet', () => {
    expect(orderVerdict({ ...remove, acked: false }, { ts: 1_000, op: 'add' })).toBe('stale');
    expect(orderVerdict({ ...remove, acked: false }, { ts: 2_000, op: 'add' })).toBe('stale');
  });

  it('sends the same event again while it is not acknowledged, and only then', () => {
    expect(orderVerdict({ ...remove, acked: false }, remove)).toBe('apply');
    expect(orderVerdict({ ...remove, acked: true }, remove)).toBe('duplicate');
    // States written before intents existed were written after the acknowledgement.
    expect(orderVerdict(remove, remove)).toBe('duplicate');
  });

  it('stops calls early enough for the writes after them, in proportion to the work', () => {
    // 20 progress and tally writes: 2 rounds of 16 at 100 ms each, kept twice; at least a second.
    expect(callDeadline(60_000, 100, 20)).toBe(59_000);
    expect(callDeadline(60_000, 1_000, 20)).toBe(56_000);
    // Whole milliseconds (an abort signal takes nothing else).
    expect(Number.isInteger(callDeadline(60_000, 333.3, 20))).toBe(true);
  });

  it('starts intents during the first half of the time left', () => {
    expect(intentStopAt(1_000, 56_000)).toBe(28_500);
    expect(intentStopAt(1_000, 1_001)).toBe(1_000);
  });
});

describe('a newer event against an older one whose call may still be under way', () => {
  const now = 100_000;
  const older = { ts: 1_000, op: 'add' as const, by: 'msg-a', ix: 3, dl: now + 10_000 };
  const settledBy = (statuses: string) => new Map([['msg-a', { statuses, writtenAt: now }]]);

  it('waits until the other invocation cannot be calling any more (its deadline and a margin)', () => {
    expect(inFlightUntil(older, 'msg-b', new Map(), now)).toBe(now + 10_000 + IN_FLIGHT_MARGIN_MS);
    // Its message settled something else, not this membership: still possibly under way.
    expect(inFlightUntil(older, 'msg-b', settledBy('ddd-'), now)).toBe(now + 10_000 + IN_FLIGHT_MARGIN_MS);
  });

  it('goes at once when the other message settled it, its calls ended, or it is our own', () => {
    expect(inFlightUntil(older, 'msg-b', settledBy('---d'), now)).toBeUndefined();
    expect(inFlightUntil(older, 'msg-b', settledBy('---r'), now)).toBeUndefined();
    expect(inFlightUntil(older, 'msg-b', new Map(), now + 10_000 + IN_FLIGHT_MARGIN_MS)).toBeUndefined();
    expect(inFlightUntil(older, 'msg-a', new Map(), now)).toBeUndefined();
    // States written before the deadlines were stored: their calls ended long ago.
    expect(inFlightUntil({ ts: 1_000, op: 'add', by: 'msg-a' }, 'msg-b', new Map(), now)).toBeUndefined();
  });
});

describe('progress of a delivery message', () => {
  it('keeps the first settlement of a membership, and counts what a settled message says', () => {
    const line = new StatusLine(3, 'd--');
    line.set(0, STATUS.superseded);
    line.set(1, STATUS.rejected);
    expect(line.toString()).toBe('dr-');
    expect(line.dirty).toBe(true);
    expect(outcomeOf('d', false)).toBe('delivered');
    expect(outcomeOf('d', true)).toBe('expired');
    expect(outcomeOf('u', false)).toBeUndefined();
    expect(outcomeOf('-', false)).toBe('dlq');
    expect(outcomeOf('-', true)).toBeUndefined();
  });
});

import { describe, expect, it } from 'vitest';
import { callDeadline } from '../../../src/population/deliver-service.ts';
import { orderVerdict } from '../../../src/population/ordering.ts';

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
    expect(callDeadline(60_000, 100)).toBe(59_000);
    expect(callDeadline(60_000, 4_000)).toBe(52_000);
  });
});

import { describe, expect, it } from 'vitest';
import { segmentDeliveries } from '../../../src/population/delivery-summary.ts';
import type { Membership } from '../../../src/population/membership.ts';

const membership = (segmentId: string, dmpUserId: string, op: 'add' | 'remove' = 'add'): Membership => ({
  platformId: 99999,
  segmentId,
  audienceId: `aud-${segmentId}`,
  dmpUserId,
  partnerUserId: `partner-${dmpUserId}`,
  op,
  ts: 1_700_000_000_000,
});

describe('segment deliveries (the deliver log line per segment)', () => {
  it('counts adds and removes of settled records per segment, and the memberships left to retry', () => {
    const summaries = segmentDeliveries(
      [
        {
          id: 'm1',
          memberships: [membership('s1', 'user-0001'), membership('s1', 'user-0002', 'remove')],
          lastReceive: false,
        },
        {
          id: 'm2',
          memberships: [membership('s2', 'user-0003'), membership('s1', 'user-0004')],
          lastReceive: false,
        },
        { id: 'm3', memberships: undefined, lastReceive: false },
      ],
      new Set(['m2']),
    );
    expect(summaries).toEqual([
      { platformId: 99999, segmentId: 's1', audienceId: 'aud-s1', adds: 1, removes: 1, retried: 1 },
      { platformId: 99999, segmentId: 's2', audienceId: 'aud-s2', adds: 0, removes: 0, retried: 1 },
    ]);
  });

  it('holds no user id, DMP or partner', () => {
    const text = JSON.stringify(
      segmentDeliveries(
        [{ id: 'm1', memberships: [membership('s1', 'user-0001')], lastReceive: false }],
        new Set(),
      ),
    );
    expect(text).not.toContain('user-0001');
  });
});

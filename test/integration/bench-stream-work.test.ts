import { describe, expect, it } from 'vitest';
import { measureSyncWorkInChild, type SYNC_KINDS } from '../../bench/sync-work.ts';

/**
 * The cost model adds the mapping stream consumer's work to each sync (bench/stream-work.ts): this
 * checks what is counted against the release design on the real local stack. A new or changed
 * partner id reaches release-pending, which reads the user's pending events (nothing pending: the
 * common case; the tombstone, the privacy check, is read only when something is) and writes nothing; a refresh and a replay
 * guard are dropped by the stream's filter; a request that writes nothing puts nothing there.
 */
describe('bench: work of the mapping stream consumer per sync request', () => {
  it('counts the records, the filter and the release handler as the design says', async () => {
    const work = await measureSyncWorkInChild();
    const of = (kind: (typeof SYNC_KINDS)[number]) => work.find((request) => request.kind === kind)!.stream;

    for (const kind of ['new', 'changed', 'signed-static-new'] as const) {
      expect(of(kind), kind).toMatchObject({
        delivered: 1,
        invocations: 1,
        calls: { QueryCommand: 1 },
        // The strongly consistent Query of pending events that finds none, billed at its minimum;
        // no tombstone read, as nothing is about to be released.
        dynamoCalls: 1,
        readUnits: 1,
        writeUnits: 0,
      });
      expect(of(kind).logBytes, kind).toBeGreaterThan(0);
    }
    expect(of('new').records).toBe(1);
    expect(of('changed').records).toBe(1);
    // The mapping and the replay guard: the guard is dropped.
    expect(of('signed-static-new').records).toBe(2);
    expect(of('refreshed')).toMatchObject({ records: 1, delivered: 0, invocations: 0, dynamoCalls: 0 });
    // No replay guard; the signed platform takes no population, so nothing is read.
    expect(of('signed-new')).toMatchObject({ records: 1, delivered: 1, invocations: 1, dynamoCalls: 0 });
    for (const kind of ['unchanged', 'pixel'] as const) {
      expect(of(kind), kind).toMatchObject({ records: 0, delivered: 0, invocations: 0, logBytes: 0 });
    }
  });
});

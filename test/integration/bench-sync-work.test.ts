import { describe, expect, it } from 'vitest';
import { measureSyncWorkInChild, SYNC_KINDS } from '../../bench/sync-work.ts';

/**
 * The cost model prices what bench/sync-work.ts counts: this checks the counting against the
 * storage design of docs/user-sync.md ("Storage and write cost") on the real local stack.
 */
describe('bench: work per sync request', () => {
  it('counts the calls, capacity and bytes of each kind of request as the storage design says', async () => {
    const work = await measureSyncWorkInChild();
    expect(work.map((request) => request.kind)).toEqual([...SYNC_KINDS]);
    const of = (kind: (typeof SYNC_KINDS)[number]) => work.find((request) => request.kind === kind)!;

    // One conditional write for the common callbacks (docs/user-sync.md, "Storage and write cost").
    expect(of('new')).toMatchObject({
      calls: { PutItemCommand: 1 },
      dynamoCalls: 1,
      writeUnits: 1,
      readUnits: 0,
    });
    // (The clock jump of this case can wake other local consumers on the shared client: only the
    // mapping calls are counted here.)
    expect(of('refreshed')).toMatchObject({ calls: { UpdateItemCommand: 1 }, writeUnits: 1 });
    expect(of('refreshed').calls['GetItemCommand'] ?? 0).toBe(0);
    expect(of('refreshed').calls['PutItemCommand'] ?? 0).toBe(0);
    // A repeat inside the interval (the cookie says the mapping is fresh): one consistent read, no write.
    expect(of('unchanged')).toMatchObject({ calls: { GetItemCommand: 1 }, dynamoCalls: 1, writeUnits: 0 });
    // An id change, from a browser whose dmp_ss names the stored id by its digest: the change alone.
    expect(of('changed')).toMatchObject({
      calls: { UpdateItemCommand: 1 },
      dynamoCalls: 1,
      readUnits: 0,
      writeUnits: 1,
    });
    // Signed over the token /sync minted for this browser: one write, no replay guard.
    expect(of('signed-new')).toMatchObject({
      calls: { PutItemCommand: 1 },
      dynamoCalls: 1,
      readUnits: 0,
      writeUnits: 1,
    });
    // Signed over the static token: the replay guard is one more conditional write.
    expect(of('signed-static-new')).toMatchObject({
      calls: { PutItemCommand: 2 },
      dynamoCalls: 2,
      readUnits: 0,
      writeUnits: 2,
    });
    // The pixel reads the browser's mappings (one eventually consistent Query) and writes nothing.
    expect(of('pixel')).toMatchObject({ calls: { QueryCommand: 1 }, readUnits: 0.5, writeUnits: 0 });

    for (const request of work) {
      expect(request.dynamoCalls, request.kind).toBe(
        Object.values(request.calls).reduce((sum, count) => sum + count, 0),
      );
      expect(request.logBytes, request.kind).toBeGreaterThan(0);
      expect(request.emfBytes, request.kind).toBeLessThanOrEqual(request.logBytes);
      expect(request.responseBytes, request.kind).toBeGreaterThan(0);
    }
  });
});

import { describe, expect, it } from 'vitest';
import type { PlatformConfig } from '../../../src/config/schema.ts';
import { PlatformSchema } from '../../../src/config/schema.ts';
import type { FileStaging, StagedMembership } from '../../../src/files/staging.ts';
import { pendingEventKey, type RejectedEntry } from '../../../src/population/accounting.ts';
import { decodeDeliveryMessage, type Membership } from '../../../src/population/membership.ts';
import { releasePending } from '../../../src/population/release-service.ts';
import {
  type RouteServiceDeps,
  routeRecords,
  routeWithinDeadline,
} from '../../../src/population/route-service.ts';
import { SegmentNotReadyError } from '../../../src/segments/segment-service.ts';
import { seedConnector } from './support.ts';

/**
 * The route step's decisions with in-memory stores (the DynamoDB and SQS adapters are exercised by
 * test/integration/population*.test.ts): where each (platform, user) goes, what is set aside, what
 * comes back.
 */

const API = 99999;
const FILES = 99998;
const SLOW = 99997;

function platform(id: number, connector: unknown): PlatformConfig {
  return PlatformSchema.parse({ id, name: `p${id}`, connector });
}

const platforms = new Map<number, PlatformConfig>([
  [API, platform(API, seedConnector())],
  [SLOW, platform(SLOW, seedConnector())],
  [
    FILES,
    platform(FILES, {
      ...seedConnector(),
      population: { mode: 'file', removal: { via: 'opColumn' } },
      files: { destination: { type: 's3', bucket: 'partner-bucket' }, opColumn: true },
    }),
  ],
]);

function deps(staged: StagedMembership[] | undefined) {
  const sent: Membership[] = [];
  const pending: Omit<Membership, 'partnerUserId'>[] = [];
  const rejected: RejectedEntry[] = [];
  const files: FileStaging | undefined = staged && {
    async stage(memberships) {
      staged.push(...memberships);
    },
  };
  const value: RouteServiceDeps = {
    platform: (id) => platforms.get(id),
    segments: {
      async ensure(p) {
        if (p.id === SLOW) throw new SegmentNotReadyError('creating', undefined, { reason: 'inProgress' });
        return { partnerSegmentId: p.id === FILES ? 'file-seg' : '12345' };
      },
    },
    mappings: {
      async lookup(pairs) {
        return new Map(
          pairs
            .filter((pair) => pair.dmpUserId !== 'unsynced-1')
            .map((pair) => [`${pair.platformId}#${pair.dmpUserId}`, `p-${pair.dmpUserId}`]),
        );
      },
    },
    pending: {
      async putPending(memberships) {
        pending.push(...memberships);
        return { held: memberships.map((m) => ({ ...m, replaced: [], lapseAt: 2e9 })), outranked: [] };
      },
      listPending: async () => [],
      forgetReplaced: async () => {},
      deletePending: async () => true,
    },
    accounting: {
      putTallies: async () => {},
      putEventTallies: async () => {},
      putPendingTallies: async () => {},
      markHandedOver: async () => {},
      settleEventTallies: async () => {},
      clearPendingTallies: async () => {},
      eventTalliesFound: async () => new Set<string>(),
      async recordRejections(entries) {
        rejected.push(...entries);
        return new Set(entries.map((entry) => entry.id));
      },
    },
    queues: {
      async send(_platformId, bodies) {
        for (const body of bodies) sent.push(...(decodeDeliveryMessage(body) ?? []));
      },
    },
    files,
    pendingKeepSeconds: 3600,
  };
  return { value, sent, pending, rejected };
}

const event = (platformIds: number[], users: string[]) =>
  JSON.stringify({
    v: 1,
    audience: { id: 'aud-1', name: 'One' },
    platforms: platformIds,
    op: 'add',
    users,
    ts: '2026-11-28T12:00:00Z',
  });

describe('routeRecords', () => {
  it('sends API platforms to their delivery queue, file platforms to staging, unsynced users to pending', async () => {
    const staged: StagedMembership[] = [];
    const { value, sent, pending } = deps(staged);
    const result = await routeRecords(
      [{ id: 'm1', body: event([API, FILES], ['dmp-user-1', 'unsynced-1']) }],
      value,
    );
    expect(result.failedRecordIds.size).toBe(0);
    expect(sent).toMatchObject([
      { platformId: API, segmentId: '12345', dmpUserId: 'dmp-user-1', partnerUserId: 'p-dmp-user-1' },
    ]);
    expect(staged).toEqual([
      {
        platformId: FILES,
        segmentId: 'file-seg',
        audienceId: 'aud-1',
        dmpUserId: 'dmp-user-1',
        partnerUserId: 'p-dmp-user-1',
        op: 'add',
        ts: '2026-11-28T12:00:00.000Z',
      },
    ]);
    expect(pending.map((m) => [m.platformId, m.dmpUserId]).sort()).toEqual(
      [
        [FILES, 'unsynced-1'],
        [API, 'unsynced-1'],
      ].sort(),
    );
  });

  it('retries a record whose file platform has no staging yet, and one whose segment is not ready', async () => {
    const { value, sent } = deps(undefined);
    const result = await routeRecords(
      [
        { id: 'files', body: event([FILES], ['dmp-user-1']) },
        { id: 'slow', body: event([SLOW], ['dmp-user-2']) },
        { id: 'fine', body: event([API], ['dmp-user-3']) },
      ],
      value,
    );
    expect([...result.failedRecordIds].sort()).toEqual(['files', 'slow']);
    // The bulk step that failed (no staging) sends the others of that step back too; nothing is lost.
    expect(sent.every((m) => m.dmpUserId === 'dmp-user-3')).toBe(true);
  });

  it('sets aside bad messages and bad users at once, with their reasons', async () => {
    const { value, rejected, sent } = deps([]);
    const result = await routeRecords(
      [
        { id: 'bad', body: '{"v":2}' },
        { id: 'mixed', body: event([API, 424242], ['dmp-user-1', 'x']) },
      ],
      value,
    );
    expect(result.failedRecordIds.size).toBe(0);
    expect(rejected.map((entry) => entry.reason).sort()).toEqual([
      'message_invalid',
      'platform_unknown',
      'user_invalid',
      'user_invalid',
    ]);
    expect(sent.map((m) => m.dmpUserId)).toEqual(['dmp-user-1']);
  });
});

describe('routeWithinDeadline', () => {
  // A clock that each lookup moves on by 1 ms per user: route time proportional to the work.
  function timed() {
    let clock = 0;
    const base = deps([]);
    const value: RouteServiceDeps = {
      ...base.value,
      now: () => clock,
      mappings: {
        async lookup(pairs) {
          clock += pairs.length;
          return base.value.mappings.lookup(pairs);
        },
      },
    };
    return { value, sent: base.sent, at: () => clock };
  }
  const message = (n: number, size: number) =>
    event(
      [API],
      Array.from({ length: size }, (_, index) => `dmp-user-${n}-${index}`),
    );

  it('finishes the groups it starts and hands back, untouched, those it has no time for', async () => {
    const { value, sent, at } = timed();
    const records = Array.from({ length: 10 }, (_, n) => ({ id: `m${n}`, body: message(n, 1000) }));
    // 1000 ms per message; 3500 ms left, 500 kept back: the third message would end at 3000 + 500.
    const first = await routeWithinDeadline(records, value, 3500, { reserveMs: 500, groupBytes: 1 });
    expect(first.failedRecordIds.size).toBe(0);
    expect(first.routed).toBe(2000);
    expect(at()).toBeLessThanOrEqual(3500);
    expect([...first.deferredRecordIds]).toEqual(records.slice(2).map((record) => record.id));
    expect(new Set(sent.map((m) => m.dmpUserId)).size).toBe(2000);

    // The queue brings the deferred records back to another invocation: every user once.
    const second = await routeWithinDeadline(
      records.filter((record) => first.deferredRecordIds.has(record.id)),
      value,
      Number.POSITIVE_INFINITY,
    );
    expect(second.deferredRecordIds.size).toBe(0);
    expect(sent).toHaveLength(10_000);
    expect(new Set(sent.map((m) => m.dmpUserId)).size).toBe(10_000);
  });

  it('always starts the first group, however little time is left', async () => {
    const { value, sent } = timed();
    const records = [
      { id: 'a', body: message(1, 10) },
      { id: 'b', body: message(2, 10) },
    ];
    const result = await routeWithinDeadline(records, value, 0, { groupBytes: 1 });
    expect(sent).toHaveLength(10);
    expect([...result.deferredRecordIds]).toEqual(['b']);
  });

  it('routes small messages together, in one lookup', async () => {
    const { value, at } = timed();
    const records = Array.from({ length: 10 }, (_, n) => ({ id: `m${n}`, body: message(n, 5) }));
    const result = await routeWithinDeadline(records, value, 60_000);
    expect(result.routed).toBe(50);
    expect(at()).toBe(50);
  });
});

describe('the re-check after a pending write', () => {
  it('releases at once the users whose mapping a strongly consistent read finds (stored meanwhile)', async () => {
    const { value, sent, pending } = deps([]);
    const consistentReads: number[] = [];
    const result = await routeRecords([{ id: 'm1', body: event([API], ['synced-late']) }], {
      ...value,
      mappings: {
        // The first read is stale; the re-check sees the mapping the sync stored meanwhile.
        async lookup(pairs, options) {
          if (!options?.consistent) return new Map();
          consistentReads.push(pairs.length);
          return new Map(pairs.map((pair) => [`${pair.platformId}#${pair.dmpUserId}`, 'p-late']));
        },
      },
      pending: {
        ...value.pending,
        listPending: async (platformId, dmpUserId) =>
          pending
            .filter((m) => m.platformId === platformId && m.dmpUserId === dmpUserId)
            .map((m) => ({ ...m, replaced: [], lapseAt: 2e9 })),
      },
    });
    expect(result.failedRecordIds.size).toBe(0);
    expect(consistentReads).toEqual([1]);
    expect(sent).toMatchObject([{ dmpUserId: 'synced-late', partnerUserId: 'p-late', released: true }]);
    expect(result.pending).toBe(0);
  });

  it('routes a redelivered message’s mapped users as pending again when an earlier receive made their event pending', async () => {
    const { value, sent, pending } = deps([]);
    const ts = Date.parse('2026-11-28T12:00:00Z');
    const earlier = { platformId: API, segmentId: '12345', audienceId: 'aud-1', op: 'add' as const, ts };
    // dmp-user-1's event is still pending (the receive died before its re-check); dmp-user-3's
    // was released already (its tally exists); dmp-user-2 was never pending.
    const stored = [{ ...earlier, dmpUserId: 'dmp-user-1' }];
    const listed: string[] = [];
    const route = (redelivered: boolean) =>
      routeRecords(
        [{ id: 'm1', body: event([API], ['dmp-user-1', 'dmp-user-2', 'dmp-user-3']), redelivered }],
        {
          ...value,
          pending: {
            ...value.pending,
            listPending: async (platformId, dmpUserId) => {
              listed.push(dmpUserId);
              // One item per user and segment: the route's pending write keeps the same event.
              const items = [...stored, ...pending].filter(
                (m) => m.platformId === platformId && m.dmpUserId === dmpUserId,
              );
              return [...new Map(items.map((m) => [m.segmentId, m])).values()].map((m) => ({
                ...m,
                replaced: [],
                lapseAt: 2e9,
              }));
            },
          },
          accounting: {
            ...value.accounting,
            eventTalliesFound: async (tallies) => {
              const counted = `${API}#${pendingEventKey({ ...earlier, dmpUserId: 'dmp-user-3' })}`;
              return new Set(tallies.map((t) => `${t.platformId}#${t.key}`).filter((k) => k === counted));
            },
          },
        },
      );
    await route(false);
    expect(listed).toEqual([]);
    expect(sent.map((m) => [m.dmpUserId, m.released ?? false])).toEqual([
      ['dmp-user-1', false],
      ['dmp-user-2', false],
      ['dmp-user-3', false],
    ]);
    sent.length = 0;
    const result = await route(true);
    expect(result.failedRecordIds.size).toBe(0);
    expect(pending.map((m) => m.dmpUserId).sort()).toEqual(['dmp-user-1', 'dmp-user-3']);
    expect(sent.map((m) => [m.dmpUserId, m.released ?? false]).sort()).toEqual([
      ['dmp-user-1', true],
      ['dmp-user-2', false],
      ['dmp-user-3', true],
    ]);
  });

  it('releases no lapsed event', async () => {
    const { value, sent } = deps([]);
    await releasePending([{ dmpUserId: 'late-user', platformId: API, partnerUserId: 'p-late' }], {
      pending: {
        ...value.pending,
        listPending: async (platformId) => [
          {
            platformId,
            segmentId: '12345',
            audienceId: 'aud-1',
            dmpUserId: 'late-user',
            op: 'add',
            ts: 1,
            replaced: [],
            lapseAt: 1000,
          },
        ],
      },
      queues: value.queues,
      accounting: value.accounting,
      targetOf: () => ({ batchSize: 500 }),
      now: () => 1000 * 1000,
    });
    expect(sent).toEqual([]);
  });
});

describe('releasePending', () => {
  it('sends a synced user’s pending events to the delivery queue, or to file staging for file platforms', async () => {
    const staged: StagedMembership[] = [];
    const { value, sent } = deps(staged);
    const pendingOf = (platformId: number) => [
      {
        platformId,
        segmentId: '12345',
        audienceId: 'aud-1',
        dmpUserId: 'late-user',
        op: 'add' as const,
        ts: 1,
        replaced: [],
        lapseAt: 2e9,
      },
    ];
    const deleted: number[] = [];
    const released = await releasePending(
      [
        { dmpUserId: 'late-user', platformId: API, partnerUserId: 'p-late', expiresAt: 0 },
        { dmpUserId: 'late-user', platformId: FILES, partnerUserId: 'p-late', expiresAt: 0 },
      ],
      {
        pending: {
          ...value.pending,
          listPending: async (platformId) => pendingOf(platformId),
          deletePending: async (m) => {
            deleted.push(m.platformId);
            return true;
          },
        },
        queues: value.queues,
        accounting: value.accounting,
        files: value.files,
        targetOf: (platformId) => (platformId === FILES ? 'file' : { batchSize: 500 }),
      },
    );
    expect(released).toBe(2);
    expect(sent).toMatchObject([{ platformId: API, partnerUserId: 'p-late', dmpUserId: 'late-user' }]);
    expect(staged).toMatchObject([
      { platformId: FILES, partnerUserId: 'p-late', ts: '1970-01-01T00:00:00.001Z' },
    ]);
    expect(deleted.sort()).toEqual([FILES, API].sort());
  });
});

describe('a forgotten user (privacy request tombstone)', () => {
  it('the route step sets the user aside as forgotten, without the id, and routes the others', async () => {
    const { value, sent, pending, rejected } = deps([]);
    const result = await routeRecords(
      [{ id: 'm1', body: event([API], ['dmp-user-1', 'forgotten-1', 'unsynced-1']) }],
      { ...value, forgotten: async (ids) => new Set(ids.filter((id) => id.startsWith('forgotten'))) },
    );
    expect(result.failedRecordIds.size).toBe(0);
    expect(sent.map((m) => m.dmpUserId)).toEqual(['dmp-user-1']);
    expect(pending.map((m) => m.dmpUserId)).toEqual(['unsynced-1']);
    expect(rejected).toMatchObject([{ reason: 'forgotten', platformId: API, memberships: 1 }]);
    expect(JSON.stringify(rejected)).not.toContain('forgotten-1');
  });

  it('a failing tombstone lookup sends the record back, routing nothing of it', async () => {
    const { value, sent } = deps([]);
    const result = await routeRecords([{ id: 'm1', body: event([API], ['dmp-user-1']) }], {
      ...value,
      forgotten: async () => {
        throw new Error('throttled');
      },
    });
    expect([...result.failedRecordIds]).toEqual(['m1']);
    expect(sent).toEqual([]);
  });

  it('the release step deletes a forgotten user’s pending events instead of releasing them', async () => {
    const { value, sent, rejected } = deps([]);
    const deleted: string[] = [];
    const released = await releasePending(
      [{ dmpUserId: 'forgotten-1', platformId: API, partnerUserId: 'p-1', expiresAt: 0 }],
      {
        pending: {
          ...value.pending,
          listPending: async (platformId) => [
            {
              platformId,
              segmentId: '12345',
              audienceId: 'aud-1',
              dmpUserId: 'forgotten-1',
              op: 'add',
              ts: 1,
              replaced: [],
              lapseAt: 2e9,
            },
          ],
          deletePending: async (m) => {
            deleted.push(m.dmpUserId);
            return true;
          },
        },
        queues: value.queues,
        accounting: value.accounting,
        targetOf: () => ({ batchSize: 500 }),
        forgotten: async (ids) => new Set(ids),
      },
    );
    expect(released).toBe(0);
    expect(sent).toEqual([]);
    expect(deleted).toEqual(['forgotten-1']);
    expect(rejected).toMatchObject([{ reason: 'forgotten', platformId: API }]);
    expect(JSON.stringify(rejected)).not.toContain('forgotten-1');
  });
});

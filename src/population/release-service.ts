import { forEachLimited } from '../aws/limit.ts';
import type { PlatformConfig } from '../config/schema.ts';
import type { FileStaging } from '../files/staging.ts';
import {
  type AccountingStore,
  lapsed,
  pendingEventKey,
  pendingTallies,
  type RejectedEntry,
} from './accounting.ts';
import type { PendingEvent, PendingStore } from './dynamo-store.ts';
import { type Membership, packDeliveryMessages, toStaged } from './membership.ts';
import type { DeliveryQueues } from './route-service.ts';

/**
 * Releases pending events when a user's sync stores a partner id: fed by the mapping table's
 * change stream (a DynamoDB stream in AWS; the local stack delivers the same records), so the
 * user-sync Lambda stays one read and at most one write; the route step runs it too, for the users
 * it has just made pending whose mapping a strongly consistent read then finds (route-service.ts).
 *
 * The events go to the platform's delivery queue first (marked `released`: the deliver step counts
 * each in the event's own tally), then their tallies are marked handed over (they count nothing
 * until the deliver step settles them, and the route may no longer count them `superseded`), then
 * they are deleted from pending if still the event read. A crash anywhere, a concurrent route
 * replacing an event, or two releases of the same user (the stream's and the route's) send an
 * event twice at most and count it once (docs/population.md section 4). Lapsed events (past their
 * 14 days) are not released.
 */

export interface StoredMapping {
  readonly dmpUserId: string;
  readonly platformId: number;
  readonly partnerUserId: string;
  /** Epoch seconds (the mapping's TTL). */
  readonly expiresAt: number;
}

export interface ReleaseDeps {
  readonly pending: PendingStore;
  readonly queues: DeliveryQueues;
  readonly accounting: AccountingStore;
  /** How a platform takes memberships: its delivery queue (packing `batchSize`), or file staging. */
  readonly targetOf: (platformId: number) => { readonly batchSize: number } | 'file' | undefined;
  readonly files?: FileStaging | undefined;
  /** The users among these that a privacy request forgot: their pending events are set aside. */
  readonly forgotten?: ((dmpUserIds: readonly string[]) => Promise<Set<string>>) | undefined;
  readonly now?: () => number;
}

/** Reads a mapping-table stream image (`pk` user#<id>, `sk` platform#<id>); undefined for other items. */
export function mappingFromImage(
  image: Record<string, { S?: string; N?: string }> | undefined,
): StoredMapping | undefined {
  const pk = image?.['pk']?.S;
  const sk = image?.['sk']?.S;
  const partnerUserId = image?.['partnerUserId']?.S;
  if (!pk?.startsWith('user#') || !sk?.startsWith('platform#') || !partnerUserId) return undefined;
  const platformId = Number(sk.slice('platform#'.length));
  if (!Number.isInteger(platformId)) return undefined;
  return {
    dmpUserId: pk.slice('user#'.length),
    platformId,
    partnerUserId,
    expiresAt: Number(image?.['expiresAt']?.N ?? 0),
  };
}

/** How a platform takes released memberships (ReleaseDeps.targetOf); undefined: it takes none. */
export function releaseTarget(platform: PlatformConfig | undefined): ReturnType<ReleaseDeps['targetOf']> {
  const population = platform?.connector?.population;
  if (!population) return undefined;
  return population.mode === 'file' ? 'file' : { batchSize: population.batchSize };
}

/** Users whose pending events are read (and deleted) at once. */
export const RELEASE_CONCURRENCY = 16;

export async function releasePending(
  mappings: readonly (Omit<StoredMapping, 'expiresAt'> & { readonly expiresAt?: number })[],
  deps: ReleaseDeps,
): Promise<number> {
  const now = deps.now ?? Date.now;
  // The last change of each (platform, user) in the batch: its partner id is the one to use.
  const latest = new Map<string, (typeof mappings)[number]>();
  for (const mapping of mappings) latest.set(`${mapping.platformId}#${mapping.dmpUserId}`, mapping);
  const found: { mapping: (typeof mappings)[number]; pending: PendingEvent[] }[] = [];
  await forEachLimited([...latest.values()], RELEASE_CONCURRENCY, async (mapping) => {
    const target = deps.targetOf(mapping.platformId);
    if (target === undefined || (target === 'file' && !deps.files)) return;
    const nowSeconds = Math.floor(now() / 1000);
    // A lapsed event stays where it is (counted `lapsed`, shown by `dmp why`) until TTL deletes it.
    const pending = (await deps.pending.listPending(mapping.platformId, mapping.dmpUserId)).filter(
      (m) => !lapsed(m.lapseAt, nowSeconds),
    );
    if (pending.length > 0) found.push({ mapping, pending });
  });
  if (found.length === 0) return 0;
  // Tombstones are read only for users with something to release: most mapping writes find
  // nothing pending, and their stream record then costs the one Query above and no more.
  const forgotten =
    (await deps.forgotten?.([...new Set(found.map(({ mapping }) => mapping.dmpUserId))])) ??
    new Set<string>();
  const setAside = found.filter(({ mapping }) => forgotten.has(mapping.dmpUserId));
  if (setAside.length > 0)
    await setAsideForgotten(
      setAside.flatMap(({ pending }) => pending),
      deps,
      now(),
    );
  const releasing = found.filter(({ mapping }) => !forgotten.has(mapping.dmpUserId));
  if (releasing.length === 0) return 0;

  // Every user's events together: one staging, and per platform one packed send.
  const byPlatform = new Map<number, Membership[]>();
  const staged: Membership[] = [];
  for (const { mapping, pending } of releasing) {
    const memberships = pending.map(({ replaced: _replaced, lapseAt: _lapseAt, ...m }) => ({
      ...m,
      partnerUserId: mapping.partnerUserId,
      released: true as const,
    }));
    if (deps.targetOf(mapping.platformId) === 'file') staged.push(...memberships);
    else byPlatform.set(mapping.platformId, [...(byPlatform.get(mapping.platformId) ?? []), ...memberships]);
  }
  if (staged.length > 0) await deps.files?.stage(staged.map(toStaged));
  for (const [platformId, memberships] of byPlatform) {
    const target = deps.targetOf(platformId) as { readonly batchSize: number };
    await deps.queues.send(platformId, packDeliveryMessages(platformId, memberships, target.batchSize));
  }
  // Handed over after the send, before the delete: a crash in between finds the events again on
  // the stream's retry and sends them again (one tally per event: counted once), and a route that
  // replaced one meanwhile can no longer count it `superseded` once it is marked.
  const events = releasing.flatMap(({ pending }) => pending);
  const tallies = pendingTallies(events, {});
  await deps.accounting.putPendingTallies(
    tallies.filter((tally) => tally.counts.superseded),
    now(),
  );
  await deps.accounting.markHandedOver(tallies.filter((tally) => !tally.counts.superseded));
  let released = 0;
  await forEachLimited(events, RELEASE_CONCURRENCY, async (m) => {
    if (await deps.pending.deletePending(m)) released++;
  });
  return released;
}

/** Pending events of a forgotten user (routed just before the request): deleted, never released. */
async function setAsideForgotten(
  pending: readonly PendingEvent[],
  deps: ReleaseDeps,
  nowMs: number,
): Promise<void> {
  const setAside: RejectedEntry[] = pending.map((m) => ({
    id: `release#forgotten#${m.platformId}#${pendingEventKey(m)}`,
    reason: 'forgotten',
    detail: 'the user was forgotten by a privacy request',
    platformId: m.platformId,
    segmentId: m.segmentId,
    audienceId: m.audienceId,
    memberships: 1,
  }));
  await deps.accounting.recordRejections(setAside);
  await deps.accounting.putPendingTallies(pendingTallies(pending, { rejected: 1 }), nowMs);
  await forEachLimited(pending, RELEASE_CONCURRENCY, async (m) => {
    await deps.pending.deletePending(m);
  });
}

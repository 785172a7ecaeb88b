import type { EnvironmentConfig } from '../config/schema.ts';
import { type AccountingStore, pendingTallies } from '../population/accounting.ts';
import type { PendingEvent } from '../population/dynamo-store.ts';
import { type Membership, packDeliveryMessages, toStaged } from '../population/membership.ts';
import type { DeliveryQueues } from '../population/route-service.ts';
import type { UserDigests } from './digest.ts';

/**
 * Privacy requests (`dmp forget`, the DMP's `POST /privacy/forget`, a browser's `/optout`): one
 * domain function. It leaves a tombstone first (so nothing routed from now on brings the user
 * back), then sends a removal of every membership a platform holds through the normal population
 * path (delivery queue, or file staging), deletes the user's mappings, pending events, membership
 * states, staged file rows and rejection records, and writes an audit record. The tombstone and the
 * audit hold only the keyed digest of the id (src/privacy/digest.ts), never the id.
 *
 * Every step is idempotent: a request that fails half-way is simply made again.
 */

/** Tombstones live as long as a browser may still carry the id in its `dmp_uid` cookie. */
export function tombstoneSeconds(config: Pick<EnvironmentConfig, 'userSync'>): number {
  return config.userSync.cookieMaxAgeDays * 86_400;
}

export type ForgetSource = 'cli' | 'api' | 'optout';

/** Tombstones, checked by the route, release and deliver steps. */
export interface TombstoneStore {
  putTombstone(digest: string, expiresAtSeconds: number): Promise<void>;
  /** The digests among `digests` that have a live tombstone. */
  tombstoned(digests: readonly string[]): Promise<Set<string>>;
}

/** What the population store must do for a forget request. */
export interface ForgetPopulationStore extends TombstoneStore, AccountingStore {
  membershipsOf(
    platformId: number,
    dmpUserId: string,
  ): Promise<
    readonly (Omit<Membership, 'platformId' | 'dmpUserId'> & { readonly at?: string | undefined })[]
  >;
  deleteMembershipsOf(platformId: number, dmpUserId: string): Promise<number>;
  listPending(platformId: number, dmpUserId: string): Promise<PendingEvent[]>;
  deletePendingOf(platformId: number, dmpUserId: string): Promise<number>;
  deleteRejectionsOf(dmpUserId: string): Promise<number>;
  putAudit(record: ForgetAudit): Promise<void>;
}

export interface ForgetMappings {
  listForUser(
    dmpUserId: string,
    nowSeconds: number,
  ): Promise<readonly { platformId: number; partnerUserId: string }[]>;
  deleteUser(dmpUserId: string): Promise<number>;
  /** Marks the user forgotten for the sync path at these platforms, until then (src/sync/mapping-store.ts). */
  putForgetMarkers(dmpUserId: string, platformIds: readonly number[], untilSeconds: number): Promise<void>;
}

/** File-mode platforms' staging: published adds get a staged removal; unpublished rows go. */
export interface ForgetFiles {
  /** Deletes the user's staged rows not yet published; returns the segments it held published adds in. */
  forgetStaged(
    platformId: number,
    dmpUserId: string,
  ): Promise<{
    deleted: number;
    published: { segmentId: string; audienceId: string; partnerUserId: string }[];
  }>;
  stage(memberships: readonly ReturnType<typeof toStaged>[]): Promise<void>;
}

export interface ForgetDeps {
  /** The keyed digest that stands for the user in the tombstone and the audit record. */
  readonly digests: UserDigests;
  readonly config: Pick<EnvironmentConfig, 'userSync'>;
  /** Platforms with a connector: how each takes memberships. */
  readonly platforms: readonly { readonly id: number; readonly mode: 'file' | { batchSize: number } }[];
  /** Platforms a browser syncs with: each gets a forget marker in the user's mapping partition. */
  readonly syncPlatformIds: readonly number[];
  readonly population: ForgetPopulationStore;
  readonly mappings: ForgetMappings;
  readonly queues: DeliveryQueues;
  readonly files?: ForgetFiles | undefined;
  readonly now?: () => number;
}

export interface ForgetAudit {
  readonly digest: string;
  readonly source: ForgetSource;
  readonly at: string;
  readonly platforms: readonly number[];
  readonly removalsSent: number;
  readonly mappingsDeleted: number;
  readonly pendingDeleted: number;
  readonly statesDeleted: number;
  readonly stagedDeleted: number;
  readonly rejectionsDeleted: number;
}

export async function forgetUser(
  dmpUserId: string,
  source: ForgetSource,
  deps: ForgetDeps,
): Promise<ForgetAudit> {
  const nowMs = (deps.now ?? Date.now)();
  const digest = await deps.digests.of(dmpUserId);
  const untilSeconds = Math.floor(nowMs / 1000) + tombstoneSeconds(deps.config);
  await deps.population.putTombstone(digest, untilSeconds);

  const mappings = new Map(
    (await deps.mappings.listForUser(dmpUserId, 0)).map((m) => [m.platformId, m.partnerUserId]),
  );
  const platforms = new Set<number>();
  let removalsSent = 0;
  let pendingDeleted = 0;
  let statesDeleted = 0;
  let stagedDeleted = 0;
  for (const platform of deps.platforms) {
    const removals: Membership[] = [];
    const removal = (segmentId: string, audienceId: string, partnerUserId: string): Membership => ({
      platformId: platform.id,
      segmentId,
      audienceId,
      dmpUserId,
      partnerUserId,
      op: 'remove',
      ts: nowMs,
    });
    if (platform.mode === 'file') {
      if (deps.files) {
        const staged = await deps.files.forgetStaged(platform.id, dmpUserId);
        stagedDeleted += staged.deleted;
        for (const p of staged.published) removals.push(removal(p.segmentId, p.audienceId, p.partnerUserId));
        if (removals.length > 0) await deps.files.stage(removals.map(toStaged));
      }
    } else {
      for (const state of await deps.population.membershipsOf(platform.id, dmpUserId)) {
        const partnerUserId = state.partnerUserId || mappings.get(platform.id);
        if (state.op === 'add' && partnerUserId)
          removals.push(removal(state.segmentId, state.audienceId, partnerUserId));
      }
      // The removal goes out first; the deliver step sees the tombstone and keeps no state of it.
      if (removals.length > 0)
        await deps.queues.send(
          platform.id,
          packDeliveryMessages(platform.id, removals, platform.mode.batchSize),
        );
      statesDeleted += await deps.population.deleteMembershipsOf(platform.id, dmpUserId);
    }
    // No longer pending, and not counted anywhere else (the user is gone); an event a release
    // handed to delivery meanwhile is counted by the deliver step, and keeps that count.
    await deps.population.clearPendingTallies(
      pendingTallies(await deps.population.listPending(platform.id, dmpUserId), {}),
    );
    pendingDeleted += await deps.population.deletePendingOf(platform.id, dmpUserId);
    removalsSent += removals.length;
    if (removals.length > 0 || mappings.has(platform.id)) platforms.add(platform.id);
  }
  const mappingsDeleted = await deps.mappings.deleteUser(dmpUserId);
  // After the deletion, so that a mapping a callback stored meanwhile is overwritten too: from now
  // on a browser that still carries the id stores nothing (`user_forgotten`).
  await deps.mappings.putForgetMarkers(dmpUserId, deps.syncPlatformIds, untilSeconds);
  const rejectionsDeleted = await deps.population.deleteRejectionsOf(dmpUserId);
  const audit: ForgetAudit = {
    digest,
    source,
    at: new Date(nowMs).toISOString(),
    platforms: [...platforms].sort((a, b) => a - b),
    removalsSent,
    mappingsDeleted,
    pendingDeleted,
    statesDeleted,
    stagedDeleted,
    rejectionsDeleted,
  };
  await deps.population.putAudit(audit);
  return audit;
}

/** The ids among `dmpUserIds` that were forgotten (a tombstone lives). */
export async function forgottenAmong(
  dmpUserIds: Iterable<string>,
  digests: UserDigests,
  tombstones: Pick<TombstoneStore, 'tombstoned'>,
): Promise<Set<string>> {
  const ids = [...dmpUserIds];
  if (ids.length === 0) return new Set();
  const digest = await digests.digester();
  const byDigest = new Map<string, string>();
  for (const id of ids) byDigest.set(digest(id), id);
  if (byDigest.size === 0) return new Set();
  const found = await tombstones.tombstoned([...byDigest.keys()]);
  return new Set([...found].map((digest) => byDigest.get(digest) as string));
}

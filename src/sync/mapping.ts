/**
 * A stored mapping (DMP user, platform) -> partner user id, and the pure decision of what a new
 * sighting of a partner id costs us. DynamoDB on-demand bills a write at five times a strongly
 * consistent read, so an unchanged id seen again inside the resync interval is only read, and a
 * refresh after it updates three attributes instead of rewriting the item.
 */
export interface MappingRecord {
  readonly platformId: number;
  readonly partnerUserId: string;
  /** ISO-8601 times. */
  readonly firstSeen: string;
  readonly lastSeen: string;
  readonly lastChanged: string;
  readonly previousPartnerUserId?: string | undefined;
  /** Epoch seconds; DynamoDB's TTL attribute. */
  readonly expiresAt: number;
  /** Optimistic-locking counter: every write is conditional on the version it read. */
  readonly version: number;
  /**
   * When a callback with a minted token or a partner signature last stored or confirmed this id
   * (ISO-8601); absent while only static-token callbacks have. A static-token callback never
   * replaces such an id.
   */
  readonly verifiedAt?: string | undefined;
}

/**
 * Set on a mapping by a refresh (the same partner id seen again), removed by a change, absent from
 * a new item: the mapping table's stream reaches the release function only for writes without it
 * (RELEASE_STREAM_FILTERS in src/infra/population.ts), since only a partner id that appears or
 * changes can release a user's pending events. A refresh keeps a live mapping's id: nothing waits.
 */
export const REFRESHED_ATTRIBUTE = 'refreshed';

/** How a callback proved itself: the static `plsec` anybody can read, or a minted token / signature. */
export type Assurance = 'static' | 'verified';

export type StaticTokenRefusal = 'static_token_cannot_replace' | 'static_token_rate_limited';

/** The user was forgotten by a privacy request: its sync marker refuses any mapping (docs/privacy.md). */
export const USER_FORGOTTEN = 'user_forgotten';
export type ForgottenRefusal = typeof USER_FORGOTTEN;

/** What a static-token callback may do to a stored id (docs/user-sync.md, "What each mode guarantees"). */
export interface ChangeLimits {
  readonly assurance: Assurance;
  /** A static-token callback changes an id only when the last change is at least this old. */
  readonly staticChangeIntervalSeconds: number;
}

export const VERIFIED_CALLBACK: ChangeLimits = { assurance: 'verified', staticChangeIntervalSeconds: 0 };

export type MappingWrite =
  | { readonly kind: 'none' }
  /** A new item; `replacesVersion` when an expired item that TTL has not removed yet is overwritten. */
  | { readonly kind: 'create'; readonly replacesVersion?: number }
  | { readonly kind: 'refresh'; readonly expectedVersion: number }
  /** The id it replaces is read by DynamoDB inside the write (see mapping-store.ts). */
  | { readonly kind: 'change'; readonly previousPartnerUserId: string }
  /** A static-token callback may not change this id (now, or at all). */
  | { readonly kind: 'refuse'; readonly reason: StaticTokenRefusal };

export type SightingOutcome = 'stored' | 'changed' | 'refreshed' | 'unchanged';

export const OUTCOME_OF_WRITE: Record<Exclude<MappingWrite['kind'], 'refuse'>, SightingOutcome> = {
  none: 'unchanged',
  create: 'stored',
  refresh: 'refreshed',
  change: 'changed',
};

export function decideMappingWrite(
  current: MappingRecord | undefined,
  partnerUserId: string,
  nowSeconds: number,
  refreshAfterSeconds: number,
  limits: ChangeLimits = VERIFIED_CALLBACK,
): MappingWrite {
  if (!current) return { kind: 'create' };
  if (current.expiresAt <= nowSeconds) return { kind: 'create', replacesVersion: current.version };
  if (current.partnerUserId !== partnerUserId) {
    if (limits.assurance === 'static') {
      if (current.verifiedAt !== undefined) return { kind: 'refuse', reason: 'static_token_cannot_replace' };
      const lastChanged = Date.parse(current.lastChanged) / 1000;
      if (nowSeconds - lastChanged < limits.staticChangeIntervalSeconds)
        return { kind: 'refuse', reason: 'static_token_rate_limited' };
    }
    return { kind: 'change', previousPartnerUserId: current.partnerUserId };
  }
  const lastSeenSeconds = Date.parse(current.lastSeen) / 1000;
  if (nowSeconds - lastSeenSeconds < refreshAfterSeconds) return { kind: 'none' };
  return { kind: 'refresh', expectedVersion: current.version };
}

/**
 * What the browser's `dmp_ss` entry for the platform says a sighting will find in the store, so
 * that the store tries the write that case needs first (src/sync/mapping-store.ts): no entry, a
 * new mapping; an entry whose partner id digest differs from this callback's, an id change; the
 * same id (or an entry written before digests) inside the resync interval, a repeat; otherwise a
 * refresh. A guess only: the cookie is the browser's, and a wrong guess costs a call more.
 */
export type SightingGuess = 'new' | 'refresh' | 'unchanged' | 'changed';

export function guessSighting(
  seen: { readonly atSeconds: number; readonly idDigest?: string | undefined } | undefined,
  idDigest: string,
  nowSeconds: number,
  refreshAfterSeconds: number,
): SightingGuess {
  if (seen === undefined) return 'new';
  if (seen.idDigest !== undefined && seen.idDigest !== idDigest) return 'changed';
  return nowSeconds - seen.atSeconds < refreshAfterSeconds && seen.atSeconds <= nowSeconds
    ? 'unchanged'
    : 'refresh';
}

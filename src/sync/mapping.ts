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
}

export type MappingWrite =
  | { readonly kind: 'none' }
  /** A new item; `replacesVersion` when an expired item that TTL has not removed yet is overwritten. */
  | { readonly kind: 'create'; readonly replacesVersion?: number }
  | { readonly kind: 'refresh'; readonly expectedVersion: number }
  /** The id it replaces is read by DynamoDB inside the write (see mapping-store.ts). */
  | { readonly kind: 'change'; readonly previousPartnerUserId: string };

export type SightingOutcome = 'stored' | 'changed' | 'refreshed' | 'unchanged';

export const OUTCOME_OF_WRITE: Record<MappingWrite['kind'], SightingOutcome> = {
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
): MappingWrite {
  if (!current) return { kind: 'create' };
  if (current.expiresAt <= nowSeconds) return { kind: 'create', replacesVersion: current.version };
  if (current.partnerUserId !== partnerUserId) {
    return { kind: 'change', previousPartnerUserId: current.partnerUserId };
  }
  const lastSeenSeconds = Date.parse(current.lastSeen) / 1000;
  if (nowSeconds - lastSeenSeconds < refreshAfterSeconds) return { kind: 'none' };
  return { kind: 'refresh', expectedVersion: current.version };
}

import { createHash } from 'node:crypto';
import type { PlatformConfig, SyncSettings } from '../config/schema.ts';

/**
 * Which platforms a browser is due to sync with. A platform is due when it has sync enabled, no
 * attempt was made for it inside `retryAfterAttemptHours`, and our stored mapping is missing or
 * older than its resync interval, stretched or shrunk by a per-(user, platform) jitter so that a
 * cohort synced on one day does not all return on one day.
 */

export interface SyncedPlatform {
  readonly platformId: number;
  readonly lastSeenSeconds: number;
}

export type NotDueReason = 'sync_disabled' | 'recently_attempted' | 'fresh_mapping';

export interface DueDecision {
  readonly platformId: number;
  readonly due: boolean;
  readonly reason?: NotDueReason;
  /** When the platform becomes due again (epoch seconds), for the debug trace. */
  readonly dueAtSeconds?: number;
}

export interface DueInput {
  readonly platforms: readonly PlatformConfig[];
  readonly dmpUserId: string;
  readonly nowSeconds: number;
  readonly mappings: readonly SyncedPlatform[];
  /** Last attempts from the `dmp_sa` cookie: platform id -> epoch seconds. */
  readonly attempts: ReadonlyMap<number, number>;
}

/** Deterministic jitter factor in [1 - jitter, 1 + jitter] for one (user, platform). */
export function jitterFactor(dmpUserId: string, platformId: number, jitter: number): number {
  const digest = createHash('sha256').update(`${platformId}:${dmpUserId}`).digest();
  const unit = digest.readUInt32BE(0) / 0xffffffff;
  return 1 + (unit * 2 - 1) * jitter;
}

export function resyncIntervalSeconds(settings: SyncSettings, dmpUserId: string, platformId: number): number {
  return settings.resyncAfterDays * 86_400 * jitterFactor(dmpUserId, platformId, settings.resyncJitter);
}

export function decideDue(input: DueInput): DueDecision[] {
  const lastSeen = new Map(input.mappings.map((mapping) => [mapping.platformId, mapping.lastSeenSeconds]));
  return input.platforms.map((platform): DueDecision => {
    const settings = platform.sync;
    if (!settings?.enabled) return { platformId: platform.id, due: false, reason: 'sync_disabled' };
    const attemptedAt = input.attempts.get(platform.id);
    // An attempt dated more than a day ahead of our clock is not believed.
    if (attemptedAt !== undefined && attemptedAt <= input.nowSeconds + 86_400) {
      const retryAt = attemptedAt + settings.retryAfterAttemptHours * 3600;
      if (retryAt > input.nowSeconds) {
        return { platformId: platform.id, due: false, reason: 'recently_attempted', dueAtSeconds: retryAt };
      }
    }
    const seen = lastSeen.get(platform.id);
    if (seen !== undefined) {
      const dueAt = seen + resyncIntervalSeconds(settings, input.dmpUserId, platform.id);
      if (dueAt > input.nowSeconds) {
        return {
          platformId: platform.id,
          due: false,
          reason: 'fresh_mapping',
          dueAtSeconds: Math.ceil(dueAt),
        };
      }
    }
    return { platformId: platform.id, due: true };
  });
}

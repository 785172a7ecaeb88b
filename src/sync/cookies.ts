import { createHash } from 'node:crypto';

/**
 * The cookies of the sync domain. Every one is `Secure; HttpOnly; SameSite=None` (the pixel runs
 * in a third-party context) and bounded in size: no cookie of ours grows with the number of
 * partners beyond `MAX_ATTEMPT_ENTRIES` short entries (peers' outages came from unbounded ones).
 */
export const COOKIE_DMP_USER = 'dmp_uid';
export const COOKIE_OPT_OUT = 'dmp_optout';
export const COOKIE_SYNC_ATTEMPTS = 'dmp_sa';
export const COOKIE_SYNCED = 'dmp_ss';

/** Browsers cap cookie lifetime at 400 days. */
const MAX_AGE_LIMIT_SECONDS = 400 * 24 * 3600;

export interface CookieOptions {
  readonly maxAgeSeconds: number;
  readonly domain?: string | undefined;
}

export function serializeCookie(name: string, value: string, options: CookieOptions): string {
  const maxAge = Math.max(0, Math.min(Math.floor(options.maxAgeSeconds), MAX_AGE_LIMIT_SECONDS));
  const parts = [`${name}=${value}`, `Max-Age=${maxAge}`, 'Path=/', 'Secure', 'HttpOnly', 'SameSite=None'];
  if (options.domain) parts.push(`Domain=${options.domain}`);
  return parts.join('; ');
}

export function expireCookie(name: string, domain?: string): string {
  return serializeCookie(name, '', { maxAgeSeconds: 0, domain });
}

/**
 * Reads API Gateway HTTP API's `cookies` array (`name=value` items). The first occurrence of a
 * name wins, as browsers send the most specific cookie first, except for `dmp_optout`: any
 * non-empty value of it, wherever it stands, is kept (see `isOptedOut`).
 */
export function parseCookies(cookies: readonly string[] | undefined): Map<string, string> {
  const jar = new Map<string, string>();
  for (const item of cookies ?? []) {
    for (const pair of item.split(';')) {
      const index = pair.indexOf('=');
      if (index <= 0) continue;
      const name = pair.slice(0, index).trim();
      const value = pair.slice(index + 1).trim();
      if (name === '' || (jar.has(name) && !(name === COOKIE_OPT_OUT && jar.get(name) === ''))) continue;
      jar.set(name, value);
    }
  }
  return jar;
}

/**
 * Any value of the opt-out cookie counts (`1`, `"1"`, `0`, `yes`, ...): we only ever set `1`, and
 * a browser that carries the cookie at all asked not to be synced, whatever else it sends.
 */
export function isOptedOut(cookies: ReadonlyMap<string, string>): boolean {
  const value = cookies.get(COOKIE_OPT_OUT);
  return value !== undefined && value !== '';
}

/**
 * `dmp_sa`: when each platform was last sent this browser, so a partner that never redirects
 * back is not retried on every page view. Entries `<platformId>:<epochMinutes base36>`, joined by
 * `.`, newest last, at most MAX_ATTEMPT_ENTRIES (~16 bytes each).
 */
export const MAX_ATTEMPT_ENTRIES = 32;
/** Epoch minutes of the year 2100: later attempt times are ignored. */
const MAX_ATTEMPT_MINUTES = 68_170_000;
/** Characters of a partner id digest in a `dmp_ss` entry: 3 bytes of SHA-256, base64url. */
export const PARTNER_ID_DIGEST_CHARS = 4;
/** Longest value each cookie may hold before it is ignored whole: the entries and their dots. */
export const MAX_ATTEMPTS_LENGTH = MAX_ATTEMPT_ENTRIES * 24;
export const MAX_SYNCED_LENGTH = MAX_ATTEMPT_ENTRIES * (24 + 1 + PARTNER_ID_DIGEST_CHARS);

const ENTRY = /^([1-9]\d{0,9}):([0-9a-z]{1,8})(?::([A-Za-z0-9_-]+))?$/;

/**
 * A `dmp_ss` entry: when the platform's mapping was last stored or confirmed and, since digests
 * were added, a digest of the partner id the store then held (see partnerIdDigest).
 */
export interface SyncedMapping {
  readonly atSeconds: number;
  readonly idDigest?: string | undefined;
}

/**
 * `dmp_ss`: `<platformId>:<epochMinutes base36>:<digest>` entries, joined and bounded like
 * `dmp_sa`; entries without the digest (cookies written before it) still parse. It is what `/sync`
 * read from the store and the callbacks since wrote. A callback continues the chain from it
 * instead of querying the store (one store round trip per callback), and chooses its first write
 * from it (src/sync/mapping.ts, guessSighting); at worst a lost or stale cookie sends the browser
 * to a partner once more than needed, or costs the store a call more.
 */
export function parseSyncedMappings(value: string | undefined): Map<number, SyncedMapping> {
  return parseEntries(value, MAX_SYNCED_LENGTH, true);
}

export function parseSyncAttempts(value: string | undefined): Map<number, number> {
  const attempts = new Map<number, number>();
  for (const [platformId, entry] of parseEntries(value, MAX_ATTEMPTS_LENGTH, false))
    attempts.set(platformId, entry.atSeconds);
  return attempts;
}

function parseEntries(
  value: string | undefined,
  maxLength: number,
  digests: boolean,
): Map<number, SyncedMapping> {
  const entries = new Map<number, SyncedMapping>();
  if (!value || value.length > maxLength) return entries;
  for (const entry of value.split('.')) {
    const match = ENTRY.exec(entry);
    if (!match) continue;
    const digest = match[3];
    if (digest !== undefined && (!digests || digest.length !== PARTNER_ID_DIGEST_CHARS)) continue;
    const minutes = Number.parseInt(match[2] as string, 36);
    // A forged or garbled time far in the future is no attempt (the cookie is client-controlled).
    if (minutes > MAX_ATTEMPT_MINUTES) continue;
    entries.set(Number(match[1]), { atSeconds: minutes * 60, idDigest: digest });
  }
  return entries;
}

/**
 * A short digest of the partner id a mapping holds, for `dmp_ss`: it lets a callback with another
 * id go straight to the change. Not the id: 24 bits of SHA-256 over the platform, this browser's
 * DMP user and the id, so the same partner id gives unrelated digests in two browsers. A collision
 * only makes the store read first (the guess is never trusted for correctness).
 */
export function partnerIdDigest(platformId: number, dmpUserId: string, partnerUserId: string): string {
  return createHash('sha256')
    .update(`dmp-ss-v1\n${platformId}\n${dmpUserId}\n${partnerUserId}`, 'utf8')
    .digest()
    .subarray(0, (PARTNER_ID_DIGEST_CHARS * 3) / 4)
    .toString('base64url');
}

/** Records an attempt (epoch seconds) and drops the oldest entries beyond the bound. */
export function recordSyncAttempt(
  attempts: ReadonlyMap<number, number>,
  platformId: number,
  atSeconds: number,
): string {
  const entries = new Map([...attempts].map(([id, at]) => [id, { atSeconds: at }]));
  return recordSyncedMapping(entries, platformId, { atSeconds });
}

/** Records a platform's entry in `dmp_ss` (or `dmp_sa`) and drops the oldest beyond the bound. */
export function recordSyncedMapping(
  entries: ReadonlyMap<number, SyncedMapping>,
  platformId: number,
  entry: SyncedMapping,
): string {
  const others = [...entries.entries()].filter(([id]) => id !== platformId);
  // The entry just made is always kept, even if the clock is behind older entries.
  return formatSyncedMappings([
    ...others.sort((a, b) => a[1].atSeconds - b[1].atSeconds).slice(-(MAX_ATTEMPT_ENTRIES - 1)),
    [platformId, entry] as const,
  ]);
}

/** All entries of a map (platform id -> entry), newest last, at most the bound. */
export function formatSyncedMappings(entries: Iterable<readonly [number, SyncedMapping]>): string {
  return [...entries]
    .sort((a, b) => a[1].atSeconds - b[1].atSeconds)
    .slice(-MAX_ATTEMPT_ENTRIES)
    .map(
      ([id, { atSeconds, idDigest }]) =>
        `${id}:${Math.floor(atSeconds / 60).toString(36)}${idDigest === undefined ? '' : `:${idDigest}`}`,
    )
    .join('.');
}

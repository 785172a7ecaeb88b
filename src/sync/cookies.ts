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

/**
 * `dmp_ss` has the same format: when each platform's mapping was last stored or confirmed, as
 * `/sync` read it from the store and callbacks since wrote it. A callback continues the chain
 * from it instead of querying the store (one store round trip per callback); at worst a lost or
 * stale cookie sends the browser to a partner once more than needed.
 */
export function parseSyncAttempts(value: string | undefined): Map<number, number> {
  const attempts = new Map<number, number>();
  if (!value || value.length > MAX_ATTEMPT_ENTRIES * 24) return attempts;
  for (const entry of value.split('.')) {
    const match = /^([1-9]\d{0,9}):([0-9a-z]{1,8})$/.exec(entry);
    if (!match) continue;
    const minutes = Number.parseInt(match[2] as string, 36);
    // A forged or garbled time far in the future is no attempt (the cookie is client-controlled).
    if (minutes > MAX_ATTEMPT_MINUTES) continue;
    attempts.set(Number(match[1]), minutes * 60);
  }
  return attempts;
}

/** Records an attempt (epoch seconds) and drops the oldest entries beyond the bound. */
export function recordSyncAttempt(
  attempts: ReadonlyMap<number, number>,
  platformId: number,
  atSeconds: number,
): string {
  const others = [...attempts.entries()].filter(([id]) => id !== platformId);
  // The attempt just made is always kept, even if the clock is behind older entries.
  return formatSyncTimes([
    ...others.sort((a, b) => a[1] - b[1]).slice(-(MAX_ATTEMPT_ENTRIES - 1)),
    [platformId, atSeconds] as const,
  ]);
}

/** All entries of a map (platform id -> epoch seconds), newest last, at most the bound. */
export function formatSyncTimes(entries: Iterable<readonly [number, number]>): string {
  return [...entries]
    .sort((a, b) => a[1] - b[1])
    .slice(-MAX_ATTEMPT_ENTRIES)
    .map(([id, at]) => `${id}:${Math.floor(at / 60).toString(36)}`)
    .join('.');
}

import type { EnvironmentConfig, PlatformConfig, SyncSettings } from '../config/schema.ts';
import type { PlatformSecret } from '../config/secrets.ts';
import type { SYNC_METRICS } from '../infra/resources.ts';
import { type ConsentSignals, type DecodedConsent, decodeConsent, readConsentSignals } from './consent.ts';
import {
  COOKIE_DMP_USER,
  COOKIE_OPT_OUT,
  COOKIE_SYNC_ATTEMPTS,
  COOKIE_SYNCED,
  expireCookie,
  formatSyncedMappings,
  isOptedOut,
  parseSyncAttempts,
  parseSyncedMappings,
  partnerIdDigest,
  recordSyncAttempt,
  recordSyncedMapping,
  type SyncedMapping,
  serializeCookie,
} from './cookies.ts';
import { type ChangeLimits, guessSighting, type SightingGuess, USER_FORGOTTEN } from './mapping.ts';
import type { MappingStore } from './mapping-store.ts';
import { decideDue } from './schedule.ts';
import { verifySyncSignature } from './signature.ts';
import {
  isMintedToken,
  matchesStaticToken,
  mintSyncToken,
  type TokenKeys,
  verifyMintedToken,
} from './tokens.ts';
import { buildCallbackUrl, buildPartnerSyncUrl, type ForwardedConsent, publicBaseUrl } from './urls.ts';
import { isValidDmpUserId, mintDmpUserId, parsePlatformId, validatePartnerUserId } from './user-ids.ts';

/**
 * The user-sync domain, free of HTTP and AWS types: `/sync` starts a redirect chain through the
 * partners due for a (re)sync, `/uid` takes a partner's callback and stores the mapping, then
 * continues the chain, `/optout` forgets the browser. Every refusal has a reason code, counted
 * per platform and explained by `debug=1`.
 */

export interface SyncRequest {
  /** Decoded query parameters; a name given twice is listed in `duplicateParams`. */
  readonly query: Readonly<Record<string, string>>;
  readonly duplicateParams: readonly string[];
  readonly cookies: ReadonlyMap<string, string>;
  /** Lower-cased header names. */
  readonly headers: Readonly<Record<string, string | undefined>>;
  readonly domainName: string;
}

export type SyncOutcome =
  | 'redirected'
  | 'nothing_due'
  | 'stored'
  | 'changed'
  | 'refreshed'
  | 'unchanged'
  | 'opted_out'
  | 'rejected';

export interface SyncResponse {
  readonly status: 200 | 302 | 400 | 403 | 451 | 503;
  readonly outcome: SyncOutcome;
  readonly reason?: string | undefined;
  readonly location?: string | undefined;
  readonly platformId?: number | undefined;
  readonly setCookies: readonly string[];
  readonly trace: readonly TraceEntry[];
  /** The funnel counts this request made, in order (the handler logs them; see SyncMetrics). */
  readonly counts: readonly SyncCount[];
}

/** One count of the sync funnel: a metric, the platform it concerns, and a reason where it has one. */
export interface SyncCount {
  readonly name: SyncMetricName;
  readonly platformId?: number | undefined;
  readonly reason?: string | undefined;
}

export interface TraceEntry {
  readonly step: string;
  readonly detail: string;
  readonly platformId?: number;
}

/**
 * Counts of the sync funnel, per platform, as they happen. Optional: every response also carries
 * its request's counts (`SyncResponse.counts`), which the Lambda handler writes on its log line.
 */
export interface SyncMetrics {
  count(name: SyncMetricName, platformId: number | undefined, reason?: string): void;
}
/** The funnel's metric names, shared with the stack's dashboard. */
export type SyncMetricName = (typeof SYNC_METRICS.names)[number];

export interface SyncSecrets {
  platform(platformId: number): Promise<PlatformSecret | undefined>;
  tokenKeys(): Promise<TokenKeys>;
}

export interface UserSyncDeps {
  readonly config: EnvironmentConfig;
  readonly store: MappingStore;
  readonly secrets: SyncSecrets;
  readonly metrics?: SyncMetrics | undefined;
  /** Epoch seconds. */
  readonly now: () => number;
  /** `/optout` hands the user to the privacy request path (src/privacy) besides deleting mappings. */
  readonly forget?: ((dmpUserId: string) => Promise<void>) | undefined;
}

/** Upper bounds on parameters we read; anything longer is refused before it is looked at. */
const MAX_PARAM_LENGTH: Readonly<Record<string, number>> = {
  pl: 10,
  plsec: 256,
  ts: 12,
  kid: 32,
  sig: 128,
  hop: 2,
  last: 1,
  debug: 1,
};
const MAX_UNLISTED_PARAM_LENGTH = 4096;

const STATUS_OF_REASON: ReadonlyArray<[RegExp, SyncResponse['status']]> = [
  [/^(token_|signature_|replayed|static_token_|platform_misconfigured|dmp_user_missing)/, 403],
  [/^(consent_|opted_out|user_forgotten)/, 451],
];

type SyncedPlatform = PlatformConfig & { readonly sync: SyncSettings };

export class UserSyncService {
  private readonly platforms: ReadonlyMap<number, SyncedPlatform>;
  /** Every vendor id a consent verdict may be asked about: only these are read from the strings. */
  private readonly partnerVendorIds: readonly number[];
  /** A request's consent strings are decoded once, whatever the number of partners asked about. */
  private readonly decodedConsent = new WeakMap<
    SyncRequest,
    { signals: ConsentSignals; decoded: DecodedConsent }
  >();

  constructor(private readonly deps: UserSyncDeps) {
    this.platforms = new Map(
      deps.config.platforms
        .filter((platform): platform is SyncedPlatform => platform.sync?.enabled === true)
        .map((platform) => [platform.id, platform]),
    );
    this.partnerVendorIds = [...this.platforms.values()].flatMap((platform) =>
      platform.sync.gdprVendorId === undefined ? [] : [platform.sync.gdprVendorId],
    );
  }

  /** `GET /sync[?pl=<id>]`: the pixel's entry point. */
  async sync(request: SyncRequest): Promise<SyncResponse> {
    const trace = new Trace();
    const cookies: string[] = [];
    const paramProblem = checkParams(request);
    if (paramProblem) return this.reject(paramProblem, undefined, cookies, trace);
    if (isOptedOut(request.cookies)) return this.optedOut(undefined, trace);

    let candidates = [...this.platforms.values()];
    const onlyPlatform = request.query['pl'] !== undefined;
    if (onlyPlatform) {
      const platformId = parsePlatformId(request.query['pl']);
      const platform = platformId === undefined ? undefined : this.platforms.get(platformId);
      if (!platform) return this.reject('platform_unknown', platformId, cookies, trace);
      candidates = [platform];
    }

    const existingUser = request.cookies.get(COOKIE_DMP_USER);
    const dmpUserId = isValidDmpUserId(existingUser) ? existingUser : mintDmpUserId();
    trace.add('cookie', existingUser === dmpUserId ? 'known DMP user' : 'new DMP user: cookie minted');
    cookies.push(this.userCookie(dmpUserId));

    // The store is the truth at the start of a chain; the callbacks continue from the cookie.
    const synced = new Map<number, SyncedMapping>();
    if (existingUser === dmpUserId) {
      const { store } = this.deps;
      const user = store.readUser
        ? await store.readUser(dmpUserId, this.deps.now())
        : { mappings: await store.listForUser(dmpUserId, this.deps.now()), forgotten: false };
      // A privacy request forgot this id: no partner is asked, and the cookie is not renewed.
      if (user.forgotten) return this.reject(USER_FORGOTTEN, undefined, [], trace);
      for (const record of user.mappings) {
        synced.set(record.platformId, {
          atSeconds: Date.parse(record.lastSeen) / 1000,
          idDigest: partnerIdDigest(record.platformId, dmpUserId, record.partnerUserId),
        });
      }
    }
    // Written whenever it says something, or has something stale to forget.
    if (synced.size > 0 || request.cookies.has(COOKIE_SYNCED))
      cookies.push(this.syncedCookie(formatSyncedMappings(synced)));
    const next = await this.nextRedirect(request, dmpUserId, synced, candidates, 1, trace, onlyPlatform);
    cookies.push(...next.setCookies);
    if (!next.location)
      return {
        status: 200,
        outcome: 'nothing_due',
        setCookies: cookies,
        trace: trace.entries,
        counts: trace.counts,
      };
    return {
      status: 302,
      outcome: 'redirected',
      location: next.location,
      platformId: next.platformId,
      setCookies: cookies,
      trace: trace.entries,
      counts: trace.counts,
    };
  }

  /** `GET /uid?userid=&pl=&plsec=[&ts=&kid=&sig=]`: a partner's redirect back. */
  async callback(request: SyncRequest): Promise<SyncResponse> {
    const trace = new Trace();
    const cookies: string[] = [];
    const { query } = request;
    const paramProblem = checkParams(request);
    if (paramProblem) return this.reject(paramProblem, undefined, cookies, trace);

    const platformId = parsePlatformId(query['pl']);
    const platform = platformId === undefined ? undefined : this.platforms.get(platformId);
    if (!platform) return this.reject('platform_unknown', platformId, cookies, trace);
    const settings = platform.sync;

    const partnerId = validatePartnerUserId(query['userid'], settings);
    if (!partnerId.ok) return this.reject(partnerId.reason, platform.id, cookies, trace);
    const plsec = query['plsec'];
    if (plsec === undefined || plsec === '') return this.reject('token_missing', platform.id, cookies, trace);

    if (isOptedOut(request.cookies)) return this.optedOut(platform.id, trace);
    const consent = this.consentFor(request, platform, trace);
    if (!consent.allowed) return this.reject(consent.reason, platform.id, cookies, trace);

    const nowSeconds = this.deps.now();
    const secret = await this.deps.secrets.platform(platform.id);

    const signed = query['sig'] !== undefined || settings.signature.required;
    let replayKey: { macId: string; timestamp: number } | undefined;
    if (signed) {
      const verdict = verifySyncSignature(
        {
          pl: query['pl'],
          userid: query['userid'],
          plsec,
          ts: query['ts'],
          kid: query['kid'],
          sig: query['sig'],
        },
        {
          keys: secret?.signingKeys ?? {},
          algorithm: settings.signature.algorithm,
          maxSkewSeconds: settings.signature.maxSkewSeconds,
          nowSeconds,
        },
      );
      if (!verdict.valid) return this.reject(verdict.reason, platform.id, cookies, trace);
      replayKey = verdict;
      trace.add(
        'signature',
        `valid ${settings.signature.algorithm} signature, key ${query['kid']}`,
        platform.id,
      );
    }

    const cookieUser = request.cookies.get(COOKIE_DMP_USER);
    // A minted token is bound to the browser's DMP user; a static-token callback from a browser
    // without one (third-party cookies blocked) would only create an orphan DMP user each time.
    const missingUser = () => this.reject('dmp_user_missing', platform.id, cookies, trace);
    let limits: ChangeLimits = { assurance: 'verified', staticChangeIntervalSeconds: 0 };
    const minted = isMintedToken(plsec);
    if (minted) {
      if (!isValidDmpUserId(cookieUser)) return missingUser();
      const verdict = verifyMintedToken(
        {
          token: plsec,
          platformId: platform.id,
          dmpUserId: cookieUser,
          nowSeconds,
          maxAgeSeconds: settings.mintedTokenMaxAgeSeconds,
        },
        await this.deps.secrets.tokenKeys(),
      );
      if (!verdict.valid) return this.reject(verdict.reason, platform.id, cookies, trace);
      trace.add('token', 'token minted by /sync for this browser: valid', platform.id);
    } else {
      if (!settings.acceptStaticToken)
        return this.reject('static_token_not_accepted', platform.id, cookies, trace);
      if (!secret?.syncToken) return this.reject('platform_misconfigured', platform.id, cookies, trace);
      if (!matchesStaticToken(plsec, secret.syncToken))
        return this.reject('token_mismatch', platform.id, cookies, trace);
      trace.add('token', "platform's static token: valid", platform.id);
      if (!isValidDmpUserId(cookieUser)) return missingUser();
      const window = settings.staticToken.requireSyncWithinSeconds;
      if (window !== undefined) {
        const attemptedAt = parseSyncAttempts(request.cookies.get(COOKIE_SYNC_ATTEMPTS)).get(platform.id);
        // The attempt cookie has minute resolution: a minute of slack on either side.
        if (
          attemptedAt === undefined ||
          nowSeconds - attemptedAt > window + 60 ||
          attemptedAt > nowSeconds + 60
        )
          return this.reject('static_token_no_recent_sync', platform.id, cookies, trace);
        trace.add('token', 'a sync we started for this browser is recent enough', platform.id);
      }
      // Signed static-token callbacks are verified: the signature proves the partner sent them.
      if (!replayKey) {
        limits = {
          assurance: 'static',
          staticChangeIntervalSeconds: settings.staticToken.minChangeIntervalHours * 3600,
        };
      }
    }

    if (!isValidDmpUserId(cookieUser)) return missingUser();
    const dmpUserId = cookieUser;

    // Each signature is accepted once when the token binds it to nobody (the static token: the
    // signed URL would plant its id on any browser it is replayed from). A minted token binds it
    // to this browser's DMP user and platform: replayed from another browser it failed the token
    // check above; replayed from this one, inside the signature's freshness window, it only
    // repeats what the partner said about this browser (as the original arriving late would).
    if (replayKey && !minted) {
      const guardUntil = replayKey.timestamp + settings.signature.maxSkewSeconds + 60;
      if (!(await this.deps.store.claimReplayGuard(platform.id, replayKey.macId, guardUntil))) {
        return this.reject('replayed', platform.id, cookies, trace);
      }
    }

    const synced = parseSyncedMappings(request.cookies.get(COOKIE_SYNCED));
    const refreshAfterSeconds = settings.resyncAfterDays * 86_400 * (1 - settings.resyncJitter);
    const seen = synced.get(platform.id);
    const idDigest = partnerIdDigest(platform.id, dmpUserId, partnerId.value);
    const expected = guessSighting(seen, idDigest, nowSeconds, refreshAfterSeconds);
    trace.add('store', `first write chosen from dmp_ss: ${GUESS_DETAIL[expected]}`, platform.id);
    const outcome = await this.deps.store.recordSighting({
      expected,
      dmpUserId,
      platformId: platform.id,
      partnerUserId: partnerId.value,
      nowSeconds,
      ttlSeconds: settings.mappingTtlDays * 86_400,
      refreshAfterSeconds,
      limits,
    });
    if (
      outcome === 'static_token_cannot_replace' ||
      outcome === 'static_token_rate_limited' ||
      outcome === USER_FORGOTTEN
    )
      return this.reject(outcome, platform.id, cookies, trace);
    this.count(trace, outcome === 'unchanged' ? 'MappingUnchanged' : 'MappingStored', platform.id, outcome);
    trace.add('mapping', describeOutcome(outcome), platform.id);
    cookies.push(this.userCookie(dmpUserId));
    // What the chain needs next comes from the cookie, with this sighting added: no store query.
    // An unchanged sighting wrote nothing: the cookie keeps the time the store has. Whatever the
    // outcome, the store now holds this callback's id: its digest goes with the entry.
    const stored = {
      atSeconds: outcome === 'unchanged' && seen !== undefined ? seen.atSeconds : nowSeconds,
      idDigest,
    };
    cookies.push(this.syncedCookie(recordSyncedMapping(synced, platform.id, stored)));
    synced.set(platform.id, stored);

    const hop = Number(query['hop'] ?? '1');
    let next: Awaited<ReturnType<UserSyncService['nextRedirect']>> = { setCookies: [] };
    if (query['last'] === '1') {
      // `/sync?pl=<id>` asked for this platform only: the chain does not go on to the others.
      trace.add('chain', 'the pixel asked for this platform only: chain ends');
    } else if (Number.isInteger(hop) && hop >= 1 && hop < this.deps.config.userSync.maxRedirectsPerChain) {
      next = await this.nextRedirect(
        request,
        dmpUserId,
        synced,
        [...this.platforms.values()],
        hop + 1,
        trace,
      );
    } else {
      trace.add('chain', 'redirect limit of the chain reached');
    }
    cookies.push(...next.setCookies);
    return {
      status: next.location ? 302 : 200,
      outcome,
      location: next.location,
      platformId: platform.id,
      setCookies: cookies,
      trace: trace.entries,
      counts: trace.counts,
    };
  }

  /**
   * `GET|POST /optout`: remembers the opt-out and deletes every mapping of this browser. The
   * opt-out cookie is set whatever happens; when the deletion fails the answer is a 503 that keeps
   * `dmp_uid`, so that the browser's next `/optout` can delete what is left.
   */
  async optOut(request: SyncRequest): Promise<SyncResponse> {
    const trace = new Trace();
    const { cookieDomain, cookieMaxAgeDays } = this.deps.config.userSync;
    const optOutCookie = serializeCookie(COOKIE_OPT_OUT, '1', {
      maxAgeSeconds: cookieMaxAgeDays * 86_400,
      domain: cookieDomain,
    });
    const user = request.cookies.get(COOKIE_DMP_USER);
    if (isValidDmpUserId(user)) {
      try {
        const deleted = await this.deps.store.deleteUser(user);
        trace.add('mapping', `deleted ${deleted} stored mapping(s)`);
        await this.deps.forget?.(user);
      } catch {
        trace.add('mapping', 'deleting the stored mappings failed: opt-out remembered, retry /optout');
        this.count(trace, 'SyncRejected', undefined, 'optout_incomplete');
        return {
          status: 503,
          outcome: 'opted_out',
          reason: 'optout_incomplete',
          setCookies: [optOutCookie],
          trace: trace.entries,
          counts: trace.counts,
        };
      }
    }
    this.count(trace, 'OptOut', undefined);
    return {
      status: 200,
      outcome: 'opted_out',
      setCookies: [
        optOutCookie,
        expireCookie(COOKIE_DMP_USER, cookieDomain),
        expireCookie(COOKIE_SYNC_ATTEMPTS, cookieDomain),
        expireCookie(COOKIE_SYNCED, cookieDomain),
      ],
      trace: trace.entries,
      counts: trace.counts,
    };
  }

  private async nextRedirect(
    request: SyncRequest,
    dmpUserId: string,
    synced: ReadonlyMap<number, SyncedMapping>,
    candidates: readonly SyncedPlatform[],
    hop: number,
    trace: Trace,
    lastHop = false,
  ): Promise<{ location?: string; platformId?: number; setCookies: string[] }> {
    const nowSeconds = this.deps.now();
    const attempts = parseSyncAttempts(request.cookies.get(COOKIE_SYNC_ATTEMPTS));
    const mappings = [...synced].map(([platformId, { atSeconds }]) => ({
      platformId,
      lastSeenSeconds: atSeconds,
    }));
    const decisions = decideDue({ platforms: candidates, dmpUserId, nowSeconds, mappings, attempts });
    for (const decision of decisions) {
      const platform = this.platforms.get(decision.platformId);
      if (!platform) continue;
      if (!decision.due) {
        const until = decision.dueAtSeconds
          ? ` until ${new Date(decision.dueAtSeconds * 1000).toISOString()}`
          : '';
        trace.add('schedule', `not due: ${decision.reason}${until}`, platform.id);
        continue;
      }
      const consent = this.consentFor(request, platform, trace);
      if (!consent.allowed) {
        this.count(trace, 'SyncRejected', platform.id, consent.reason);
        continue;
      }
      const forwarded = forwardedConsent(consent.signals);
      const token = mintSyncToken(
        { platformId: platform.id, dmpUserId, nowSeconds },
        await this.deps.secrets.tokenKeys(),
      );
      const baseUrl = publicBaseUrl(
        this.deps.config.userSync.publicBaseUrl,
        request.domainName,
        request.headers['x-forwarded-proto'],
        this.deps.config.userSync.allowedHosts,
      );
      if (baseUrl === undefined) {
        this.count(trace, 'SyncRejected', platform.id, 'host_not_allowed');
        trace.add(
          'redirect',
          'refused: the request host is not one of ours (set publicBaseUrl)',
          platform.id,
        );
        break;
      }
      const callbackUrl = buildCallbackUrl({
        baseUrl,
        platformId: platform.id,
        token,
        userIdMacro: platform.sync.userIdPlacement === 'append' ? undefined : platform.sync.userIdMacro,
        consent: forwarded,
        hop,
        last: lastHop,
      });
      const partnerUrl = buildPartnerSyncUrl(platform.sync, callbackUrl, forwarded);
      if (!partnerUrl.ok) {
        this.count(trace, 'SyncRejected', platform.id, partnerUrl.reason);
        trace.add('redirect', 'refused: the filled template leaves the partner origin', platform.id);
        continue;
      }
      this.count(trace, 'SyncRedirected', platform.id);
      trace.add('redirect', `sync due: redirecting to ${partnerUrl.origin}`, platform.id);
      const { cookieDomain } = this.deps.config.userSync;
      return {
        location: partnerUrl.url,
        platformId: platform.id,
        setCookies: [
          serializeCookie(COOKIE_SYNC_ATTEMPTS, recordSyncAttempt(attempts, platform.id, nowSeconds), {
            maxAgeSeconds: 30 * 86_400,
            domain: cookieDomain,
          }),
        ],
      };
    }
    trace.add('chain', 'no platform due: chain ends with the pixel');
    return { setCookies: [] };
  }

  private consentFor(request: SyncRequest, platform: SyncedPlatform, trace: Trace) {
    let consent = this.decodedConsent.get(request);
    if (!consent) {
      const signals = readConsentSignals(request.query, request.headers);
      consent = {
        signals,
        decoded: decodeConsent(signals, this.deps.config.userSync.consent, this.partnerVendorIds),
      };
      this.decodedConsent.set(request, consent);
    }
    const verdict = consent.decoded.verdictFor(platform.sync.gdprVendorId);
    trace.add(
      'consent',
      verdict.allowed ? `allowed (${verdict.basis})` : `refused: ${verdict.reason}`,
      platform.id,
    );
    return { ...verdict, signals: consent.signals };
  }

  private syncedCookie(value: string): string {
    const { cookieDomain, cookieMaxAgeDays } = this.deps.config.userSync;
    return value === ''
      ? expireCookie(COOKIE_SYNCED, cookieDomain)
      : serializeCookie(COOKIE_SYNCED, value, {
          maxAgeSeconds: cookieMaxAgeDays * 86_400,
          domain: cookieDomain,
        });
  }

  private userCookie(dmpUserId: string): string {
    const { cookieDomain, cookieMaxAgeDays } = this.deps.config.userSync;
    return serializeCookie(COOKIE_DMP_USER, dmpUserId, {
      maxAgeSeconds: cookieMaxAgeDays * 86_400,
      domain: cookieDomain,
    });
  }

  private count(trace: Trace, name: SyncMetricName, platformId: number | undefined, reason?: string): void {
    trace.counts.push(reason === undefined ? { name, platformId } : { name, platformId, reason });
    this.deps.metrics?.count(name, platformId, reason);
  }

  private optedOut(platformId: number | undefined, trace: Trace): SyncResponse {
    trace.add('consent', 'browser opted out: nothing stored, no redirect', platformId);
    this.count(trace, 'SyncRejected', platformId, 'opted_out');
    return {
      status: platformId === undefined ? 200 : 451,
      outcome: 'opted_out',
      reason: 'opted_out',
      setCookies: [],
      trace: trace.entries,
      counts: trace.counts,
    };
  }

  private reject(
    reason: string,
    platformId: number | undefined,
    setCookies: readonly string[],
    trace: Trace,
  ): SyncResponse {
    this.count(trace, 'SyncRejected', platformId, reason);
    trace.add('refused', reason, platformId);
    const status = STATUS_OF_REASON.find(([pattern]) => pattern.test(reason))?.[1] ?? 400;
    return {
      status,
      outcome: 'rejected',
      reason,
      platformId,
      setCookies,
      trace: trace.entries,
      counts: trace.counts,
    };
  }
}

function checkParams(request: SyncRequest): string | undefined {
  if (request.duplicateParams.length > 0) return 'duplicate_param';
  for (const [name, value] of Object.entries(request.query)) {
    const limit = Object.hasOwn(MAX_PARAM_LENGTH, name) ? MAX_PARAM_LENGTH[name] : undefined;
    if (value.length > (limit ?? MAX_UNLISTED_PARAM_LENGTH)) return 'param_too_long';
  }
  return undefined;
}

function forwardedConsent(signals: ConsentSignals): ForwardedConsent {
  return {
    gdpr: signals.gdpr,
    gdprConsent: signals.gdprConsent,
    usPrivacy: signals.usPrivacy,
    gpp: signals.gpp,
    gppSid: signals.gppSid,
  };
}

const GUESS_DETAIL: Record<SightingGuess, string> = {
  new: 'no mapping for the platform: create',
  changed: 'the stored id has another digest: change',
  unchanged: 'the same id seen inside the resync interval: read only',
  refresh: 'the same id seen before the resync interval: refresh',
};

function describeOutcome(outcome: string): string {
  switch (outcome) {
    case 'stored':
      return 'new mapping stored';
    case 'changed':
      return 'partner id changed: stored, previous id kept';
    case 'refreshed':
      return 'same partner id seen after the resync interval: last-seen and expiry refreshed';
    default:
      return 'same partner id seen inside the resync interval: nothing written';
  }
}

class Trace {
  readonly entries: TraceEntry[] = [];
  readonly counts: SyncCount[] = [];
  add(step: string, detail: string, platformId?: number): void {
    this.entries.push(platformId === undefined ? { step, detail } : { step, detail, platformId });
  }
}

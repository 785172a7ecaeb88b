import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import * as z from 'zod';
import type { PlatformConfig } from '../../src/config/schema.ts';
import { MAPPING_TABLE } from '../../src/infra/resources.ts';
import { CliContext, findPlatform, parsePlatformId } from '../context.ts';
import { type CookieChange, CookieJar } from '../cookie-jar.ts';
import { CliError, type Command, EXIT_ERROR, EXIT_OK, UsageError } from '../framework.ts';
import { readStackOutput, resolveTable, TARGET_OPTIONS, targetFlags } from '../target.ts';
import { type MappingView, readMappings } from './mappings.ts';

/**
 * `dmp platforms test-sync <platformId>`: one real sync of a platform, made the way a browser
 * makes it (a cookie jar, redirects followed one by one), against the local stack or a deployed
 * environment's API, with every hop explained: our `/sync` answer, the partner's sync URL, the
 * partner's answer, our `/uid` answer, and the mapping stored in the end (read as `dmp mappings`
 * reads it). It talks to the service over HTTP only, as a browser does, and follows a redirect
 * only to our own host or to the platform's configured sync host.
 */

const DEFAULT_TIMEOUT_SECONDS = 10;
/** Same-origin bounces a partner may make before it redirects back (cookie checks and the like). */
const MAX_PARTNER_HOPS = 5;
const USER_AGENT = 'Mozilla/5.0 (compatible; dmp-test-sync/1; +operator CLI of dmp-activation)';
const REDACTED = '[redacted]';
const PARTNER_BODY_EXCERPT = 300;

export type CheckLevel = 'ok' | 'fail' | 'warn' | 'info';

export interface HopCheck {
  readonly level: CheckLevel;
  readonly text: string;
}

export interface TraceEntryView {
  readonly step: string;
  readonly detail: string;
  readonly platformId?: number | undefined;
}

/** What `debug=1` makes the service answer instead of its redirect or pixel (docs/user-sync.md). */
const DebugAnswerSchema = z.object({
  status: z.number().int(),
  outcome: z.string(),
  reason: z.string().optional().nullable(),
  platformId: z.number().optional().nullable(),
  location: z.string().optional().nullable(),
  trace: z.array(z.object({ step: z.string(), detail: z.string(), platformId: z.number().optional() })),
});

export interface HopReport {
  /** `sync` our pixel, `partnerUrl` the partner's sync URL (no request), `partner` the partner, `uid` our callback. */
  readonly step: 'sync' | 'partnerUrl' | 'partner' | 'uid';
  readonly title: string;
  /** The URL asked for (tokens and signatures redacted); null for `partnerUrl`. */
  readonly url: string;
  /** Names of the cookies the browser sent. */
  readonly cookiesSent: readonly string[];
  /** The HTTP status the browser got; null when no answer came. */
  readonly httpStatus: number | null;
  /** The service's own status (from its `debug=1` trace), else the HTTP status. */
  readonly status: number | null;
  readonly durationMs: number | null;
  /** The redirect target (redacted); from the trace when the service answered with one. */
  readonly location: string | null;
  /** `x-dmp-reason`, or the trace's reason. */
  readonly reason: string | null;
  /** The service's outcome (`redirected`, `stored`, `unchanged`, `rejected`, ...) when it said. */
  readonly outcome: string | null;
  readonly cookiesSet: readonly CookieChange[];
  /** The `debug=1` trace of our service; null when it gave none. */
  readonly trace: readonly TraceEntryView[] | null;
  /** The start of a partner's error body. */
  readonly body: string | null;
  /** Network failure or timeout. */
  readonly error: string | null;
  readonly checks: readonly HopCheck[];
  readonly ok: boolean;
}

export interface TestSyncReport {
  readonly environment: string;
  readonly platform: { readonly id: number; readonly name: string };
  /** Our sync pixel URL and the origins that are ours. */
  readonly syncPixelUrl: string;
  readonly ourOrigins: readonly string[];
  /** The only origin the platform's redirects may go to: its urlTemplate's. */
  readonly partnerOrigin: string;
  /** `on`: the service answered with traces; `off`: it did not (a deployed stack without debugTraces); `notRequested`: --no-trace. */
  readonly traces: 'on' | 'off' | 'notRequested';
  /** The DMP user the test browser became (its dmp_uid cookie). */
  readonly dmpUserId: string | null;
  /** The id the partner sent back in its redirect to /uid. */
  readonly partnerUserId: string | null;
  readonly hops: readonly HopReport[];
  /** Where the mapping was read; null when no DMP user came out of the sync. */
  readonly mappingTable: string | null;
  /** The stored mapping of (dmpUserId, platform) after the sync, as `dmp mappings` shows it. */
  readonly mapping: MappingView | null;
  readonly ok: boolean;
  /** One sentence: where it went wrong, or that it worked. */
  readonly conclusion: string;
}

/** What each refusal of `/uid` means for an operator (docs/user-sync.md, "Refusals of /uid"). */
const REFUSAL_HINTS: Readonly<Record<string, string>> = {
  platform_unknown: 'the platform is not synced by this environment (unknown id, or sync.enabled false)',
  userid_missing: 'the partner sent no userid',
  userid_too_long: "the partner's id is longer than sync.maxUserIdLength",
  userid_charset: "the partner's id has characters we refuse (still percent-encoded? a raw '+'?)",
  userid_unreplaced_macro:
    'the partner did not replace the user id macro: check sync.userIdMacro against the spelling it replaces',
  userid_sentinel: 'the partner sent a "no id" value (0, null, ...): it has no id for this browser',
  duplicate_param: 'a parameter came twice (the partner appended one that was already there)',
  param_too_long: 'a parameter is over its length limit',
  token_missing: 'plsec was lost on the way: the partner dropped parameters of our out URL',
  token_mismatch: 'the token belongs to another browser or platform, or the static token differs',
  token_malformed: 'plsec was altered on the way (re-encoded or cut)',
  token_expired: 'the token was older than sync.mintedTokenMaxAgeSeconds when it came back',
  token_unknown_key: 'the token was minted with a key this environment no longer has',
  static_token_not_accepted: 'the platform takes minted tokens only (acceptStaticToken false)',
  dmp_user_missing: 'the browser came back without our dmp_uid cookie',
  signature_missing: 'the platform requires signed callbacks and the partner did not sign (ts, kid, sig)',
  signature_malformed: "the partner's sig is not one canonical hex or base64url MAC",
  signature_unknown_key:
    "the partner signed with a key id that is not in our secret's signingKeys (a rotation on one side only?)",
  signature_stale: "the partner's ts is further from our clock than signature.maxSkewSeconds",
  signature_invalid:
    'the MAC differs: the shared secret or the signed values differ between us and the partner',
  replayed: 'this signature was used before',
  platform_misconfigured: "the platform's secret lacks what the callback needs (syncToken)",
  opted_out: 'the browser opted out',
};

function consentHint(reason: string): string | undefined {
  return reason.startsWith('consent_')
    ? 'consent refused: pass the consent signals a real page would send (--param gdpr=1 --param gdpr_consent=...)'
    : undefined;
}

export function refusalHint(reason: string | null): string {
  if (!reason) return '';
  const hint = REFUSAL_HINTS[reason] ?? consentHint(reason);
  return hint ? `: ${hint}` : '';
}

/**
 * The URL as sent, with the values of token and signature parameters replaced, also inside a
 * percent-encoded URL such as the partner's `out` (one level of encoding).
 */
export function redactUrl(url: string): string {
  return url
    .replaceAll(/([?&](?:plsec|sig)=)[^&#]*/g, `$1${REDACTED}`)
    .replaceAll(/((?:%3F|%26)(?:plsec|sig)%3D)(?:(?!%26)[^&#])*/gi, `$1${REDACTED}`);
}

function originOf(url: string): string | undefined {
  try {
    return new URL(url).origin;
  } catch {
    return undefined;
  }
}

/** The origin of a sync URL template: where the service lets a platform's redirects go. */
export function templateOrigin(template: string): string {
  return new URL(template.replaceAll(/\{[a-z_]+\}/g, '')).origin;
}

/** The template's query parameter that carries `{out}` (`out`, `redirect`, `r`, ...). */
export function outParameter(template: string): string | undefined {
  const query = template.split('?', 2)[1] ?? '';
  for (const part of query.split('&')) {
    const [name, value] = part.split('=', 2);
    if (value === '{out}' && name) return decodeURIComponent(name);
  }
  return undefined;
}

function describeFetchError(error: unknown, timeoutMs: number): string {
  const failure = error as Error & { cause?: { code?: string; message?: string } };
  if (failure.name === 'TimeoutError' || failure.name === 'AbortError') {
    return `no answer within ${timeoutMs / 1000} s (timeout)`;
  }
  const code = failure.cause?.code;
  const known: Record<string, string> = {
    ECONNREFUSED: 'connection refused (nothing listens there)',
    ENOTFOUND: 'host not found (DNS)',
    EAI_AGAIN: 'DNS lookup failed (temporary)',
    ECONNRESET: 'connection reset',
    ETIMEDOUT: 'connection timed out',
    UND_ERR_SOCKET: 'connection closed before an answer',
  };
  if (code && known[code]) return `${known[code]} [${code}]`;
  if (code && /CERT|SSL|TLS/.test(code)) return `TLS failure: ${failure.cause?.message ?? code} [${code}]`;
  return `${failure.cause?.message ?? failure.message}${code ? ` [${code}]` : ''}`;
}

interface Answer {
  readonly httpStatus: number;
  readonly location: string | null;
  readonly reason: string | null;
  readonly contentType: string;
  readonly body: string;
  readonly cookiesSet: CookieChange[];
  readonly durationMs: number;
}

/** One request as a browser makes it: the jar's cookies, no redirect followed, a timeout. */
async function browserGet(
  jar: CookieJar,
  url: string,
  timeoutMs: number,
): Promise<{ answer: Answer; cookiesSent: string[] } | { error: string; cookiesSent: string[] }> {
  const cookiesSent = jar.forUrl(url).map((cookie) => cookie.name);
  const cookie = jar.header(url);
  const started = performance.now();
  try {
    const response = await fetch(url, {
      redirect: 'manual',
      headers: { 'user-agent': USER_AGENT, accept: 'image/*,*/*;q=0.8', ...(cookie ? { cookie } : {}) },
      signal: AbortSignal.timeout(timeoutMs),
    });
    const body = await response.text();
    const cookiesSet = response.headers.getSetCookie().flatMap((line) => jar.store(url, line) ?? []);
    const location = response.headers.get('location');
    return {
      cookiesSent,
      answer: {
        httpStatus: response.status,
        location: location === null ? null : new URL(location, url).href,
        reason: response.headers.get('x-dmp-reason'),
        contentType: response.headers.get('content-type') ?? '',
        body,
        cookiesSet,
        durationMs: Math.round(performance.now() - started),
      },
    };
  } catch (error) {
    return { cookiesSent, error: describeFetchError(error, timeoutMs) };
  }
}

type DebugAnswer = z.infer<typeof DebugAnswerSchema>;

function debugAnswerOf(answer: Answer): DebugAnswer | undefined {
  if (!answer.contentType.includes('application/json')) return undefined;
  try {
    const parsed = DebugAnswerSchema.safeParse(JSON.parse(answer.body));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

function withDebug(url: string): string {
  const parsed = new URL(url);
  parsed.searchParams.set('debug', '1');
  return parsed.href;
}

interface OurAnswer {
  readonly status: number;
  readonly location: string | null;
  readonly reason: string | null;
  readonly outcome: string | null;
  readonly trace: readonly TraceEntryView[] | null;
}

/** Our service's answer, read from its `debug=1` trace when it gave one, else from the HTTP answer. */
function ourAnswer(answer: Answer, requestUrl: string): OurAnswer {
  const debug = debugAnswerOf(answer);
  if (debug) {
    return {
      status: debug.status,
      location: debug.location ? new URL(debug.location, requestUrl).href : null,
      reason: debug.reason ?? answer.reason,
      outcome: debug.outcome,
      trace: debug.trace,
    };
  }
  return {
    status: answer.httpStatus,
    location: answer.location,
    reason: answer.reason,
    outcome: null,
    trace: null,
  };
}

function hop(
  step: HopReport['step'],
  title: string,
  url: string,
  fields: Partial<Omit<HopReport, 'step' | 'title' | 'url' | 'ok'>> & { readonly checks: HopCheck[] },
): HopReport {
  return {
    step,
    title,
    url: redactUrl(url),
    cookiesSent: fields.cookiesSent ?? [],
    httpStatus: fields.httpStatus ?? null,
    status: fields.status ?? null,
    durationMs: fields.durationMs ?? null,
    location: fields.location ? redactUrl(fields.location) : null,
    reason: fields.reason ?? null,
    outcome: fields.outcome ?? null,
    cookiesSet: fields.cookiesSet ?? [],
    trace: fields.trace ?? null,
    body: fields.body ?? null,
    error: fields.error ?? null,
    checks: fields.checks,
    ok: !fields.checks.some((check) => check.level === 'fail'),
  };
}

const ok = (text: string): HopCheck => ({ level: 'ok', text });
const fail = (text: string): HopCheck => ({ level: 'fail', text });
const warn = (text: string): HopCheck => ({ level: 'warn', text });
const info = (text: string): HopCheck => ({ level: 'info', text });

/** Outcomes of `/uid` that mean the callback was accepted. */
const ACCEPTED = new Set(['stored', 'changed', 'refreshed', 'unchanged']);

export interface TestSyncInput {
  readonly environment: string;
  readonly platform: PlatformConfig & { readonly sync: NonNullable<PlatformConfig['sync']> };
  readonly syncPixelUrl: string;
  readonly ourOrigins: readonly string[];
  readonly params: readonly (readonly [string, string])[];
  readonly trace: boolean;
  readonly timeoutMs: number;
  readonly jar: CookieJar;
  /** Reads the stored mappings of a DMP user; returns where it read them. */
  readonly readMapping: (dmpUserId: string) => Promise<{ table: string; mappings: MappingView[] }>;
}

/** Runs the sync hop by hop and explains each; never throws for what a partner or the service answers. */
export async function runTestSync(input: TestSyncInput): Promise<TestSyncReport> {
  const { platform, jar, timeoutMs } = input;
  const sync = platform.sync;
  const partnerOrigin = templateOrigin(sync.urlTemplate);
  const ours = new Set(input.ourOrigins);
  const hops: HopReport[] = [];
  let tracesSeen = false;
  let conclusion = '';
  let partnerUserId: string | null = null;
  let callbackAccepted = false;

  const base = (): Omit<TestSyncReport, 'dmpUserId' | 'mappingTable' | 'mapping' | 'ok' | 'conclusion'> => ({
    environment: input.environment,
    platform: { id: platform.id, name: platform.name },
    syncPixelUrl: input.syncPixelUrl,
    ourOrigins: [...ours],
    partnerOrigin,
    traces: input.trace ? (tracesSeen ? 'on' : 'off') : 'notRequested',
    partnerUserId,
    hops,
  });

  /**
   * One request to our service, with what is common to `/sync` and `/uid` (no answer, 503, a
   * refusal); `judge` adds the step's own checks and returns the conclusion when it fails.
   */
  const askOurs = async (
    step: 'sync' | 'uid',
    url: string,
    judge: (our: OurAnswer, answer: Answer, checks: HopCheck[]) => string | undefined,
  ): Promise<void> => {
    const title = `our /${step}`;
    const result = await browserGet(jar, url, timeoutMs);
    if ('error' in result) {
      hops.push(
        hop(step, title, url, {
          cookiesSent: result.cookiesSent,
          error: result.error,
          checks: [fail(`our API did not answer: ${result.error}`)],
        }),
      );
      conclusion = `${title} did not answer: ${result.error}`;
      return;
    }
    const { answer } = result;
    const our = ourAnswer(answer, url);
    tracesSeen ||= our.trace !== null;
    const checks: HopCheck[] = [];
    if (step === 'uid' && !result.cookiesSent.includes('dmp_uid')) {
      checks.push(warn('the browser came back without our dmp_uid cookie (the minted token is bound to it)'));
    }
    let failure: string | undefined;
    if (our.status === 503) {
      checks.push(
        fail("503: our infrastructure failed (secrets or table): see the user-sync function's logs"),
      );
      failure = `${title} failed (503)`;
    } else if (our.status >= 400 || our.reason) {
      const hint = refusalHint(our.reason);
      checks.push(fail(`refused: ${our.status} ${our.reason ?? '(no reason given)'}${hint}`));
      failure = `${title} refused${step === 'uid' ? ' the callback' : ''}: ${our.reason ?? our.status}${hint}`;
    } else {
      failure = judge(our, answer, checks);
    }
    if (failure !== undefined) conclusion = failure;
    hops.push(
      hop(step, title, url, {
        cookiesSent: result.cookiesSent,
        httpStatus: answer.httpStatus,
        status: our.status,
        durationMs: answer.durationMs,
        location: our.location,
        reason: our.reason,
        outcome: our.outcome,
        cookiesSet: answer.cookiesSet,
        trace: our.trace,
        checks,
      }),
    );
  };

  // 1. Our pixel, for this platform only.
  const pixel = new URL(input.syncPixelUrl);
  pixel.searchParams.set('pl', String(platform.id));
  for (const [name, value] of input.params) pixel.searchParams.append(name, value);
  const syncUrl = input.trace ? withDebug(pixel.href) : pixel.href;
  let next: string | null = null;
  const knownUser = jar.get(syncUrl, 'dmp_uid');
  await askOurs('sync', syncUrl, (our, answer, checks) => {
    const userCookie = answer.cookiesSet.find((cookie) => cookie.name === 'dmp_uid');
    if (userCookie?.action === 'set') {
      checks.push(
        info(
          userCookie.value === knownUser
            ? `the browser is DMP user ${userCookie.value} (from the cookie jar)`
            : `dmp_uid cookie set: the browser is DMP user ${userCookie.value}`,
        ),
      );
    }
    if (our.status === 302 && our.location) {
      const origin = originOf(our.location);
      if (origin === partnerOrigin) {
        checks.push(ok(`redirects the browser to the partner (${origin})`));
        next = our.location;
        return undefined;
      }
      checks.push(
        fail(
          `redirects to ${origin ?? our.location}, which is not the platform's sync host ${partnerOrigin}: not followed`,
        ),
      );
      return `our /sync redirected to ${origin}, not to the platform's sync host ${partnerOrigin}`;
    }
    checks.push(
      fail(
        'answered the pixel: nothing due for this browser (a fresh mapping, or an attempt in the last sync.retryAfterAttemptHours; a --cookie-jar carries both)',
      ),
    );
    return 'our /sync found nothing due for this browser';
  });

  // 2. The partner's sync URL, as our pixel built it.
  if (next !== null) {
    const checks: HopCheck[] = [];
    const partnerUrl = new URL(next);
    checks.push(ok(`host ${partnerUrl.host} is the platform's sync host (from its urlTemplate)`));
    const outName = outParameter(sync.urlTemplate);
    const out = outName === undefined ? null : partnerUrl.searchParams.get(outName);
    let outUrl: URL | undefined;
    try {
      outUrl = out === null ? undefined : new URL(out);
    } catch {
      outUrl = undefined;
    }
    if (!outUrl || out === null) {
      checks.push(fail(`no ${outName ?? '{out}'} parameter that decodes to a URL`));
      conclusion = "the partner's sync URL carries no callback URL";
      next = null;
    } else {
      const onOurHost = ours.has(outUrl.origin);
      const isUid = outUrl.pathname.endsWith('/uid');
      const pl = outUrl.searchParams.get('pl');
      checks.push(
        onOurHost && isUid
          ? ok(`${outName} decodes to our /uid: ${redactUrl(out)}`)
          : fail(`${outName} decodes to ${redactUrl(out)}, not to our /uid (${[...ours].join(', ')})`),
      );
      checks.push(
        pl === String(platform.id)
          ? ok(`it carries pl=${pl}`)
          : fail(`it carries pl=${pl ?? '(none)'}, not ${platform.id}`),
      );
      checks.push(
        out.includes(sync.userIdMacro)
          ? ok(`it holds the macro ${sync.userIdMacro} for the partner to replace`)
          : fail(`the macro ${sync.userIdMacro} is not in it`),
      );
      const plsec = outUrl.searchParams.get('plsec');
      checks.push(
        plsec
          ? ok(
              `it carries a token (plsec${plsec.startsWith('m1.') ? `, minted, key ${plsec.split('.')[1]}` : ''})`,
            )
          : fail('it carries no token (plsec)'),
      );
      if (!(onOurHost && isUid && pl === String(platform.id))) {
        conclusion = "the partner's sync URL does not lead back to our /uid for this platform";
        next = null;
      }
    }
    hops.push(hop('partnerUrl', "the partner's sync URL", partnerUrl.href, { checks }));
  }

  // 3. The partner, and any bounces on its own host, until it sends the browser back to us.
  let callback: string | null = null;
  for (let bounce = 0; next !== null && bounce < MAX_PARTNER_HOPS; bounce += 1) {
    const url: string = next;
    next = null;
    const result = await browserGet(jar, url, timeoutMs);
    if ('error' in result) {
      hops.push(
        hop('partner', 'the partner', url, {
          cookiesSent: result.cookiesSent,
          error: result.error,
          checks: [fail(`the partner did not answer: ${result.error}`)],
        }),
      );
      conclusion = `the partner did not answer: ${result.error}`;
      break;
    }
    const { answer } = result;
    const checks: HopCheck[] = [];
    const excerpt = answer.body.replaceAll(/\s+/g, ' ').trim().slice(0, PARTNER_BODY_EXCERPT);
    const redirect = answer.httpStatus >= 300 && answer.httpStatus < 400 ? answer.location : null;
    if (redirect !== null) {
      const origin = originOf(redirect);
      if (origin !== undefined && ours.has(origin)) {
        const back = new URL(redirect);
        const userid = back.searchParams.get('userid');
        partnerUserId = userid;
        const isUid = back.pathname.endsWith('/uid');
        checks.push(
          isUid
            ? ok(`redirects back to our /uid`)
            : fail(`redirects to our host but to ${back.pathname}, not /uid`),
        );
        if (userid === null || userid === '') checks.push(fail('without a userid'));
        else if (userid.includes(sync.userIdMacro))
          checks.push(fail(`with the macro ${sync.userIdMacro} not replaced`));
        else checks.push(ok(`with userid=${userid} (the macro replaced)`));
        const pl = back.searchParams.get('pl');
        if (pl !== String(platform.id)) checks.push(fail(`with pl=${pl ?? '(none)'}, not ${platform.id}`));
        if (!back.searchParams.get('plsec')) checks.push(fail('without our token (plsec)'));
        const signed = ['ts', 'kid', 'sig'].every((name) => back.searchParams.get(name));
        if (sync.signature.required) {
          checks.push(
            signed
              ? ok(`signed (key ${back.searchParams.get('kid')}, ts ${back.searchParams.get('ts')})`)
              : fail('unsigned, and the platform requires signed callbacks (ts, kid, sig)'),
          );
        } else if (signed) checks.push(info(`signed (key ${back.searchParams.get('kid')})`));
        callback = redirect;
      } else if (origin === partnerOrigin) {
        checks.push(info(`redirects on its own host (${new URL(redirect).pathname}): followed`));
        next = redirect;
      } else {
        checks.push(
          fail(
            `redirects to ${origin ?? redirect}, which is neither ours nor the platform's sync host: not followed`,
          ),
        );
        conclusion = `the partner redirected to ${origin ?? 'an invalid URL'} instead of our /uid`;
      }
    } else if (answer.httpStatus >= 400) {
      checks.push(fail(`answered ${answer.httpStatus}${excerpt ? `: ${excerpt}` : ''}`));
      conclusion = `the partner answered ${answer.httpStatus}${excerpt ? ` (${excerpt.slice(0, 80)})` : ''}`;
    } else {
      checks.push(fail(`answered ${answer.httpStatus} without redirecting back to us`));
      conclusion = `the partner answered ${answer.httpStatus} and did not redirect back`;
    }
    hops.push(
      hop('partner', 'the partner', url, {
        cookiesSent: result.cookiesSent,
        httpStatus: answer.httpStatus,
        status: answer.httpStatus,
        durationMs: answer.durationMs,
        location: answer.location,
        cookiesSet: answer.cookiesSet,
        body: redirect === null && excerpt ? excerpt : null,
        checks,
      }),
    );
    if (next !== null && bounce + 1 === MAX_PARTNER_HOPS) {
      conclusion = `the partner redirected ${MAX_PARTNER_HOPS} times on its own host without coming back`;
    }
  }

  // 4. Our /uid, where the partner sent the browser.
  if (callback !== null) {
    const uidUrl = input.trace ? withDebug(callback) : callback;
    await askOurs('uid', uidUrl, (our, _answer, checks) => {
      callbackAccepted = our.outcome === null || ACCEPTED.has(our.outcome);
      const detail = our.trace?.find((entry) => entry.step === 'mapping')?.detail;
      checks.push(
        our.outcome
          ? ok(`accepted: ${our.outcome}${detail ? ` (${detail})` : ''}`)
          : ok('accepted (no trace: the stored mapping below tells what was written)'),
      );
      if (our.status === 302) {
        checks.push(
          info(`the chain goes on to ${our.location ? originOf(our.location) : '?'}: not followed`),
        );
      }
      return callbackAccepted ? undefined : `our /uid answered ${our.outcome}`;
    });
  }

  // 5. The mapping now stored, read from the table as `dmp mappings` reads it.
  const dmpUserId = jar.get(input.syncPixelUrl, 'dmp_uid') ?? null;
  let mapping: MappingView | null = null;
  let mappingTable: string | null = null;
  if (dmpUserId !== null) {
    const read = await input.readMapping(dmpUserId);
    mappingTable = read.table;
    mapping = read.mappings.find((candidate) => candidate.platformId === platform.id) ?? null;
  }
  const stored =
    mapping !== null && !mapping.expired && partnerUserId !== null && mapping.partnerUserId === partnerUserId;
  const success = callbackAccepted && stored;
  if (success) {
    conclusion = `the sync works: DMP user ${dmpUserId} is mapped to partner user ${partnerUserId} on platform ${platform.id}`;
  } else if (callbackAccepted) {
    conclusion =
      mapping === null
        ? 'our /uid accepted the callback, but no mapping is stored'
        : `our /uid accepted the callback, but the stored partner id is ${mapping.partnerUserId}, not ${partnerUserId}`;
  } else if (conclusion === '') {
    conclusion = 'the sync did not complete';
  }
  return { ...base(), dmpUserId, mappingTable, mapping, ok: success, conclusion };
}

// ---------------------------------------------------------------------------------------------
// Text output.

const MARKS: Record<CheckLevel, string> = { ok: 'ok  ', fail: 'FAIL', warn: 'warn', info: 'note' };

function cookieText(change: CookieChange): string {
  if (change.action === 'deleted') return `${change.name} (deleted)`;
  if (change.action === 'refused') return `${change.name} (refused by the browser: Domain=${change.domain})`;
  return `${change.name}=${change.value} (${change.attributes})`;
}

export function renderReport(report: TestSyncReport): string {
  const lines: string[] = [
    `Test sync of platform ${report.platform.id} (${report.platform.name}) in environment ${report.environment}`,
    `our sync pixel: ${report.syncPixelUrl}; the platform's sync host: ${report.partnerOrigin}`,
    `traces: ${report.traces === 'on' ? 'on (debug=1)' : report.traces === 'off' ? 'asked for, but the service gives none here (debugTraces off): read from the answers' : 'not asked for (--no-trace)'}`,
  ];
  report.hops.forEach((entry, index) => {
    lines.push(
      '',
      `${index + 1}. ${entry.title}${entry.step === 'partnerUrl' ? `: ${entry.url}` : `: GET ${entry.url}`}`,
    );
    if (entry.step !== 'partnerUrl') {
      if (entry.cookiesSent.length > 0) lines.push(`   cookies sent: ${entry.cookiesSent.join(', ')}`);
      if (entry.error) lines.push(`   no answer: ${entry.error}`);
      else {
        const status =
          entry.status !== entry.httpStatus
            ? `${entry.status} (HTTP ${entry.httpStatus}, the debug trace)`
            : String(entry.status);
        lines.push(
          `   answer: ${status}${entry.outcome ? ` ${entry.outcome}` : ''}${entry.reason ? `, reason ${entry.reason}` : ''} in ${entry.durationMs} ms`,
        );
      }
      if (entry.location) lines.push(`   location: ${entry.location}`);
      for (const change of entry.cookiesSet) lines.push(`   cookie set: ${cookieText(change)}`);
      if (entry.body) lines.push(`   body: ${entry.body}`);
      for (const trace of entry.trace ?? []) lines.push(`   trace: ${trace.step}: ${trace.detail}`);
    }
    for (const check of entry.checks) lines.push(`   ${MARKS[check.level]} ${check.text}`);
  });
  lines.push('');
  if (report.dmpUserId === null) lines.push('mapping: none (the browser did not become a DMP user)');
  else if (report.mapping === null)
    lines.push(
      `mapping: none stored for DMP user ${report.dmpUserId} and platform ${report.platform.id} in ${report.mappingTable}`,
    );
  else {
    const mapping = report.mapping;
    lines.push(
      `mapping now stored in ${report.mappingTable}:`,
      `   DMP user ${report.dmpUserId} -> partner user ${mapping.partnerUserId} on platform ${mapping.platformId}`,
      `   first seen ${mapping.firstSeen ?? '-'}, last seen ${mapping.lastSeen ?? '-'}, last changed ${mapping.lastChanged ?? '-'}` +
        `${mapping.previousPartnerUserId ? `, previous id ${mapping.previousPartnerUserId}` : ''}, expires ${mapping.expiresAt ?? '-'}${mapping.expired ? ' (expired)' : ''}`,
    );
  }
  lines.push('', `${report.ok ? 'OK' : 'FAILED'}: ${report.conclusion}`);
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------

function parseTimeout(value: unknown): number {
  if (value === undefined) return DEFAULT_TIMEOUT_SECONDS * 1000;
  const seconds = Number(value);
  if (typeof value !== 'string' || !/^\d+(\.\d+)?$/.test(value) || seconds <= 0 || seconds > 120) {
    throw new UsageError(`--timeout must be seconds between 0 and 120, got '${String(value).slice(0, 20)}'`);
  }
  return Math.round(seconds * 1000);
}

/** Names the service reads itself, or that would change what is tested. */
const RESERVED_PARAMS = new Set(['pl', 'debug', 'hop', 'last']);

function parseParams(value: unknown): [string, string][] {
  const given = Array.isArray(value) ? value : value === undefined ? [] : [value];
  return given.map((entry) => {
    const text = String(entry);
    const index = text.indexOf('=');
    const name = index > 0 ? text.slice(0, index) : '';
    if (!/^[a-z_]{1,32}$/.test(name) || RESERVED_PARAMS.has(name)) {
      throw new UsageError(
        `--param must be name=value with a name such as gdpr or gdpr_consent (not pl, debug, hop, last), got '${text.slice(0, 40)}'`,
      );
    }
    return [name, text.slice(index + 1)];
  });
}

export const platformsTestSyncCommand: Command = {
  name: 'platforms test-sync',
  summary: 'Run one real sync of a platform as a browser would, and explain each hop',
  usage:
    '<platformId> [--env <name>] [--json] [--param name=value]... [--timeout <s>] [--cookie-jar <file>] [--no-trace]',
  help: [
    'arguments:',
    '  <platformId>         the platform to sync (it must have sync settings)',
    '',
    'options:',
    '  --env <name>         local (default: the running `npm start` stack) or a deployed environment:',
    '                       our sync URL from stack DmpActivation-<name>, output SyncPixelUrl',
    '  --param name=value   added to our /sync URL, as a page would: consent signals (gdpr=1,',
    '                       gdpr_consent=..., us_privacy=..., gpp=..., gpp_sid=...); repeatable',
    `  --timeout <s>        per hop (default ${DEFAULT_TIMEOUT_SECONDS})`,
    "  --cookie-jar <file>  start from this browser's cookies and save them after (curl's format:",
    '                       `curl -b/-c`); without it the browser is new, so every platform is due',
    '  --no-trace           do not ask our service for its debug=1 trace (read its answers only)',
    '  --endpoint, --table, --region  where the mapping is read, as for dmp mappings',
    '  --json               the same facts: {"hops": [...], "mapping", "ok", "conclusion", ...}',
    '',
    "Hops: our /sync?pl=<id> (status, redirect, cookies, or the refusal reason), the partner's sync",
    "URL (its host, and whether its callback is our /uid with this pl), the partner's answer, our",
    '/uid answer (stored, unchanged, or refused and why), then the mapping now stored. Redirects',
    "are followed only to our host and the platform's sync host. Deployed stacks give no debug=1",
    'trace unless the environment sets debugTraces: the answers are explained from their status',
    'and x-dmp-reason then. Each run without --cookie-jar makes a new DMP user (the test browser)',
    'and leaves its mapping, which expires as any other.',
    'Exit status: 0 the mapping is stored, 1 the sync failed (the output says where), 2 usage.',
  ].join('\n'),
  options: {
    ...TARGET_OPTIONS,
    param: { type: 'string', multiple: true },
    timeout: { type: 'string' },
    'cookie-jar': { type: 'string' },
    'no-trace': { type: 'boolean', default: false },
  },
  positionals: { min: 1, max: 1 },
  async run({ positionals, values, json, io }) {
    const platformId = parsePlatformId(positionals[0]!, '<platformId>');
    const params = parseParams(values['param']);
    const timeoutMs = parseTimeout(values['timeout']);
    const jarFile = typeof values['cookie-jar'] === 'string' ? values['cookie-jar'] : undefined;
    const flags = targetFlags(values);
    const context = CliContext.open(flags, io.env);
    try {
      const config = context.runtimeConfig();
      const platform = findPlatform(config, platformId);
      if (!platform.sync) {
        throw new CliError(
          `platform ${platformId} (${platform.name}) in environment ${config.name} has no sync settings`,
        );
      }
      const syncPixelUrl = context.isLocal
        ? context.localEndpoints().syncPixelUrl
        : await readStackOutput(flags, 'syncPixelUrl', { hint: 'is the stack deployed from this version?' });
      const ourOrigins = new Set([new URL(syncPixelUrl).origin]);
      if (config.userSync.publicBaseUrl) ourOrigins.add(new URL(config.userSync.publicBaseUrl).origin);

      const jar = new CookieJar();
      if (jarFile && existsSync(jarFile)) jar.load(readFileSync(jarFile, 'utf8'));
      const report = await runTestSync({
        environment: config.name,
        platform: { ...platform, sync: platform.sync },
        syncPixelUrl,
        ourOrigins: [...ourOrigins],
        params,
        trace: values['no-trace'] !== true,
        timeoutMs,
        jar,
        readMapping: async (dmpUserId) => {
          const table = await resolveTable(flags, MAPPING_TABLE, 'mappingTableName', io.env);
          return {
            table: table.description,
            mappings: await readMappings(table, dmpUserId, { destroy: true }),
          };
        },
      });
      if (jarFile) writeFileSync(jarFile, jar.serialize(), { mode: 0o600 });
      io.stdout(json ? JSON.stringify(report, null, 2) : renderReport(report));
      return report.ok ? EXIT_OK : EXIT_ERROR;
    } finally {
      context.close();
    }
  },
};

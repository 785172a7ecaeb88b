import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { dirname } from 'node:path';
import { DEFAULT_USER_ID_MACRO } from '../src/config/schema.ts';
import { type SignatureAlgorithm, signSyncCallback } from '../src/sync/signature.ts';
import { close, listen, originOf, PayloadTooLargeError, readBody } from './http-util.ts';
import { Authenticator, type PartnerCredentials, unauthorized } from './reference-partner/auth.ts';
import {
  json,
  type PartnerRequest,
  type PartnerResponse,
  type PartnerRoute,
  parseJson,
  parseQuery,
  type RecordedRequest,
  seedError,
  text,
} from './reference-partner/common.ts';
import {
  type ActiveFault,
  type FaultSpec,
  FaultSpecSchema,
  FaultSwitches,
} from './reference-partner/faults.ts';
import { MetaApi, type MetaAudience } from './reference-partner/meta.ts';
import type { SeedPopulation } from './reference-partner/population.ts';
import { SeedApi, type SeedSegment, type SeedState } from './reference-partner/seed-api.ts';
import { TtdApi, type TtdSegment } from './reference-partner/ttd.ts';

export {
  DEFAULT_CREDENTIALS,
  type HmacAlgorithm,
  type PartnerCredentials,
} from './reference-partner/auth.ts';
export type { AppliedFault, AuthMethod, RecordedRequest } from './reference-partner/common.ts';
export { type ActiveFault, type FaultSpec, FaultSpecError } from './reference-partner/faults.ts';
export { META_FIRST_AUDIENCE_ID, META_MAX_ROWS, type MetaAudience } from './reference-partner/meta.ts';
export {
  type PopulationSettings,
  SeedPopulation,
  type SegmentPopulation,
} from './reference-partner/population.ts';
export {
  FIRST_BIG_SEGMENT_ID,
  FIRST_SEGMENT_ID,
  type SeedSegment,
} from './reference-partner/seed-api.ts';
export { TTD_MAX_BODY_BYTES, type TtdSegment } from './reference-partner/ttd.ts';

/**
 * The seed's third party, on its own port: an in-memory fake of an execution platform that speaks
 * the integration guide's API, plus the shapes of two real ones, for connectors to be tried
 * against (docs/reference-partner.md):
 *
 * - `GET /sync?out=...`: user syncing (no credentials);
 * - `/v1/segment`, `/v1/segments`: the seed's segment creation and population (seed-api.ts);
 * - `/meta/...`: a Meta-like custom audience API (meta.ts); `/ttd/...`: a Trade-Desk-like
 *   first-party data API (ttd.ts);
 * - `POST /oauth/token`: OAuth2 client credentials (auth.ts);
 * - `/__requests`, `/__faults`, `/__state`: the request log, fault switches (faults.ts), state.
 *
 * Every API route needs a credential: basic, bearer, API key, an OAuth2 token or an HMAC request
 * signature (auth.ts). Fault switches make API routes answer 429/5xx (after doing the work, if
 * asked), reset the connection, cut the body short, hold the answer until the test releases it
 * (past a client's timeout), or give segment ids above 2^53. Like most real platforms, the seed
 * API does not de-duplicate titles unless `dedupeTitles` is set.
 */

export const PARTNER_COOKIE = 'partner_uid';
const PARTNER_COOKIE_MAX_AGE_SECONDS = 365 * 24 * 3600;
const PARTNER_ID = /^[A-Za-z0-9_-]{1,64}$/;
/** The request log keeps the latest requests only, so a long `npm start` session stays small. */
const MAX_RECORDED_REQUESTS = 1000;
/** Of each request body, the log keeps this much. */
const MAX_LOGGED_BODY_BYTES = 64 * 1024;
/** Larger request bodies are refused with 413 before any route sees them. */
const MAX_BODY_BYTES = 10 * 1024 * 1024;

/** What the partner knows about one DMP platform id it serves. */
export interface PartnerPlatform {
  readonly id: number;
  readonly userIdMacro: string;
  /** Key id -> shared secret for signed callbacks (first one signs by default). */
  readonly signingKeys: Readonly<Record<string, string>>;
  readonly algorithm: SignatureAlgorithm;
}

export interface ReferencePartnerOptions {
  /** The DMP platforms it syncs users for (`/sync`). */
  readonly platforms?: readonly PartnerPlatform[];
  /** 0 (default) picks a free port. */
  readonly port?: number;
  readonly log?: (line: string) => void;
  /** Accepted credentials; each method defaults to DEFAULT_CREDENTIALS, `false` turns it off. */
  readonly credentials?: PartnerCredentials;
  /** The partner's clock in ms (token expiry, signature skew, TTLs, times); default `Date.now`. */
  readonly now?: () => number;
  /** Rows per Meta-like users upload (default 10,000). */
  readonly metaMaxRows?: number;
  /** Largest Trade-Desk-like upload body (default 2.5 MiB). */
  readonly ttdMaxBodyBytes?: number;
  /**
   * Seed API: answer a repeated title with the existing segment (`created:false`). Off by
   * default, as on most real platforms: a repeated create makes a second segment.
   */
  readonly dedupeTitles?: boolean;
  /**
   * Keep the seed API's segments, members, id counters and idempotency keys in this JSON file,
   * read at start and written after every change (`npm start` puts it in `.local-data/`, beside
   * the service's own tables, so that restarts keep both worlds consistent).
   */
  readonly stateFile?: string;
}

export interface ReferencePartner {
  readonly url: string;
  readonly port: number;
  readonly server: Server;
  /** Requests received (the latest 1000), oldest first; also served as JSON at `GET /__requests`. */
  readonly requests: RecordedRequest[];
  /** Empties the request log (as `DELETE /__requests`). */
  reset(): void;
  /**
   * Forgets everything (as `DELETE /__state`): log, segments, audiences, members, tokens,
   * idempotency keys and fault switches; held answers are sent.
   */
  resetAll(): void;
  /** The seed API's segments, oldest first. */
  segments(): SeedSegment[];
  /** User ids in a seed API segment, in the order they were added. */
  members(segmentId: number | bigint | string): string[];
  /** Turns the seed API's title de-duplication on or off (see ReferencePartnerOptions.dedupeTitles). */
  setDedupeTitles(on: boolean): void;
  /** The seed API's population: what it holds per segment (adds, duplicates), its answer settings. */
  readonly population: SeedPopulation;
  metaAudiences(): MetaAudience[];
  metaMembers(audienceId: string): string[];
  /** Trade-Desk-like segments, with the count of members whose TTL has not passed. */
  ttdSegments(): TtdSegment[];
  ttdMembers(advertiserId: string, name: string): string[];
  /** Turns a fault switch on (as `POST /__faults`); throws FaultSpecError on an invalid spec. */
  addFault(spec: FaultSpec): ActiveFault;
  /** Removes one fault switch, or all of them; returns how many. */
  clearFaults(id?: number): number;
  activeFaults(): readonly ActiveFault[];
  /** How many answers `hold` or `delayMs` switches are keeping. */
  heldCount(): number;
  /** Resolves once at least `count` (default 1) answers are held. */
  waitForHeld(count?: number): Promise<void>;
  /** Sends every held answer now; returns how many. */
  releaseHeld(): number;
  stop(): Promise<void>;
}

function parseCookies(header: string | undefined): Map<string, string> {
  const cookies = new Map<string, string>();
  for (const part of (header ?? '').split(';')) {
    const index = part.indexOf('=');
    if (index <= 0) continue;
    const name = part.slice(0, index).trim();
    if (!cookies.has(name)) cookies.set(name, part.slice(index + 1).trim());
  }
  return cookies;
}

/** Replaces the macro, literal or percent-encoded, with the percent-encoded user id. */
export function replaceUserIdMacro(
  out: string,
  macro: string,
  userId: string,
): { url: string; replaced: boolean } {
  const encodedMacro = encodeURIComponent(macro);
  const variants = [
    macro,
    encodedMacro,
    encodedMacro.replaceAll(/%[0-9A-F]{2}/g, (hex) => hex.toLowerCase()),
  ];
  let url = out;
  for (const variant of variants) url = url.split(variant).join(encodeURIComponent(userId));
  return { url, replaced: url !== out };
}

/** Appends raw `name=value` pairs to a URL's query, before any fragment, leaving the rest untouched. */
function appendQuery(url: string, pairs: readonly [string, string][]): string {
  const hash = url.indexOf('#');
  const base = hash === -1 ? url : url.slice(0, hash);
  const fragment = hash === -1 ? '' : url.slice(hash);
  const separator = base.includes('?') ? (base.endsWith('?') || base.endsWith('&') ? '' : '&') : '?';
  const query = pairs.map(([name, value]) => `${name}=${encodeURIComponent(value)}`).join('&');
  return `${base}${separator}${query}${fragment}`;
}

function redactHeaders(
  headers: IncomingMessage['headers'],
  secret: ReadonlySet<string>,
): Record<string, string | string[] | undefined> {
  const copy: Record<string, string | string[] | undefined> = { ...headers };
  for (const name of Object.keys(copy)) if (secret.has(name)) copy[name] = '[redacted]';
  return copy;
}

function noteBody(record: RecordedRequest, body: Buffer): void {
  if (body.length === 0) return;
  let bodyText = body.subarray(0, MAX_LOGGED_BODY_BYTES).toString('utf8');
  if (record.path === '/oauth/token') {
    bodyText = bodyText.replaceAll(/(^|&)(client_secret=)[^&]*/g, '$1$2[redacted]');
  }
  record.body = bodyText;
  record.bodyBytes = body.length;
  if (body.length > MAX_LOGGED_BODY_BYTES) record.bodyTruncated = true;
}

type RouteMatch =
  | { readonly route: PartnerRoute; readonly params: Record<string, string> }
  | { readonly route?: undefined; readonly allow: readonly string[] };

function matchRoute(routes: readonly PartnerRoute[], method: string, path: string): RouteMatch {
  const allow: string[] = [];
  for (const route of routes) {
    let params: Record<string, string> | undefined;
    if (typeof route.path === 'string') {
      if (route.path === path) params = {};
    } else {
      const match = route.path.exec(path);
      if (match) params = { ...match.groups };
    }
    if (params === undefined) continue;
    if (route.method === method) return { route, params };
    allow.push(route.method);
  }
  return { allow };
}

export async function startReferencePartner(
  options: ReferencePartnerOptions = {},
): Promise<ReferencePartner> {
  const platforms = new Map((options.platforms ?? []).map((platform) => [platform.id, platform]));
  const requests: RecordedRequest[] = [];
  const log = options.log ?? (() => {});
  const now = options.now ?? Date.now;
  const authenticator = new Authenticator(options.credentials ?? {}, now);
  const secretHeaders = authenticator.secretHeaders;
  const faults = new FaultSwitches();
  const seed = new SeedApi({ dedupeTitles: options.dedupeTitles ?? false });
  const stateFile = options.stateFile;
  if (stateFile && existsSync(stateFile)) {
    const saved = JSON.parse(readFileSync(stateFile, 'utf8')) as { seed?: SeedState };
    if (saved.seed) seed.restore(saved.seed);
  }
  /** Writes the seed API's state (atomically: a crash leaves the previous file). */
  function persist(): void {
    if (!stateFile) return;
    mkdirSync(dirname(stateFile), { recursive: true });
    const temporary = `${stateFile}.tmp`;
    writeFileSync(temporary, JSON.stringify({ seed: seed.snapshot() }));
    renameSync(temporary, stateFile);
  }
  const meta = new MetaApi(options.metaMaxRows);
  const ttd = new TtdApi(now, options.ttdMaxBodyBytes);

  function sync({ url, cookies, record }: PartnerRequest): PartnerResponse {
    const out = url.searchParams.get('out');
    if (!out) return text(400, 'missing out');
    let outUrl: URL;
    try {
      outUrl = new URL(out);
    } catch {
      return text(400, 'out is not a URL');
    }
    if (outUrl.protocol !== 'http:' && outUrl.protocol !== 'https:') return text(400, 'out must be http(s)');

    const existing = cookies.get(PARTNER_COOKIE);
    const userId = existing && PARTNER_ID.test(existing) ? existing : randomBytes(8).toString('hex');
    record.partnerUserId = userId;

    const sign = url.searchParams.get('sign');
    const platformId = Number(sign ?? outUrl.searchParams.get('pl'));
    const platform = platforms.get(platformId);
    let location = replaceUserIdMacro(out, platform?.userIdMacro ?? DEFAULT_USER_ID_MACRO, userId).url;

    if (sign !== null) {
      if (!platform) return text(400, `unknown platform ${sign}`);
      const kid = url.searchParams.get('kid') ?? Object.keys(platform.signingKeys)[0];
      const secret = kid === undefined ? undefined : platform.signingKeys[kid];
      if (kid === undefined || secret === undefined)
        return text(400, `no signing key ${kid ?? ''} for ${sign}`);
      const callback = new URL(location);
      const ts = String(Math.floor(now() / 1000));
      const fields = {
        pl: callback.searchParams.get('pl') ?? '',
        userid: userId,
        plsec: callback.searchParams.get('plsec') ?? '',
        ts,
        kid,
      };
      const sig = signSyncCallback(fields, secret, platform.algorithm);
      location = appendQuery(location, [
        ['ts', ts],
        ['kid', kid],
        ['sig', sig],
      ]);
    }
    record.location = location;
    const cookie = `${PARTNER_COOKIE}=${userId}; Path=/; Max-Age=${PARTNER_COOKIE_MAX_AGE_SECONDS}; HttpOnly; SameSite=Lax`;
    return { status: 302, headers: { location, 'set-cookie': cookie, 'cache-control': 'no-store' } };
  }

  function reset(): void {
    requests.length = 0;
  }

  function resetAll(): void {
    reset();
    seed.clear();
    seed.options.dedupeTitles = options.dedupeTitles ?? false;
    persist();
    meta.clear();
    ttd.clear();
    authenticator.clear();
    faults.clear();
    faults.releaseHeld();
  }

  function state(withMembers: boolean) {
    return {
      segments: seed.segments().map((segment) => {
        const members = seed.members(segment.segment_id);
        return { ...segment, memberCount: members.length, ...(withMembers ? { members } : {}) };
      }),
      meta: meta.audiences().map((audience) => {
        const members = meta.members(audience.id);
        return { ...audience, memberCount: members.length, ...(withMembers ? { members } : {}) };
      }),
      ttd: ttd.segments().map((segment) => ({
        ...segment,
        ...(withMembers ? { memberIds: ttd.members(segment.advertiserId, segment.name) } : {}),
      })),
    };
  }

  function addFaults({ body }: PartnerRequest): PartnerResponse {
    const parsed = parseJson(body);
    if (!parsed.ok) return seedError(400, 'the body must be a fault spec (JSON) or an array of them');
    const specs: unknown[] = Array.isArray(parsed.value) ? parsed.value : [parsed.value];
    // All or nothing: check every spec before turning any on.
    for (const [index, spec] of specs.entries()) {
      const result = FaultSpecSchema.safeParse(spec);
      if (!result.success)
        return seedError(400, `fault ${index}: ${result.error.issues[0]?.message ?? 'invalid'}`);
    }
    return json(201, { faults: specs.map((spec) => faults.add(spec as FaultSpec)) });
  }

  function clearFaults({ url }: PartnerRequest): PartnerResponse {
    const id = url.searchParams.get('id');
    if (id !== null) return json(200, { cleared: faults.clear(Number(id)), released: 0 });
    return json(200, { cleared: faults.clear(), released: faults.releaseHeld() });
  }

  const routes: readonly PartnerRoute[] = [
    { method: 'GET', path: '/sync', access: 'public', handle: sync },
    ...seed.routes,
    ...meta.routes,
    ...ttd.routes,
    {
      method: 'POST',
      path: '/oauth/token',
      access: 'oauth',
      handle: ({ request, body, record }) => authenticator.token(request, body, record),
    },
    { method: 'GET', path: '/__requests', access: 'control', handle: () => json(200, requests) },
    {
      method: 'DELETE',
      path: '/__requests',
      access: 'control',
      handle: () => {
        reset();
        return { status: 204 };
      },
    },
    {
      method: 'GET',
      path: '/__faults',
      access: 'control',
      handle: () => json(200, { faults: faults.list(), held: faults.heldCount }),
    },
    { method: 'POST', path: '/__faults', access: 'control', handle: addFaults },
    { method: 'DELETE', path: '/__faults', access: 'control', handle: clearFaults },
    {
      method: 'POST',
      path: '/__faults/release',
      access: 'control',
      handle: () => json(200, { released: faults.releaseHeld() }),
    },
    {
      method: 'GET',
      path: '/__state',
      access: 'control',
      handle: ({ url }) => json(200, state(url.searchParams.get('members') === 'true')),
    },
    {
      method: 'DELETE',
      path: '/__state',
      access: 'control',
      handle: () => {
        resetAll();
        return { status: 204 };
      },
    },
  ];

  /** Runs the route, with its credential check and fault switch; `undefined` means reset the connection. */
  async function answer(
    route: PartnerRoute,
    context: PartnerRequest,
  ): Promise<{ answer: PartnerResponse | undefined; fault?: ActiveFault }> {
    const { request, url, body, record } = context;
    const method = request.method ?? 'GET';
    const auth = route.access === 'api' ? authenticator.authenticate(request, body) : undefined;
    if (auth?.ok) {
      record.auth = auth.method;
      if (auth.detail !== undefined) record.authDetail = auth.detail;
    } else if (auth) {
      record.authError = auth.reason;
    }
    const faultable = route.access === 'api' || route.access === 'oauth';
    const fault = faultable ? faults.take(method, url.pathname, route.access === 'oauth') : undefined;

    let result: PartnerResponse | undefined;
    let processed = false;
    if (fault && FaultSwitches.preempts(fault)) {
      result =
        fault.status !== undefined
          ? FaultSwitches.statusAnswer({ ...fault, status: fault.status })
          : undefined;
    } else {
      if (auth && !auth.ok) result = unauthorized(auth);
      else if (route.access === 'api' && parseQuery(url.search) === undefined) {
        result = seedError(400, 'malformed query string');
      } else {
        result = await route.handle(fault ? { ...context, fault } : context);
        processed = true;
        if (route.access === 'api' && method !== 'GET') persist();
      }
      if (fault?.malformed) result = FaultSwitches.malformedAnswer(fault, result);
      else if (fault?.status !== undefined)
        result = FaultSwitches.statusAnswer({ ...fault, status: fault.status });
      if (fault?.reset) result = undefined;
    }
    if (!fault) return { answer: result };
    record.fault = FaultSwitches.describe(fault, processed);
    if (fault.hold || fault.delayMs !== undefined) await faults.hold(fault.hold ? undefined : fault.delayMs);
    return { answer: result, fault };
  }

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://partner.invalid');
    const method = request.method ?? 'GET';
    const match = matchRoute(routes, method, url.pathname);
    const logged = match.route?.access !== 'control';
    const record: RecordedRequest = {
      time: new Date(now()).toISOString(),
      method,
      url: request.url ?? '/',
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers: redactHeaders(request.headers, secretHeaders),
      status: 0,
    };
    if (logged) {
      requests.push(record);
      if (requests.length > MAX_RECORDED_REQUESTS)
        requests.splice(0, requests.length - MAX_RECORDED_REQUESTS);
    }

    let result: PartnerResponse | undefined;
    let fault: ActiveFault | undefined;
    let body: Buffer | undefined;
    try {
      body = await readBody(request, MAX_BODY_BYTES);
      noteBody(record, body);
    } catch (error) {
      if (!(error instanceof PayloadTooLargeError)) throw error;
      result = { ...seedError(413, 'request body too large'), headers: { connection: 'close' } };
    }

    if (body === undefined) {
      // Refused above (413); the log keeps none of the body.
      record.bodyTruncated = true;
    } else if (!match.route) {
      result =
        match.allow.length > 0
          ? json(405, { status: 'ERROR', message: 'Method Not Allowed' }, { allow: match.allow.join(', ') })
          : json(404, { status: 'ERROR', message: 'Not Found' });
    } else {
      const context: PartnerRequest = {
        request,
        url,
        params: match.params,
        query: parseQuery(url.search) ?? new Map(),
        cookies: parseCookies(request.headers.cookie),
        body,
        record,
      };
      ({ answer: result, fault } = await answer(match.route, context));
    }

    const faultNote = fault ? ` [fault ${fault.id}: ${record.fault?.kinds.join('+')}]` : '';
    const authNote = record.auth ? ` (${record.auth})` : record.authError ? ` (${record.authError})` : '';
    if (!result) {
      // `socket` is typed non-null, but a request stream that was destroyed (413) has none.
      (request.socket as Socket | null)?.resetAndDestroy();
      if (logged) log(`partner: ${record.method} ${record.url} -> connection reset${authNote}${faultNote}`);
      return;
    }
    record.status = result.status;
    if (logged) log(`partner: ${record.method} ${record.url} -> ${result.status}${authNote}${faultNote}`);
    // A held answer may outlive its client (timeout) or the server (stop).
    if (response.destroyed || (response.socket as Socket | null)?.destroyed) return;
    const payload = result.body ?? '';
    response.writeHead(result.status, { ...result.headers, 'content-length': Buffer.byteLength(payload) });
    response.end(payload);
  }

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      log(`partner: error: ${(error as Error).stack ?? String(error)}`);
      if (!response.headersSent) {
        response.writeHead(500, { 'content-type': 'text/plain' });
        response.end('internal error\n');
      } else {
        response.destroy();
      }
    });
  });
  const port = await listen(server, options.port ?? 0);
  return {
    url: originOf(port),
    port,
    server,
    requests,
    reset,
    resetAll,
    segments: () => seed.segments(),
    members: (segmentId) => seed.members(segmentId),
    population: seed.population,
    setDedupeTitles: (on) => {
      seed.options.dedupeTitles = on;
    },
    metaAudiences: () => meta.audiences(),
    metaMembers: (audienceId) => meta.members(audienceId),
    ttdSegments: () => ttd.segments(),
    ttdMembers: (advertiserId, name) => ttd.members(advertiserId, name),
    addFault: (spec) => faults.add(spec),
    clearFaults: (id) => faults.clear(id),
    activeFaults: () => faults.list(),
    heldCount: () => faults.heldCount,
    waitForHeld: (count) => faults.waitForHeld(count),
    releaseHeld: () => faults.releaseHeld(),
    stop: async () => {
      faults.clear();
      faults.releaseHeld();
      await close(server);
    },
  };
}

import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { DEFAULT_USER_ID_MACRO } from '../src/config/schema.ts';
import { type SignatureAlgorithm, signSyncCallback } from '../src/sync/signature.ts';
import { close, listen, originOf, readBody } from './http-util.ts';

/**
 * The seed's third party, on its own port: an execution platform that speaks the integration
 * guide's API. For now it does user syncing (`GET /sync?out=...`); segment creation and population
 * join the ROUTES list below as they are built.
 */

export const PARTNER_COOKIE = 'partner_uid';
const PARTNER_COOKIE_MAX_AGE_SECONDS = 365 * 24 * 3600;
const PARTNER_ID = /^[A-Za-z0-9_-]{1,64}$/;
/** The request log keeps the latest requests only, so a long `npm start` session stays small. */
const MAX_RECORDED_REQUESTS = 1000;

/** What the partner knows about one DMP platform id it serves. */
export interface PartnerPlatform {
  readonly id: number;
  readonly userIdMacro: string;
  /** Key id -> shared secret for signed callbacks (first one signs by default). */
  readonly signingKeys: Readonly<Record<string, string>>;
  readonly algorithm: SignatureAlgorithm;
}

export interface RecordedRequest {
  readonly time: string;
  readonly method: string;
  readonly url: string;
  readonly path: string;
  readonly query: Record<string, string>;
  readonly headers: Record<string, string | string[] | undefined>;
  status: number;
  /** The partner's user id for this browser (`/sync`). */
  partnerUserId?: string;
  /** Where the browser was sent (`/sync`). */
  location?: string;
}

export interface ReferencePartnerOptions {
  readonly platforms: readonly PartnerPlatform[];
  /** 0 (default) picks a free port. */
  readonly port?: number;
  readonly log?: (line: string) => void;
}

export interface ReferencePartner {
  readonly url: string;
  readonly port: number;
  readonly server: Server;
  /** Requests received (the latest 1000), oldest first; also served as JSON at `GET /__requests`. */
  readonly requests: RecordedRequest[];
  stop(): Promise<void>;
}

interface PartnerRequest {
  readonly request: IncomingMessage;
  readonly url: URL;
  readonly cookies: ReadonlyMap<string, string>;
  readonly body: Buffer;
  readonly record: RecordedRequest;
}

interface PartnerResponse {
  readonly status: number;
  readonly headers?: Record<string, string | string[]>;
  readonly body?: string;
}

interface PartnerRoute {
  readonly method: 'GET' | 'POST' | 'DELETE';
  readonly path: string;
  handle(request: PartnerRequest): PartnerResponse | Promise<PartnerResponse>;
}

function json(status: number, body: unknown): PartnerResponse {
  return { status, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
}

function text(status: number, body: string): PartnerResponse {
  return { status, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: `${body}\n` };
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

export async function startReferencePartner(options: ReferencePartnerOptions): Promise<ReferencePartner> {
  const platforms = new Map(options.platforms.map((platform) => [platform.id, platform]));
  const requests: RecordedRequest[] = [];
  const log = options.log ?? (() => {});

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
      const ts = String(Math.floor(Date.now() / 1000));
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

  const routes: readonly PartnerRoute[] = [
    { method: 'GET', path: '/sync', handle: sync },
    // Later: POST /v1/segment (create, no batch, micro batch) behind basic auth foo:bar.
    { method: 'GET', path: '/__requests', handle: () => json(200, requests) },
    {
      method: 'DELETE',
      path: '/__requests',
      handle: () => {
        requests.length = 0;
        return { status: 204 };
      },
    },
  ];

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://partner.invalid');
    const isLog = url.pathname === '/__requests';
    const record: RecordedRequest = {
      time: new Date().toISOString(),
      method: request.method ?? 'GET',
      url: request.url ?? '/',
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers: { ...request.headers },
      status: 0,
    };
    if (!isLog) {
      requests.push(record);
      if (requests.length > MAX_RECORDED_REQUESTS)
        requests.splice(0, requests.length - MAX_RECORDED_REQUESTS);
    }
    const body = await readBody(request, 10 * 1024 * 1024);
    const route = routes.find(
      (candidate) => candidate.method === request.method && candidate.path === url.pathname,
    );
    const result = route
      ? await route.handle({ request, url, cookies: parseCookies(request.headers.cookie), body, record })
      : json(404, { status: 'ERROR', message: 'Not Found' });
    record.status = result.status;
    response.writeHead(result.status, result.headers ?? {});
    response.end(result.body ?? '');
    if (!isLog) log(`partner: ${record.method} ${record.url} -> ${result.status}`);
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
  return { url: originOf(port), port, server, requests, stop: () => close(server) };
}

import {
  type AttributeValue,
  DynamoDBClient,
  PutItemCommand,
  QueryCommand,
  ScanCommand,
} from '@aws-sdk/client-dynamodb';
import { marshall, unmarshall } from '@aws-sdk/util-dynamodb';
import { afterAll, beforeAll, expect } from 'vitest';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from '../../local/endpoints.ts';
import { type LocalStack, startLocalStack } from '../../local/stack.ts';
import { MAPPING_TABLE } from '../../src/infra/resources.ts';
import { SYNC_METRIC_FILTERS } from '../../src/observability/sync-metric-filters.ts';
import { type SignatureAlgorithm, signSyncCallback } from '../../src/sync/signature.ts';

/**
 * Shared harness of the user-sync integration tests: one real local stack per test file (the real
 * handler behind the local HTTP API, dynalite, the reference partner), browsers with their own
 * cookie jars that never follow redirects by themselves, a reader of the mapping table, and a
 * capture of everything the handler writes to stdout/stderr (its logs and EMF metrics).
 */

/** From config/local-secrets.json. */
export const STATIC_TOKEN = 'verysecure';
export const SIGNING_KID = 'k1';
export const SIGNING_SECRET = 'reference-partner-shared-secret-1';
/** Platform 99999's key for signed static-token callbacks. */
export const STATIC_SIGNING_SECRET = 'reference-partner-static-signing-secret';
export const TOKEN_SIGNING_KEY = 'local-only-sync-token-signing-key';
export const PRIVACY_KEY = 'local-only-privacy-digest-key-0000000000';
/** From config/environments/local.json. */
export const STATIC_PLATFORM = 99999;
export const SIGNED_PLATFORM = 88888;
export const HOST_VENDOR_ID = 1234;
export const PARTNER_VENDOR_ID = 4321;

// ---------------------------------------------------------------------------------------------
// HTTP: a browser = a cookie jar; requests never follow redirects on their own.

export interface HttpResponse {
  readonly url: string;
  readonly status: number;
  readonly headers: Headers;
  readonly setCookies: readonly string[];
  readonly location: string | null;
  readonly reason: string | null;
  readonly body: Buffer;
}

export interface RequestOptions {
  readonly method?: string;
  readonly headers?: Record<string, string>;
  readonly body?: string;
}

interface StoredCookie {
  readonly value: string;
  readonly attributes: string;
}

/**
 * A browser's cookies. Cookies are kept per host name, not per port (as browsers and curl do), so
 * the reference partner and our API, both on 127.0.0.1, see each other's cookies like on one
 * machine; `Secure` is honoured as a browser does for loopback (sent over http://127.0.0.1).
 */
export class Browser {
  private readonly jar = new Map<string, Map<string, StoredCookie>>();
  /** Every response this browser received, in order. */
  readonly history: HttpResponse[] = [];

  constructor(
    readonly name: string,
    private readonly onCookie: (name: string, value: string) => void = () => {},
  ) {}

  cookie(name: string, host = '127.0.0.1'): string | undefined {
    return this.jar.get(host)?.get(name)?.value;
  }

  /** The raw `Set-Cookie` attributes the cookie was last set with. */
  cookieAttributes(name: string, host = '127.0.0.1'): string | undefined {
    return this.jar.get(host)?.get(name)?.attributes;
  }

  setCookie(name: string, value: string, host = '127.0.0.1'): void {
    this.hostJar(host).set(name, { value, attributes: '' });
    this.onCookie(name, value);
  }

  deleteCookie(name: string, host = '127.0.0.1'): void {
    this.jar.get(host)?.delete(name);
  }

  cookieHeader(url: string): string | undefined {
    const cookies = this.jar.get(new URL(url).hostname);
    if (!cookies || cookies.size === 0) return undefined;
    return [...cookies].map(([name, cookie]) => `${name}=${cookie.value}`).join('; ');
  }

  /** One request, with this browser's cookies; stores the cookies the answer sets. */
  async request(url: string, options: RequestOptions = {}): Promise<HttpResponse> {
    const headers: Record<string, string> = { ...options.headers };
    const cookie = this.cookieHeader(url);
    if (cookie && headers['cookie'] === undefined) headers['cookie'] = cookie;
    const response = await fetch(url, {
      method: options.method ?? 'GET',
      redirect: 'manual',
      headers,
      ...(options.body !== undefined ? { body: options.body } : {}),
    });
    const body = Buffer.from(await response.arrayBuffer());
    const setCookies = response.headers.getSetCookie();
    for (const line of setCookies) this.store(new URL(url).hostname, line);
    const result: HttpResponse = {
      url,
      status: response.status,
      headers: response.headers,
      setCookies,
      location: response.headers.get('location'),
      reason: response.headers.get('x-dmp-reason'),
      body,
    };
    this.history.push(result);
    return result;
  }

  get(url: string, headers?: Record<string, string>): Promise<HttpResponse> {
    return this.request(url, headers ? { headers } : {});
  }

  /**
   * Follows a whole redirect chain like `curl -L -c jar -b jar`: every hop with the jar's cookies,
   * relative locations resolved, until an answer that is not a redirect.
   */
  async follow(url: string, options: RequestOptions & { readonly maxHops?: number } = {}) {
    const hops: HttpResponse[] = [];
    let next: string | null = url;
    const maxHops = options.maxHops ?? 20;
    while (next !== null) {
      if (hops.length >= maxHops) throw new Error(`more than ${maxHops} hops: ${hops.map((h) => h.url)}`);
      const response = await this.request(
        next,
        hops.length === 0 ? options : { headers: options.headers ?? {} },
      );
      hops.push(response);
      next =
        response.status >= 300 && response.status < 400 && response.location
          ? new URL(response.location, next).href
          : null;
    }
    return hops;
  }

  private hostJar(host: string): Map<string, StoredCookie> {
    let cookies = this.jar.get(host);
    if (!cookies) {
      cookies = new Map();
      this.jar.set(host, cookies);
    }
    return cookies;
  }

  private store(requestHost: string, line: string): void {
    const [pair = '', ...attributeParts] = line.split(';');
    const index = pair.indexOf('=');
    if (index <= 0) return;
    const name = pair.slice(0, index).trim();
    const value = pair.slice(index + 1).trim();
    const attributes = attributeParts.map((part) => part.trim());
    const domain = attributes.find((a) => /^domain=/i.test(a))?.slice('domain='.length);
    const host = domain ? domain.replace(/^\./, '') : requestHost;
    const maxAge = attributes.find((a) => /^max-age=/i.test(a))?.slice('max-age='.length);
    const expires = attributes.find((a) => /^expires=/i.test(a))?.slice('expires='.length);
    const expired =
      (maxAge !== undefined && Number(maxAge) <= 0) ||
      (maxAge === undefined && expires !== undefined && Date.parse(expires) <= Date.now());
    if (expired) {
      this.jar.get(host)?.delete(name);
      return;
    }
    this.hostJar(host).set(name, { value, attributes: attributeParts.join(';').trim() });
    this.onCookie(name, value);
  }
}

// ---------------------------------------------------------------------------------------------
// Assertions on answers.

/** A 1x1 GIF, checked from its header, not by comparing with our own constant. */
export function expectGif(response: HttpResponse, status = 200): void {
  expect(response.status, `${response.url}: ${response.reason ?? ''}`).toBe(status);
  expect(response.headers.get('content-type')).toBe('image/gif');
  expect(response.location).toBeNull();
  const gif = response.body;
  expect(gif.subarray(0, 6).toString('latin1')).toMatch(/^GIF8[79]a$/);
  expect(gif.readUInt16LE(6)).toBe(1);
  expect(gif.readUInt16LE(8)).toBe(1);
  expect(gif.at(-1)).toBe(0x3b);
  expectPrivateHeaders(response);
}

export function expectPrivateHeaders(response: HttpResponse): void {
  expect(response.headers.get('cache-control')).toMatch(/(^|,\s*)no-store(,|$)/);
  expect(response.headers.get('referrer-policy')).toBe('no-referrer');
}

/** A refusal: the status and reason, the neutral pixel, no redirect. */
export function expectRefusal(response: HttpResponse, status: number, reason: string): void {
  expect({ status: response.status, reason: response.reason }, response.url).toEqual({ status, reason });
  expectGif(response, status);
}

export interface DebugTrace {
  readonly status: number;
  readonly outcome: string;
  readonly reason?: string;
  readonly platformId?: number;
  readonly location?: string;
  readonly trace: { step: string; detail: string; platformId?: number }[];
}

export function debugTrace(response: HttpResponse): DebugTrace {
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toBe('application/json');
  return JSON.parse(response.body.toString('utf8')) as DebugTrace;
}

// ---------------------------------------------------------------------------------------------
// URLs.

/** The callback URL inside a partner sync URL's `out` parameter, decoded once. */
export function outOf(partnerSyncUrl: string): URL {
  const out = new URL(partnerSyncUrl).searchParams.get('out');
  expect(out, `no out parameter in ${partnerSyncUrl}`).toMatch(/^https?:\/\//);
  return new URL(out!);
}

/** The raw (still encoded) value of `name` in a query string. */
export function rawParam(url: string, name: string): string | undefined {
  const query = url.slice(url.indexOf('?') + 1);
  for (const pair of query.split('&')) {
    const index = pair.indexOf('=');
    if ((index === -1 ? pair : pair.slice(0, index)) === name)
      return index === -1 ? '' : pair.slice(index + 1);
  }
  return undefined;
}

export interface SignedCallback {
  readonly pl: number | string;
  readonly userid: string;
  readonly plsec: string;
  readonly ts?: number;
  readonly kid?: string;
  readonly secret?: string;
  readonly algorithm?: SignatureAlgorithm;
  readonly extra?: Record<string, string>;
}

export const nowSeconds = () => Math.floor(Date.now() / 1000);

/** A partner's signed callback query (docs/user-sync.md, "Signed callbacks"). */
export function signedQuery(callback: SignedCallback): string {
  const ts = String(callback.ts ?? nowSeconds());
  const kid = callback.kid ?? SIGNING_KID;
  const fields = { pl: String(callback.pl), userid: callback.userid, plsec: callback.plsec, ts, kid };
  const sig = signSyncCallback(fields, callback.secret ?? SIGNING_SECRET, callback.algorithm ?? 'sha1');
  const params = new URLSearchParams({
    userid: callback.userid,
    pl: fields.pl,
    plsec: callback.plsec,
    ...callback.extra,
    ts,
    kid,
    sig,
  });
  return params.toString();
}

// ---------------------------------------------------------------------------------------------
// The mapping table.

export interface MappingItem {
  readonly pk: string;
  readonly sk: string;
  readonly platformId: number;
  readonly partnerUserId: string;
  readonly firstSeen: string;
  readonly lastSeen: string;
  readonly lastChanged: string;
  readonly previousPartnerUserId?: string;
  readonly expiresAt: number;
  readonly version: number;
  /** Set by a refresh, removed by a change (REFRESHED_ATTRIBUTE): keeps the write from the release stream. */
  readonly refreshed?: boolean;
}

export class MappingTable {
  private readonly client: DynamoDBClient;

  constructor(
    endpoint: string,
    readonly tableName: string,
  ) {
    this.client = new DynamoDBClient({ endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
  }

  /** Every mapping item of one DMP user (strongly consistent). */
  async list(dmpUserId: string): Promise<MappingItem[]> {
    const items: MappingItem[] = [];
    let startKey: Record<string, AttributeValue> | undefined;
    do {
      const page = await this.client.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: 'pk = :pk',
          ExpressionAttributeValues: { ':pk': { S: `user#${dmpUserId}` } },
          ConsistentRead: true,
          ExclusiveStartKey: startKey,
        }),
      );
      items.push(...(page.Items ?? []).map((item) => unmarshall(item) as MappingItem));
      startKey = page.LastEvaluatedKey;
    } while (startKey);
    return items;
  }

  async get(dmpUserId: string, platformId: number): Promise<MappingItem | undefined> {
    return (await this.list(dmpUserId)).find((item) => item.sk === `platform#${platformId}`);
  }

  /** Every item in the table whose partner id is `partnerUserId` (any user). */
  async findByPartnerId(partnerUserId: string): Promise<MappingItem[]> {
    return (await this.scan()).filter(
      (item) => item.partnerUserId === partnerUserId || item.previousPartnerUserId === partnerUserId,
    );
  }

  async scan(): Promise<MappingItem[]> {
    const items: MappingItem[] = [];
    let startKey: Record<string, AttributeValue> | undefined;
    do {
      const page = await this.client.send(
        new ScanCommand({ TableName: this.tableName, ConsistentRead: true, ExclusiveStartKey: startKey }),
      );
      items.push(...(page.Items ?? []).map((item) => unmarshall(item) as MappingItem));
      startKey = page.LastEvaluatedKey;
    } while (startKey);
    return items;
  }

  /** Seeds a mapping as an earlier sync would have left it. */
  async put(
    dmpUserId: string,
    platformId: number,
    attributes: Omit<MappingItem, 'pk' | 'sk' | 'platformId'>,
  ) {
    await this.client.send(
      new PutItemCommand({
        TableName: this.tableName,
        Item: marshall(
          { pk: `user#${dmpUserId}`, sk: `platform#${platformId}`, platformId, ...attributes },
          { removeUndefinedValues: true },
        ),
      }),
    );
  }

  destroy(): void {
    this.client.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// Handler output (Powertools writes to process.stdout / process.stderr directly).

export interface CapturedOutput {
  readonly lines: string[];
  restore(): void;
}

/** Captures (and swallows) what this process writes to stdout and stderr, line by line. */
export function captureOutput(): CapturedOutput {
  const lines: string[] = [];
  const originals = { stdout: process.stdout.write, stderr: process.stderr.write };
  for (const name of ['stdout', 'stderr'] as const) {
    const stream = process[name];
    let pending = '';
    stream.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      pending += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      const parts = pending.split('\n');
      pending = parts.pop() ?? '';
      lines.push(...parts.filter((line) => line.length > 0));
      const callback = rest.find((arg) => typeof arg === 'function') as (() => void) | undefined;
      callback?.();
      return true;
    }) as typeof stream.write;
  }
  return {
    lines,
    restore() {
      process.stdout.write = originals.stdout;
      process.stderr.write = originals.stderr;
    },
  };
}

export interface EmfRecord {
  readonly _aws: {
    readonly CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string }[] }[];
  };
  readonly [key: string]: unknown;
}

export function emfRecords(lines: readonly string[]): EmfRecord[] {
  return lines.flatMap((line) => {
    try {
      const parsed = JSON.parse(line) as Record<string, unknown>;
      return parsed && typeof parsed === 'object' && '_aws' in parsed ? [parsed as EmfRecord] : [];
    } catch {
      return [];
    }
  });
}

/** One metric a CloudWatch Logs metric filter would publish from a log line. */
export interface FilteredMetric {
  readonly name: string;
  readonly dimensions: Readonly<Record<string, string>>;
}

/**
 * What the user-sync function's metric filters (SYNC_METRIC_FILTERS, the same data the CDK stack
 * turns into AWS::Logs::MetricFilter) publish from these lines: a filter matches a JSON line whose
 * fields equal its values (`*`: any string value), and reads each dimension from its field.
 */
export function filteredMetrics(lines: readonly string[]): FilteredMetric[] {
  return lines.flatMap((line) => {
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return [];
    }
    const field = (path: string) => parsed[path.replace(/^\$\./, '')];
    return SYNC_METRIC_FILTERS.filter((filter) =>
      Object.entries(filter.match).every(([path, value]) =>
        value === '*' ? typeof field(path) === 'string' : field(path) === value,
      ),
    ).map((filter) => ({
      name: filter.metricName,
      dimensions: Object.fromEntries(
        Object.entries(filter.dimensions).map(([dimension, path]) => [dimension, String(field(path))]),
      ),
    }));
  });
}

// ---------------------------------------------------------------------------------------------
// One local stack per test file.

export interface Harness {
  readonly stack: LocalStack;
  readonly api: string;
  readonly partnerOrigin: string;
  readonly table: MappingTable;
  /** Everything the handler (and anything else in this process) printed since the stack started. */
  readonly output: CapturedOutput;
  /** Every dmp_uid and partner_uid value any browser of this file was given (log leak checks). */
  readonly seenIds: Set<string>;
  browser(name?: string): Browser;
  /** `${api}${path}` */
  url(path: string): string;
}

/** Starts one stack for the calling test file (beforeAll) and stops it afterwards (afterAll). */
export function useStack(): Harness {
  let stack: LocalStack | undefined;
  let table: MappingTable | undefined;
  let output: CapturedOutput | undefined;
  const seenIds = new Set<string>();
  let browsers = 0;

  beforeAll(async () => {
    output = captureOutput();
    // These suites are about the two sync partners (99999 static token, 88888 signed callbacks)
    // and where their chains end; the file-mode 99998 syncs like 99999 (test/integration/files-s3).
    stack = await startLocalStack({
      quiet: true,
      ttlSweepIntervalMs: 0,
      platformIds: [STATIC_PLATFORM, SIGNED_PLATFORM],
    });
    table = new MappingTable(
      stack.dynamodbEndpoint,
      stack.tableNames['MappingTable'] ?? MAPPING_TABLE.localName,
    );
  });

  afterAll(async () => {
    table?.destroy();
    await stack?.stop();
    output?.restore();
  });

  const need = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`${what} is not ready (beforeAll has not run)`);
    return value;
  };

  return {
    get stack() {
      return need(stack, 'stack');
    },
    get api() {
      return need(stack, 'stack').apiUrl;
    },
    get partnerOrigin() {
      return need(stack, 'stack').partnerUrl;
    },
    get table() {
      return need(table, 'table');
    },
    get output() {
      return need(output, 'output');
    },
    seenIds,
    browser(name?: string) {
      browsers += 1;
      return new Browser(name ?? `browser-${browsers}`, (cookie, value) => {
        if ((cookie === 'dmp_uid' || cookie === 'partner_uid') && value.length >= 8) seenIds.add(value);
      });
    },
    url(path: string) {
      return `${need(stack, 'stack').apiUrl}${path}`;
    },
  };
}

/**
 * A browser that already is a DMP user, its `dmp_uid` minted by our own pixel: `/sync` with
 * `gdpr=1` and no consent string mints the cookie but sends the browser nowhere and stores nothing.
 */
export async function knownBrowser(
  harness: Harness,
  name?: string,
): Promise<{ browser: Browser; dmpUid: string }> {
  const browser = harness.browser(name);
  const response = await browser.get(harness.url('/sync?pl=99999&gdpr=1'));
  expectGif(response, 200);
  const dmpUid = browser.cookie('dmp_uid');
  expect(dmpUid).toMatch(/^[A-Za-z0-9_-]{22}$/);
  return { browser, dmpUid: dmpUid! };
}

/**
 * A DMP user whose browser has run the whole chain for one platform (`/sync?pl=<id>`), so that
 * platform is fresh and attempted and a later callback for another can end with the pixel.
 */
export async function browserSyncedWith(
  harness: Harness,
  platformId: number,
  name?: string,
): Promise<{ browser: Browser; dmpUid: string; partnerUid: string }> {
  const browser = harness.browser(name);
  const hops = await browser.follow(harness.url(`/sync?pl=${platformId}`));
  expectGif(hops.at(-1)!, 200);
  const dmpUid = browser.cookie('dmp_uid')!;
  const partnerUid = browser.cookie('partner_uid')!;
  expect(await harness.table.list(dmpUid)).toEqual([
    expect.objectContaining({ platformId, partnerUserId: partnerUid }),
  ]);
  return { browser, dmpUid, partnerUid };
}

export interface PartnerSignature {
  readonly ts?: number;
  readonly kid?: string;
  readonly secret?: string;
  readonly algorithm?: SignatureAlgorithm;
  /** Replaces the computed signature. */
  readonly sig?: string;
  /** Signs this user id instead of the one sent (a tampered callback). */
  readonly signedUserId?: string;
}

/**
 * What a partner does with our `out` URL: replaces the macro with its id, percent-encoded, and
 * (signed platforms) appends `ts`, `kid` and `sig` over the decoded values.
 */
export function partnerCallback(out: URL | string, userid: string, signature?: PartnerSignature): string {
  const href = typeof out === 'string' ? out : out.href;
  const filled = href.split('[[USERID]]').join(encodeURIComponent(userid));
  if (!signature) return filled;
  const callback = new URL(filled);
  const ts = String(signature.ts ?? nowSeconds());
  const kid = signature.kid ?? SIGNING_KID;
  const sig =
    signature.sig ??
    signSyncCallback(
      {
        pl: callback.searchParams.get('pl') ?? '',
        userid: signature.signedUserId ?? userid,
        plsec: callback.searchParams.get('plsec') ?? '',
        ts,
        kid,
      },
      signature.secret ?? SIGNING_SECRET,
      signature.algorithm ?? 'sha1',
    );
  return `${filled}&ts=${ts}&kid=${encodeURIComponent(kid)}&sig=${encodeURIComponent(sig)}`;
}

/** The `out` URL `/sync?pl=<id>` gives this browser (its minted token inside), without following. */
export async function mintedCallback(harness: Harness, browser: Browser, platformId: number): Promise<URL> {
  const response = await browser.get(harness.url(`/sync?pl=${platformId}`));
  expect(response.status, response.reason ?? '').toBe(302);
  expect(new URL(response.location!).origin).toBe(harness.partnerOrigin);
  return outOf(response.location!);
}

import { describe, expect, it } from 'vitest';
import { runDmp } from '../support/cli.ts';
import {
  browserSyncedWith,
  debugTrace,
  expectGif,
  expectPrivateHeaders,
  expectRefusal,
  type HttpResponse,
  knownBrowser,
  nowSeconds,
  outOf,
  rawParam,
  SIGNED_PLATFORM,
  STATIC_PLATFORM,
  STATIC_TOKEN,
  useStack,
} from './support.ts';

/**
 * The seed's user sync, end to end over real HTTP: the pixel, the reference partner, the callback,
 * the mapping table and the operator CLI. See docs/user-sync.md.
 */

const harness = useStack();
const DAY = 86_400;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const COOKIE_MAX_AGE = 395 * DAY;

function isoSeconds(iso: string): number {
  return Date.parse(iso) / 1000;
}

/** The one hop of a chain that went to the partner for `platformId`, and the callback after it. */
function partnerHops(hops: readonly HttpResponse[], partnerOrigin: string) {
  return hops.filter((hop) => new URL(hop.url).origin === partnerOrigin);
}

/** A DMP user whose browser already synced 88888 (so that only 99999 can be due). */
const browserSyncedWithSignedPartner = () => browserSyncedWith(harness, SIGNED_PLATFORM);

describe('the seed callback /uid?userid=abcdef123&pl=99999&plsec=verysecure', () => {
  it('stores the partner id for the browser named by dmp_uid and answers the no-store 1x1 GIF', async () => {
    const { browser, dmpUid } = await browserSyncedWithSignedPartner();
    const before = nowSeconds();
    const response = await browser.get(harness.url('/uid?userid=abcdef123&pl=99999&plsec=verysecure'));
    const after = nowSeconds();

    expectGif(response, 200);
    expect(response.headers.get('cache-control')).toContain('no-store');
    expect(response.headers.get('referrer-policy')).toBe('no-referrer');
    expect(response.reason).toBeNull();
    // The browser stays the same DMP user.
    expect(browser.cookie('dmp_uid')).toBe(dmpUid);

    const item = await harness.table.get(dmpUid, STATIC_PLATFORM);
    expect(item).toBeDefined();
    expect(item).toMatchObject({
      pk: `user#${dmpUid}`,
      sk: 'platform#99999',
      platformId: 99999,
      partnerUserId: 'abcdef123',
      version: 1,
    });
    expect(item!.previousPartnerUserId).toBeUndefined();
    for (const field of ['firstSeen', 'lastSeen', 'lastChanged'] as const) {
      expect(item![field]).toMatch(ISO);
      expect(isoSeconds(item![field])).toBeGreaterThanOrEqual(before);
      expect(isoSeconds(item![field])).toBeLessThanOrEqual(after);
    }
    expect(item!.firstSeen).toBe(item!.lastSeen);
    expect(item!.lastChanged).toBe(item!.lastSeen);
    // TTL: 90 days (mappingTtlDays) after the sighting, epoch seconds.
    expect(Number.isInteger(item!.expiresAt)).toBe(true);
    expect(item!.expiresAt).toBeGreaterThanOrEqual(before + 90 * DAY);
    expect(item!.expiresAt).toBeLessThanOrEqual(after + 90 * DAY);
    expect(item!.expiresAt).toBe(isoSeconds(item!.lastSeen) + 90 * DAY);
  });

  it('is what `dmp mappings <id> --json` shows', async () => {
    const { browser, dmpUid } = await browserSyncedWithSignedPartner();
    expectGif(await browser.get(harness.url('/uid?userid=abcdef123&pl=99999&plsec=verysecure')));
    const stored = await harness.table.get(dmpUid, STATIC_PLATFORM);
    expect(stored).toBeDefined();

    // `--` before the id: a dmp_uid is base64url and may start with '-'.
    const result = await runDmp([
      'mappings',
      '--json',
      '--endpoint',
      harness.stack.dynamodbEndpoint,
      '--table',
      harness.table.tableName,
      '--',
      dmpUid,
    ]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const output = JSON.parse(result.stdout) as { dmpUserId: string; mappings: Record<string, unknown>[] };
    expect(output.dmpUserId).toBe(dmpUid);
    expect(output.mappings.map((mapping) => mapping['platformId'])).toEqual([88888, 99999]);
    expect(output.mappings[1]).toEqual({
      platformId: 99999,
      partnerUserId: 'abcdef123',
      firstSeen: stored!.firstSeen,
      lastSeen: stored!.lastSeen,
      lastChanged: stored!.lastChanged,
      previousPartnerUserId: null,
      expiresAt: new Date(stored!.expiresAt * 1000).toISOString(),
      expired: false,
    });
  });

  it('continues the chain to the next due partner (88888) after storing, as the contract says', async () => {
    const { browser, dmpUid } = await knownBrowser(harness);
    const response = await browser.get(harness.url('/uid?userid=abcdef123&pl=99999&plsec=verysecure'));
    expect(response.status).toBe(302);
    expectPrivateHeaders(response);
    expect(new URL(response.location!).origin).toBe(harness.partnerOrigin);
    const out = outOf(response.location!);
    expect(out.searchParams.get('pl')).toBe('88888');
    expect(out.searchParams.get('userid')).toBe('[[USERID]]');
    expect(out.searchParams.get('plsec')).toMatch(/^m1\./);
    expect(await harness.table.list(dmpUid)).toEqual([
      expect.objectContaining({ platformId: STATIC_PLATFORM, partnerUserId: 'abcdef123', version: 1 }),
    ]);

    // Had that redirect been lost (no dmp_sa), /sync explains: 99999 is fresh, 88888 is due.
    browser.deleteCookie('dmp_sa');
    const debug = debugTrace(await browser.get(harness.url('/sync?debug=1')));
    expect(debug).toMatchObject({ status: 302, outcome: 'redirected', platformId: SIGNED_PLATFORM });
    expect(new URL(debug.location!).origin).toBe(harness.partnerOrigin);
    expect(debug.trace).toContainEqual(
      expect.objectContaining({
        step: 'schedule',
        platformId: STATIC_PLATFORM,
        detail: expect.stringMatching(/^not due: fresh_mapping until /),
      }),
    );
    const text = JSON.stringify(debug);
    expect(text).not.toContain('abcdef123');
    expect(text).not.toContain(dmpUid);
  });

  it('the pixel mints dmp_uid (Secure; HttpOnly; SameSite=None; Max-Age) and the callback stores under it', async () => {
    const browser = harness.browser();
    const started = await browser.get(harness.url('/sync?pl=99999'));
    expect(started.status).toBe(302);
    const minted = started.setCookies.find((line) => line.startsWith('dmp_uid='));
    expect(minted).toBeDefined();
    const attributes = minted!.split(';').map((part) => part.trim());
    const value = attributes[0]!.slice('dmp_uid='.length);
    expect(value).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(Buffer.from(value, 'base64url')).toHaveLength(16);
    expect(attributes).toEqual(expect.arrayContaining(['Secure', 'HttpOnly', 'SameSite=None', 'Path=/']));
    const maxAge = attributes.find((part) => part.startsWith('Max-Age='));
    expect(Number(maxAge?.slice('Max-Age='.length))).toBe(COOKIE_MAX_AGE);

    // The seed's literal callback from that browser stores the id under its DMP user.
    const stored = await browser.get(harness.url('/uid?userid=abcdef123&pl=99999&plsec=verysecure'));
    expect([200, 302]).toContain(stored.status);
    expect(await harness.table.list(value)).toEqual([
      expect.objectContaining({ platformId: 99999, partnerUserId: 'abcdef123', version: 1 }),
    ]);
  });

  it('without a dmp_uid cookie: 403 dmp_user_missing, no DMP user minted, nothing stored', async () => {
    // A browser that blocks third-party cookies would otherwise leave an orphan user per callback.
    const browser = harness.browser();
    const partnerId = `cookieless-${Date.now()}`;
    const response = await browser.get(harness.url(`/uid?userid=${partnerId}&pl=99999&plsec=verysecure`));
    expectRefusal(response, 403, 'dmp_user_missing');
    expect(response.setCookies.filter((line) => line.startsWith('dmp_uid='))).toEqual([]);
    expect(await harness.table.findByPartnerId(partnerId)).toEqual([]);
  });

  it('refuses base64 ids with + / = under the strict default alphabet (a platform can add them)', async () => {
    const { browser, dmpUid } = await browserSyncedWithSignedPartner();
    const id = 'aGVsbG8+d29ybGQ/Zm9v+YmFy=';
    const response = await browser.get(
      harness.url(`/uid?userid=${encodeURIComponent(id)}&pl=99999&plsec=${STATIC_TOKEN}`),
    );
    expectRefusal(response, 400, 'userid_charset');
    expect(await harness.table.get(dmpUid, STATIC_PLATFORM)).toBeUndefined();
  });
});

describe('the whole chain, like curl -L -c jar -b jar', () => {
  it('/sync?pl=99999 redirects to the partner, which fills [[USERID]] and comes back to /uid', async () => {
    const browser = harness.browser();
    const hops = await browser.follow(harness.url('/sync?pl=99999'));

    // 1. Our pixel: a new DMP user, 302 to the partner's origin.
    const pixel = hops[0]!;
    expect(pixel.status).toBe(302);
    expectPrivateHeaders(pixel);
    const dmpUid = browser.cookie('dmp_uid');
    expect(dmpUid).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(pixel.setCookies.some((line) => line.startsWith(`dmp_uid=${dmpUid};`))).toBe(true);
    expect(pixel.setCookies.some((line) => line.startsWith('dmp_sa='))).toBe(true);
    const partnerUrl = new URL(pixel.location!);
    expect(partnerUrl.origin).toBe(harness.partnerOrigin);
    expect(partnerUrl.pathname).toBe('/sync');

    // `out` is percent-encoded once as a query value; decoded, it is our /uid with the macro left.
    const rawOut = rawParam(pixel.location!, 'out')!;
    expect(rawOut).toMatch(/^http%3A%2F%2F127\.0\.0\.1%3A\d+%2Fuid%3F/);
    expect(rawOut).not.toContain('?');
    const out = outOf(pixel.location!);
    expect(out.origin).toBe(harness.api);
    expect(out.pathname).toBe('/uid');
    expect(out.searchParams.get('userid')).toBe('[[USERID]]');
    expect(out.searchParams.get('pl')).toBe('99999');
    expect(out.searchParams.get('plsec')).toMatch(/^m1\./);
    expect(out.searchParams.get('plsec')).not.toContain(dmpUid);
    expect(out.searchParams.get('plsec')).not.toBe(STATIC_TOKEN);

    // 2. The partner: replaces the macro with its id and sends the browser to out.
    const partner = hops[1]!;
    expect(partner.url).toBe(pixel.location);
    expect(partner.status).toBe(302);
    const partnerUid = browser.cookie('partner_uid');
    expect(partnerUid).toMatch(/^[0-9a-f]{16}$/);
    const callback = new URL(partner.location!);
    expect(callback.origin).toBe(harness.api);
    expect(callback.searchParams.get('userid')).toBe(partnerUid);
    expect(callback.searchParams.get('plsec')).toBe(out.searchParams.get('plsec'));

    // 3. Our callback: stored, and the chain ends with the pixel (only pl=99999 was asked for).
    expect(hops).toHaveLength(3);
    expectGif(hops[2]!, 200);
    expect(await harness.table.list(dmpUid!)).toEqual([
      expect.objectContaining({ platformId: 99999, partnerUserId: partnerUid, version: 1 }),
    ]);
    // The partner saw exactly this one sync request of this browser.
    const seen = harness.stack.partner.requests.filter((request) => request.partnerUserId === partnerUid);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.location).toBe(partner.location);
  });

  it('/sync without pl visits every due partner and stores both, 88888 signed by the partner', async () => {
    const browser = harness.browser();
    const hops = await browser.follow(harness.url('/sync'));
    const dmpUid = browser.cookie('dmp_uid')!;
    const partnerUid = browser.cookie('partner_uid')!;
    expect(partnerUid).toMatch(/^[0-9a-f]{16}$/);

    // pixel -> partner(99999) -> /uid -> partner(88888, signing) -> /uid -> GIF
    expect(hops.map((hop) => hop.status)).toEqual([302, 302, 302, 302, 200]);
    expectGif(hops.at(-1)!, 200);
    const toPartner = partnerHops(hops, harness.partnerOrigin);
    expect(toPartner).toHaveLength(2);
    const platformsVisited = toPartner.map((hop) => Number(outOf(hop.url).searchParams.get('pl')));
    expect(platformsVisited).toEqual([STATIC_PLATFORM, SIGNED_PLATFORM]);
    for (const hop of hops.filter((h) => h.location !== null)) {
      expect([harness.partnerOrigin, harness.api]).toContain(new URL(hop.location!).origin);
    }

    // The second callback carries the partner's signature over the callback's values.
    const signedCallback = new URL(toPartner[1]!.location!);
    expect(signedCallback.searchParams.get('pl')).toBe('88888');
    expect(signedCallback.searchParams.get('kid')).toBe('k1');
    expect(signedCallback.searchParams.get('sig')).toMatch(/^[0-9a-f]{40}$/);
    expect(signedCallback.searchParams.get('plsec')).toMatch(/^m1\./);
    // Each callback continues the chain: hop counts up.
    expect(outOf(toPartner[0]!.url).searchParams.get('hop')).toBe('1');
    expect(outOf(toPartner[1]!.url).searchParams.get('hop')).toBe('2');

    const items = await harness.table.list(dmpUid);
    expect(items.map((item) => [item.platformId, item.partnerUserId, item.version]).sort()).toEqual([
      [SIGNED_PLATFORM, partnerUid, 1],
      [STATIC_PLATFORM, partnerUid, 1],
    ]);

    // The dmp_sa cookie remembers both attempts.
    const attempts = browser.cookie('dmp_sa')!;
    expect(attempts.split('.').map((entry) => entry.split(':')[0])).toEqual(['99999', '88888']);
    expect(attempts.length).toBeLessThan(600);
  });

  it('a second /sync right after redirects nowhere: 200 GIF, nothing due', async () => {
    const browser = harness.browser();
    await browser.follow(harness.url('/sync'));
    const dmpUid = browser.cookie('dmp_uid')!;
    const requestsBefore = harness.stack.partner.requests.length;
    const itemsBefore = await harness.table.list(dmpUid);

    const again = await browser.get(harness.url('/sync'));
    expectGif(again, 200);
    expect(again.reason).toBeNull();
    expect(harness.stack.partner.requests.length).toBe(requestsBefore);
    expect(await harness.table.list(dmpUid)).toEqual(itemsBefore);
    // Same DMP user, renewed cookie.
    expect(browser.cookie('dmp_uid')).toBe(dmpUid);
    expect(again.setCookies.some((line) => line.startsWith(`dmp_uid=${dmpUid};`))).toBe(true);

    // debug=1 explains why: each platform was attempted moments ago.
    const debug = debugTrace(await browser.get(harness.url('/sync?debug=1')));
    expect(debug).toMatchObject({ status: 200, outcome: 'nothing_due' });
    expect(debug.location).toBeUndefined();
    for (const platformId of [STATIC_PLATFORM, SIGNED_PLATFORM]) {
      expect(debug.trace).toContainEqual(
        expect.objectContaining({
          step: 'schedule',
          platformId,
          detail: expect.stringContaining('recently_attempted'),
        }),
      );
    }
    const text = JSON.stringify(debug);
    expect(text).not.toContain(dmpUid);
    expect(text).not.toContain(browser.cookie('partner_uid')!);
  });

  it('without the attempts cookie, a fresh mapping alone keeps the partner from being due', async () => {
    const browser = harness.browser();
    await browser.follow(harness.url('/sync'));
    const dmpUid = browser.cookie('dmp_uid')!;
    browser.deleteCookie('dmp_sa');

    const plain = await browser.get(harness.url('/sync'));
    expectGif(plain, 200);

    browser.deleteCookie('dmp_sa');
    const debug = debugTrace(await browser.get(harness.url('/sync?debug=1')));
    expect(debug.outcome).toBe('nothing_due');
    for (const platformId of [STATIC_PLATFORM, SIGNED_PLATFORM]) {
      const entry = debug.trace.find((e) => e.step === 'schedule' && e.platformId === platformId);
      expect(entry?.detail).toMatch(/^not due: fresh_mapping until \d{4}-\d{2}-\d{2}T/);
      // Due again after resyncAfterDays (7) +/- 10 % jitter.
      const until = Date.parse(entry!.detail.split(' until ')[1]!) / 1000;
      expect(until).toBeGreaterThan(nowSeconds() + 6 * DAY);
      expect(until).toBeLessThan(nowSeconds() + 8 * DAY);
    }
    expect(JSON.stringify(debug)).not.toContain(dmpUid);
  });

  it('explains a refused callback with debug=1 without echoing ids or tokens', async () => {
    const { browser, dmpUid } = await knownBrowser(harness);
    const debug = debugTrace(
      await browser.get(harness.url('/uid?userid=secretpartnerid42&pl=99999&plsec=not-the-token&debug=1')),
    );
    expect(debug).toMatchObject({ status: 403, outcome: 'rejected', reason: 'token_mismatch' });
    expect(debug.trace).toContainEqual(
      expect.objectContaining({ step: 'refused', detail: 'token_mismatch' }),
    );
    const text = JSON.stringify(debug);
    for (const secret of [dmpUid, 'secretpartnerid42', 'not-the-token', STATIC_TOKEN]) {
      expect(text).not.toContain(secret);
    }
    expect(await harness.table.list(dmpUid)).toEqual([]);
  });
});

describe('chains for one platform and across visits', () => {
  it('/sync?pl=88888 visits the signed partner only and ends with the pixel', async () => {
    const browser = harness.browser();
    const hops = await browser.follow(harness.url('/sync?pl=88888'));
    expect(hops.map((hop) => hop.status)).toEqual([302, 302, 200]);
    expectGif(hops[2]!, 200);
    expect(partnerHops(hops, harness.partnerOrigin)).toHaveLength(1);
    expect(outOf(hops[0]!.location!).searchParams.get('pl')).toBe('88888');
    const dmpUid = browser.cookie('dmp_uid')!;
    expect((await harness.table.list(dmpUid)).map((item) => item.platformId)).toEqual([SIGNED_PLATFORM]);

    // The other platform is still due: a plain /sync now goes there, and only there.
    const rest = await browser.follow(harness.url('/sync'));
    expect(rest.map((hop) => hop.status)).toEqual([302, 302, 200]);
    expect(outOf(rest[0]!.location!).searchParams.get('pl')).toBe('99999');
    expect((await harness.table.list(dmpUid)).map((item) => item.platformId).sort()).toEqual([
      SIGNED_PLATFORM,
      STATIC_PLATFORM,
    ]);
  });

  it('a known browser keeps its dmp_uid through the chain', async () => {
    const { browser, dmpUid } = await knownBrowser(harness);
    const hops = await browser.follow(harness.url('/sync?pl=99999'));
    expectGif(hops.at(-1)!, 200);
    expect(browser.cookie('dmp_uid')).toBe(dmpUid);
    for (const hop of hops.filter((h) => new URL(h.url).origin === harness.api)) {
      const uid = hop.setCookies.find((line) => line.startsWith('dmp_uid='));
      if (uid) expect(uid).toMatch(new RegExp(`^dmp_uid=${dmpUid};`));
    }
    expect(await harness.table.get(dmpUid, STATIC_PLATFORM)).toMatchObject({
      partnerUserId: browser.cookie('partner_uid'),
    });
  });

  it('every answer of ours in a chain is no-store and no-referrer', async () => {
    const browser = harness.browser();
    const hops = await browser.follow(harness.url('/sync'));
    const ours = hops.filter((h) => new URL(h.url).origin === harness.api);
    expect(ours).toHaveLength(3);
    for (const hop of ours) expectPrivateHeaders(hop);
  });
});

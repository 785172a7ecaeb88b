import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { close, listen, originOf } from '../../local/http-util.ts';
import {
  PARTNER_COOKIE,
  type ReferencePartner,
  startReferencePartner,
} from '../../local/reference-partner.ts';
import { signSyncCallback, verifySyncSignature } from '../../src/sync/signature.ts';
import { type ChromiumSession, chooseChromium, launchChromium } from '../support/browser.ts';

const SIGNING_SECRET = 'reference-partner-shared-secret-1';
const ROTATED_SECRET = 'reference-partner-shared-secret-2';

async function sync(partner: ReferencePartner, query: string, cookie?: string): Promise<Response> {
  return fetch(`${partner.url}/sync?${query}`, {
    redirect: 'manual',
    ...(cookie ? { headers: { cookie } } : {}),
  });
}

function partnerCookie(response: Response): string {
  const cookie = response.headers.getSetCookie().find((value) => value.startsWith(`${PARTNER_COOKIE}=`));
  expect(cookie).toBeDefined();
  return cookie!.split(';', 1)[0]!;
}

describe('reference partner', () => {
  let partner: ReferencePartner;

  beforeAll(async () => {
    partner = await startReferencePartner({
      platforms: [
        { id: 99999, userIdMacro: '[[USERID]]', signingKeys: {}, algorithm: 'sha1' },
        {
          id: 88888,
          userIdMacro: '[[USERID]]',
          signingKeys: { k1: SIGNING_SECRET, k2: ROTATED_SECRET },
          algorithm: 'sha1',
        },
        {
          id: 77777,
          userIdMacro: '%%PARTNER_UID%%',
          signingKeys: { s: SIGNING_SECRET },
          algorithm: 'sha256',
        },
      ],
    });
  });

  afterAll(async () => {
    await partner?.stop();
  });

  it('replaces the macro with a minted partner id, sets its cookie and redirects to out', async () => {
    const out = 'http://127.0.0.1:3000/uid?userid=[[USERID]]&pl=99999&plsec=verysecure';
    const first = await sync(partner, `out=${encodeURIComponent(out)}`);
    expect(first.status).toBe(302);
    expect(first.headers.get('cache-control')).toBe('no-store');
    const cookie = partnerCookie(first);
    const userId = cookie.slice(`${PARTNER_COOKIE}=`.length);
    expect(userId).toMatch(/^[0-9a-f]{16}$/);
    expect(first.headers.get('location')).toBe(
      `http://127.0.0.1:3000/uid?userid=${userId}&pl=99999&plsec=verysecure`,
    );
    expect(first.headers.getSetCookie()[0]).toMatch(/; Path=\/; Max-Age=\d+; HttpOnly; SameSite=Lax$/);

    const again = await sync(partner, `out=${encodeURIComponent(out)}`, cookie);
    expect(again.headers.get('location')).toBe(first.headers.get('location'));
  });

  it('percent-encodes its id into out, and also finds a percent-encoded or platform-specific macro', async () => {
    const cookie = `${PARTNER_COOKIE}=a-b_c`;
    const encoded = 'https://dmp.example/uid?userid=%5B%5BUSERID%5D%5D&pl=99999&plsec=x';
    const viaEncoded = await sync(partner, `out=${encodeURIComponent(encoded)}`, cookie);
    expect(viaEncoded.headers.get('location')).toBe('https://dmp.example/uid?userid=a-b_c&pl=99999&plsec=x');

    const custom = 'https://dmp.example/uid?userid=%%PARTNER_UID%%&pl=77777&plsec=x';
    const viaCustom = await sync(partner, `out=${encodeURIComponent(custom)}`, cookie);
    expect(viaCustom.headers.get('location')).toBe('https://dmp.example/uid?userid=a-b_c&pl=77777&plsec=x');

    // A cookie value the partner would never have issued is replaced by a fresh id.
    const odd = await sync(partner, `out=${encodeURIComponent(encoded)}`, `${PARTNER_COOKIE}=<script>`);
    expect(new URL(odd.headers.get('location')!).searchParams.get('userid')).toMatch(/^[0-9a-f]{16}$/);
  });

  it('signs the callback with ts, kid and sig when asked (sign=<platformId>)', async () => {
    const out = 'http://127.0.0.1:3000/uid?userid=[[USERID]]&pl=88888&plsec=m1.local1.abc.def.ghi&hop=1';
    const before = Math.floor(Date.now() / 1000);
    const response = await sync(
      partner,
      `out=${encodeURIComponent(out)}&sign=88888`,
      `${PARTNER_COOKIE}=abcdef123`,
    );
    expect(response.status).toBe(302);
    const location = new URL(response.headers.get('location')!);
    expect(location.origin + location.pathname).toBe('http://127.0.0.1:3000/uid');
    const params = location.searchParams;
    expect(params.get('userid')).toBe('abcdef123');
    expect(params.get('kid')).toBe('k1');
    const ts = Number(params.get('ts'));
    expect(ts).toBeGreaterThanOrEqual(before);
    expect(ts).toBeLessThanOrEqual(Math.floor(Date.now() / 1000));
    const fields = {
      pl: '88888',
      userid: 'abcdef123',
      plsec: 'm1.local1.abc.def.ghi',
      ts: params.get('ts')!,
      kid: 'k1',
    };
    expect(params.get('sig')).toBe(signSyncCallback(fields, SIGNING_SECRET, 'sha1'));
    expect(
      verifySyncSignature(
        { ...fields, sig: params.get('sig')! },
        { keys: { k1: SIGNING_SECRET }, algorithm: 'sha1', maxSkewSeconds: 300, nowSeconds: ts },
      ),
    ).toMatchObject({ valid: true, timestamp: ts });
    // The original parameters are left exactly as they were.
    expect(response.headers.get('location')!).toMatch(
      /^http:\/\/127\.0\.0\.1:3000\/uid\?userid=abcdef123&pl=88888&plsec=m1\.local1\.abc\.def\.ghi&hop=1&ts=\d+&kid=k1&sig=[0-9a-f]{40}$/,
    );
  });

  it('signs with another key id or algorithm where configured', async () => {
    const out = 'https://dmp.example/uid?userid=[[USERID]]&pl=88888&plsec=tok';
    const rotated = await sync(
      partner,
      `out=${encodeURIComponent(out)}&sign=88888&kid=k2`,
      `${PARTNER_COOKIE}=u1`,
    );
    const params = new URL(rotated.headers.get('location')!).searchParams;
    expect(params.get('kid')).toBe('k2');
    expect(params.get('sig')).toBe(
      signSyncCallback(
        { pl: '88888', userid: 'u1', plsec: 'tok', ts: params.get('ts')!, kid: 'k2' },
        ROTATED_SECRET,
        'sha1',
      ),
    );

    const sha256Out = 'https://dmp.example/uid?userid=%%PARTNER_UID%%&pl=77777&plsec=tok';
    const sha256 = await sync(
      partner,
      `out=${encodeURIComponent(sha256Out)}&sign=77777`,
      `${PARTNER_COOKIE}=u1`,
    );
    const sha256Params = new URL(sha256.headers.get('location')!).searchParams;
    expect(sha256Params.get('sig')).toBe(
      signSyncCallback(
        { pl: '77777', userid: 'u1', plsec: 'tok', ts: sha256Params.get('ts')!, kid: 's' },
        SIGNING_SECRET,
        'sha256',
      ),
    );

    expect((await sync(partner, `out=${encodeURIComponent(out)}&sign=88888&kid=nope`)).status).toBe(400);
    expect((await sync(partner, `out=${encodeURIComponent(out)}&sign=12345`)).status).toBe(400);
  });

  it('refuses a missing, malformed or non-http(s) out with 400', async () => {
    for (const query of [
      '',
      'out=',
      `out=${encodeURIComponent('not a url')}`,
      `out=${encodeURIComponent('javascript:alert(1)//[[USERID]]')}`,
      `out=${encodeURIComponent('data:text/html,<b>[[USERID]]</b>')}`,
      `out=${encodeURIComponent('ftp://127.0.0.1/uid?userid=[[USERID]]')}`,
    ]) {
      const response = await sync(partner, query);
      expect(response.status, query).toBe(400);
      expect(response.headers.get('location')).toBeNull();
    }
  });

  it('logs the requests it received, in memory and at GET /__requests', async () => {
    await fetch(`${partner.url}/__requests`, { method: 'DELETE' });
    expect(partner.requests).toEqual([]);
    const out = 'https://dmp.example/uid?userid=[[USERID]]&pl=99999&plsec=x';
    await sync(
      partner,
      `out=${encodeURIComponent(out)}&gdpr=1&gdpr_consent=CONSENT`,
      `${PARTNER_COOKIE}=logged1`,
    );
    const notFound = await fetch(`${partner.url}/v1/unknown`);
    expect(notFound.status).toBe(404);

    const served = (await (await fetch(`${partner.url}/__requests`)).json()) as typeof partner.requests;
    expect(served).toEqual(JSON.parse(JSON.stringify(partner.requests)));
    expect(served.map((request) => [request.method, request.path, request.status])).toEqual([
      ['GET', '/sync', 302],
      ['GET', '/v1/unknown', 404],
    ]);
    expect(served[0]).toMatchObject({
      query: { out, gdpr: '1', gdpr_consent: 'CONSENT' },
      partnerUserId: 'logged1',
      location: 'https://dmp.example/uid?userid=logged1&pl=99999&plsec=x',
    });
  });
});

describe(`reference partner in headless Chromium (${chooseChromium().label}) over http://127.0.0.1`, () => {
  let partner: ReferencePartner;
  let dmp: Server;
  let dmpUrl: string;
  let browser: ChromiumSession;
  const callbacks: URL[] = [];
  const waiters: ((url: URL) => void)[] = [];

  /** Resolves with the next /uid callback the stand-in DMP receives. */
  const nextCallback = () => new Promise<URL>((resolve) => waiters.push(resolve));

  beforeAll(async () => {
    partner = await startReferencePartner({
      platforms: [{ id: 99999, userIdMacro: '[[USERID]]', signingKeys: {}, algorithm: 'sha1' }],
    });
    // A stand-in for the DMP: a page with the pixel, and the /uid callback.
    dmp = createServer((request, response) => {
      const url = new URL(request.url ?? '/', dmpUrl);
      if (url.pathname === '/uid') {
        callbacks.push(url);
        waiters.shift()?.(url);
        response.writeHead(200, { 'content-type': 'image/gif', 'cache-control': 'no-store' });
        response.end(Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64'));
        return;
      }
      const out = `${dmpUrl}/uid?userid=[[USERID]]&pl=99999&plsec=verysecure&n=${url.searchParams.get('n')}`;
      response.writeHead(200, { 'content-type': 'text/html' });
      response.end(`<!doctype html><img src="${partner.url}/sync?out=${encodeURIComponent(out)}">`);
    });
    dmpUrl = originOf(await listen(dmp, 0));
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    if (dmp) await close(dmp);
    await partner?.stop();
  });

  it('keeps its cookie across syncs, for pixels embedded in a page on another port', async () => {
    const page = await browser.context.newPage();
    try {
      const first = nextCallback();
      await page.goto(`${dmpUrl}/page?n=1`);
      const firstId = (await first).searchParams.get('userid');
      expect(firstId).toMatch(/^[0-9a-f]{16}$/);

      const second = nextCallback();
      await page.goto(`${dmpUrl}/page?n=2`);
      expect((await second).searchParams.get('userid')).toBe(firstId);

      const cookies = await page.context().cookies(partner.url);
      expect(cookies.find((cookie) => cookie.name === PARTNER_COOKIE)?.value).toBe(firstId);
      expect(callbacks.map((url) => url.searchParams.get('n'))).toEqual(['1', '2']);
    } finally {
      await page.close();
    }
  });
});

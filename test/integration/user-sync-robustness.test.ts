import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type Browser,
  expectGif,
  expectRefusal,
  type HttpResponse,
  knownBrowser,
  outOf,
  STATIC_TOKEN,
  useStack,
} from './support.ts';

/**
 * Hostile and broken input (architecture.md section 2): never a 5xx, never a redirect to a host
 * that is not the configured partner's, never a mapping from garbage.
 */

const harness = useStack();

/** Our answer either ends (no Location) or sends the browser to the reference partner only. */
function expectSafe(response: HttpResponse): void {
  expect(response.status, `${response.url} -> ${response.status} ${response.reason ?? ''}`).toBeLessThan(500);
  if (response.location === null) return;
  expect(response.status).toBe(302);
  const target = new URL(response.location);
  expect(target.origin, response.url).toBe(harness.partnerOrigin);
  // The callback the partner will send the browser to is ours, too.
  expect(outOf(response.location).origin).toBe(harness.api);
}

const EVIL = 'http://evil.example';

describe('no open redirect', () => {
  const redirectParams = ['out', 'redirect', 'redirect_uri', 'location', 'next', 'return', 'url', 'r'];

  it('/sync ignores redirect-like parameters: the Location is always the partner template', async () => {
    for (const name of redirectParams) {
      for (const value of [EVIL, '//evil.example', `${EVIL}/uid?userid=x`, 'javascript:alert(1)']) {
        for (const pl of ['', '&pl=99999', '&pl=88888']) {
          const browser = harness.browser();
          const response = await browser.get(harness.url(`/sync?${name}=${encodeURIComponent(value)}${pl}`));
          expect(response.status).toBe(302);
          expectSafe(response);
          expect(response.location).not.toContain('evil.example');
        }
      }
    }
  });

  it('/sync with odd pl values: 400 pixel, never a Location', async () => {
    for (const pl of [
      '//evil.example',
      '99999@evil.example',
      `${encodeURIComponent(EVIL)}`,
      '99999%0d%0aLocation:%20http://evil.example',
      '99999%2F..%2F..',
      '99999#evil.example',
      '99999%23@evil.example',
      ' 99999',
      '99999 ',
      '-99999',
      '9'.repeat(11),
      '2147483648',
    ]) {
      const response = await harness.browser().get(harness.url(`/sync?pl=${pl}`));
      expectSafe(response);
      if (response.status !== 302) {
        expectRefusal(
          response,
          400,
          response.reason === 'param_too_long' ? 'param_too_long' : 'platform_unknown',
        );
      }
    }
  });

  it('/uid ignores redirect-like parameters and odd hop values when it continues the chain', async () => {
    const extras = [
      ...redirectParams.map((name) => `${name}=${encodeURIComponent(EVIL)}`),
      'hop=0',
      'hop=-1',
      'hop=99',
      'hop=1.5',
      'hop=abc',
      'last=0',
      'last=yes',
    ];
    for (const extra of extras) {
      const { browser } = await knownBrowser(harness);
      const response = await browser.get(
        harness.url(`/uid?userid=openredirect-1&pl=99999&plsec=${STATIC_TOKEN}&${extra}`),
      );
      expectSafe(response);
      expect(response.location ?? '').not.toContain('evil.example');
    }
  });

  it('consent values cannot smuggle a parameter or a host into the partner URL or out', async () => {
    const smuggled = [
      `&out=${EVIL}`,
      `@evil.example`,
      `#@evil.example`,
      `/../../evil.example`,
      `x&gdpr_consent=y&out=${encodeURIComponent(EVIL)}`,
    ];
    for (const value of smuggled) {
      for (const name of ['gdpr_consent', 'us_privacy', 'gpp', 'gpp_sid']) {
        const browser = harness.browser();
        const response = await browser.get(harness.url(`/sync?gdpr=0&${name}=${encodeURIComponent(value)}`));
        expectSafe(response);
        if (response.location) {
          const partnerUrl = new URL(response.location);
          expect(partnerUrl.searchParams.getAll('out')).toHaveLength(1);
          const out = outOf(response.location);
          expect(out.searchParams.getAll('userid')).toEqual(['[[USERID]]']);
          // The whole chain stays on our origin and the partner's.
          const hops = await browser.follow(response.location);
          for (const hop of hops) {
            expect([harness.api, harness.partnerOrigin]).toContain(new URL(hop.url).origin);
            expect(hop.status).toBeLessThan(500);
          }
        }
      }
    }
  });

  it('random queries to /sync and /uid never yield a 5xx or a foreign Location (fixed seed)', async () => {
    const names = [
      'pl',
      'userid',
      'plsec',
      'hop',
      'last',
      'out',
      'gdpr',
      'gdpr_consent',
      'us_privacy',
      'gpp',
      'gpp_sid',
      'ts',
      'kid',
      'sig',
      'debug',
      'redirect',
    ];
    const value = fc.oneof(
      fc.constantFrom(
        '99999',
        '88888',
        STATIC_TOKEN,
        '1',
        '0',
        '',
        '[[USERID]]',
        EVIL,
        '%zz',
        '%',
        '%%',
        '&',
        '=',
      ),
      fc.string({ maxLength: 40 }),
      fc.string({ unit: 'binary', maxLength: 20 }).map((text) => encodeURIComponent(text)),
    );
    const pair = fc.tuple(fc.constantFrom(...names), value);
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('/sync', '/uid'),
        fc.array(pair, { maxLength: 8 }),
        fc.boolean(),
        async (path, pairs, raw) => {
          const query = pairs
            .map(
              ([name, text]) => `${name}=${raw ? text.replaceAll(/[\s#]/g, '') : encodeURIComponent(text)}`,
            )
            .join('&');
          const browser = harness.browser();
          const response = await browser.get(harness.url(`${path}?${query}`));
          expectSafe(response);
          if (response.location === null && response.headers.get('content-type') !== 'application/json') {
            expectGif(response, response.status);
          }
        },
      ),
      { seed: 20_261_128, numRuns: 150 },
    );
  });
});

describe('garbage never yields a 5xx', () => {
  async function expectNo5xx(browser: Browser, path: string, init?: Parameters<Browser['request']>[1]) {
    const response = await browser.request(harness.url(path), init);
    expect(response.status, `${path} -> ${response.status}`).toBeLessThan(500);
    return response;
  }

  it('bad percent-encoding', async () => {
    const { browser, dmpUid } = await knownBrowser(harness);
    for (const path of [
      '/sync?%zz',
      '/sync?pl=%zz',
      '/sync?%zz=%zz&pl=99999',
      '/sync?gdpr=1&gdpr_consent=%zz',
      '/uid?%zz',
      `/uid?userid=%zz&pl=99999&plsec=${STATIC_TOKEN}`,
      `/uid?userid=abc%&pl=99999&plsec=${STATIC_TOKEN}`,
      `/uid?userid=%ff%fe&pl=99999&plsec=${STATIC_TOKEN}`,
      `/uid?userid=%E0%A4%A&pl=99999&plsec=${STATIC_TOKEN}`,
      `/uid?userid=abc123&pl=99999&plsec=%zz`,
      `/uid?userid=abc123&pl=88888&plsec=x&ts=%zz&kid=%zz&sig=%zz`,
      '/optout?%zz',
    ]) {
      await expectNo5xx(browser, path);
    }
    // Still percent-encoded ids and unreadable bytes are refused, not stored.
    expectRefusal(
      await browser.get(harness.url(`/uid?userid=%zz&pl=99999&plsec=${STATIC_TOKEN}`)),
      400,
      'userid_charset',
    );
    expect(await harness.table.list(dmpUid)).toEqual([]);
  });

  it('5000-character parameters: 400 param_too_long', async () => {
    const { browser, dmpUid } = await knownBrowser(harness);
    const long = 'a'.repeat(5000);
    for (const query of [
      `userid=${long}&pl=99999&plsec=${STATIC_TOKEN}`,
      `userid=abc123&pl=${long}&plsec=${STATIC_TOKEN}`,
      `userid=abc123&pl=99999&plsec=${long}`,
      `userid=abc123&pl=99999&plsec=${STATIC_TOKEN}&gdpr_consent=${long}`,
      `userid=abc123&pl=99999&plsec=${STATIC_TOKEN}&whatever=${long}`,
      `userid=abc123&pl=88888&plsec=x&ts=1&kid=k1&sig=${long}`,
    ]) {
      expectRefusal(await browser.get(harness.url(`/uid?${query}`)), 400, 'param_too_long');
    }
    for (const query of [`pl=${long}`, `gdpr_consent=${long}`, `junk=${long}`]) {
      expectRefusal(await browser.get(harness.url(`/sync?${query}`)), 400, 'param_too_long');
    }
    // A long parameter name and many parameters are no 5xx either.
    await expectNo5xx(browser, `/sync?${'n'.repeat(5000)}=1`);
    await expectNo5xx(browser, `/uid?${Array.from({ length: 300 }, (_, i) => `p${i}=${i}`).join('&')}`);
    expect(await harness.table.list(dmpUid)).toEqual([]);
  });

  it('empty values and empty queries', async () => {
    const { browser, dmpUid } = await knownBrowser(harness);
    expectRefusal(await browser.get(harness.url('/uid?userid=&pl=&plsec=')), 400, 'platform_unknown');
    expectRefusal(await browser.get(harness.url('/uid')), 400, 'platform_unknown');
    for (const path of [
      '/uid?',
      '/uid?&&&',
      '/uid?=',
      '/uid?==&=',
      '/sync?',
      '/sync?&',
      '/sync?=',
      '/sync?debug=',
    ]) {
      await expectNo5xx(browser, path);
    }
    expectRefusal(await browser.get(harness.url('/sync?pl=')), 400, 'platform_unknown');
    expect(await harness.table.list(dmpUid)).toEqual([]);
    expectGif(await browser.get(harness.url('/optout?x=')), 200);
  });

  it('garbage cookies and headers', async () => {
    const cookies = [
      'dmp_uid=<script>',
      'dmp_uid=',
      'dmp_uid',
      `dmp_uid=${'a'.repeat(4000)}`,
      `dmp_sa=${'x'.repeat(4000)}`,
      'dmp_sa=99999:zzzzzzzzzzzzz.88888:-1.:::',
      'dmp_optout=0',
      '=; ; ;=;',
      `a=${'%zz'.repeat(100)}`,
    ];
    for (const cookie of cookies) {
      for (const path of [
        '/sync',
        `/uid?userid=cookie-garbage-1&pl=99999&plsec=${STATIC_TOKEN}`,
        '/optout',
      ]) {
        const browser = harness.browser();
        const response = await expectNo5xx(browser, path, { headers: { cookie } });
        expectSafe(response);
        const minted = response.setCookies.find((line) => line.startsWith('dmp_uid='));
        // An invalid dmp_uid is never taken over: a fresh one is minted (or, on /optout, expired).
        if (minted && path !== '/optout') expect(minted).toMatch(/^dmp_uid=[A-Za-z0-9_-]{22};/);
      }
    }
    const browser = harness.browser();
    const odd: Record<string, string>[] = [
      { 'sec-gpc': 'garbage' },
      { 'x-forwarded-proto': 'javascript' },
      { 'user-agent': '\u00ff'.repeat(100) },
      { 'content-type': 'application/x-www-form-urlencoded' },
    ];
    for (const headers of odd) {
      const response = await expectNo5xx(browser, '/sync', { headers });
      expectSafe(response);
    }
  });

  it('POST /optout with a body of any kind, and unknown methods', async () => {
    const browser = harness.browser();
    for (const [contentType, body] of [
      ['application/x-www-form-urlencoded', 'a=1&b=%zz'],
      ['application/json', '{"not": "closed"'],
      ['text/plain', 'x'.repeat(10_000)],
      ['application/octet-stream', '\u0000\u0001'],
    ] as const) {
      const response = await expectNo5xx(browser, '/optout', {
        method: 'POST',
        headers: { 'content-type': contentType },
        body,
      });
      expectGif(response, 200);
    }
    for (const method of ['PUT', 'DELETE', 'PATCH']) {
      await expectNo5xx(browser, '/sync', { method });
      await expectNo5xx(browser, '/uid', { method });
    }
  });
});

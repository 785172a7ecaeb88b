import { describe, expect, it } from 'vitest';
import {
  GPP_SID,
  gppString,
  gppWithTcfSection,
  overlappingRangesTcString,
  tcString,
} from '../support/consent-strings.ts';
import {
  browserSyncedWith,
  expectGif,
  expectRefusal,
  HOST_VENDOR_ID,
  knownBrowser,
  outOf,
  PARTNER_VENDOR_ID,
  rawParam,
  SIGNED_PLATFORM,
  STATIC_PLATFORM,
  STATIC_TOKEN,
  useStack,
} from './support.ts';

/** Consent signals and the opt-out (docs/user-sync.md, "Privacy"): no consent, no mapping, no redirect. */

const harness = useStack();

const SEED = `userid=abcdef123&pl=99999&plsec=${STATIC_TOKEN}`;
const GRANTED = tcString({ purposes: [1], vendors: [HOST_VENDOR_ID, PARTNER_VENDOR_ID] });
const NO_PARTNER_VENDOR = tcString({ purposes: [1], vendors: [HOST_VENDOR_ID] });
const NO_HOST_VENDOR = tcString({ purposes: [1], vendors: [PARTNER_VENDOR_ID] });
const NO_PURPOSE_1 = tcString({ purposes: [2, 3], vendors: [HOST_VENDOR_ID, PARTNER_VENDOR_ID] });

async function refuseCallback(query: string, reason: string, headers?: Record<string, string>) {
  const { browser, dmpUid } = await knownBrowser(harness);
  const partnerRequests = harness.stack.partner.requests.length;
  expectRefusal(await browser.get(harness.url(`/uid?${query}`), headers), 451, reason);
  expect(await harness.table.list(dmpUid)).toEqual([]);
  expect(harness.stack.partner.requests.length).toBe(partnerRequests);
}

/** `/sync` that must answer the pixel and send the browser to no partner. */
async function expectNoSync(query: string, headers?: Record<string, string>) {
  const browser = harness.browser();
  const partnerRequests = harness.stack.partner.requests.length;
  const response = await browser.get(harness.url(`/sync${query}`), headers);
  expectGif(response, 200);
  expect(harness.stack.partner.requests.length).toBe(partnerRequests);
  return { browser, response };
}

describe('consent on /uid', () => {
  it('gdpr=1 without a consent string: 451 consent_gdpr_missing', async () => {
    await refuseCallback(`${SEED}&gdpr=1`, 'consent_gdpr_missing');
    await refuseCallback(`${SEED}&gdpr=1&gdpr_consent=`, 'consent_gdpr_missing');
  });

  it('gdpr=1 with a TC string granting purpose 1 to vendors 1234 and 4321: stored', async () => {
    const { browser, dmpUid } = await browserSyncedWith(harness, SIGNED_PLATFORM);
    const response = await browser.get(harness.url(`/uid?${SEED}&gdpr=1&gdpr_consent=${GRANTED}`));
    expectGif(response, 200);
    expect(await harness.table.get(dmpUid, STATIC_PLATFORM)).toMatchObject({ partnerUserId: 'abcdef123' });
  });

  it('gdpr=1 with consent continues the chain and forwards the consent to the next partner', async () => {
    const { browser, dmpUid } = await knownBrowser(harness);
    const response = await browser.get(harness.url(`/uid?${SEED}&gdpr=1&gdpr_consent=${GRANTED}`));
    expect(response.status).toBe(302);
    const out = outOf(response.location!);
    expect(out.searchParams.get('pl')).toBe(String(SIGNED_PLATFORM));
    expect(out.searchParams.get('gdpr')).toBe('1');
    expect(out.searchParams.get('gdpr_consent')).toBe(GRANTED);
    expect(await harness.table.get(dmpUid, STATIC_PLATFORM)).toMatchObject({ partnerUserId: 'abcdef123' });
  });

  it("a TC string without the partner's vendor (4321), without ours (1234), or without purpose 1: 451", async () => {
    await refuseCallback(`${SEED}&gdpr=1&gdpr_consent=${NO_PARTNER_VENDOR}`, 'consent_gdpr_denied');
    await refuseCallback(`${SEED}&gdpr=1&gdpr_consent=${NO_HOST_VENDOR}`, 'consent_gdpr_denied');
    await refuseCallback(`${SEED}&gdpr=1&gdpr_consent=${NO_PURPOSE_1}`, 'consent_gdpr_denied');
  });

  it('a consent string that does not decode, or a gdpr value that is not 0/1: 451 consent_gdpr_invalid', async () => {
    await refuseCallback(`${SEED}&gdpr=1&gdpr_consent=not-a-tc-string`, 'consent_gdpr_invalid');
    await refuseCallback(`${SEED}&gdpr=1&gdpr_consent=${GRANTED.slice(0, 10)}`, 'consent_gdpr_invalid');
    await refuseCallback(`${SEED}&gdpr=yes&gdpr_consent=${GRANTED}`, 'consent_gdpr_invalid');
  });

  it('Sec-GPC: 1 refuses: 451 consent_gpc', async () => {
    await refuseCallback(SEED, 'consent_gpc', { 'sec-gpc': '1' });
    // Even with a GDPR consent string that would grant it.
    await refuseCallback(`${SEED}&gdpr=1&gdpr_consent=${GRANTED}`, 'consent_gpc', { 'Sec-GPC': '1' });
  });

  it('us_privacy with an opt-out of sale: 451 consent_us_privacy_optout; malformed: invalid', async () => {
    await refuseCallback(`${SEED}&us_privacy=1YYN`, 'consent_us_privacy_optout');
    await refuseCallback(`${SEED}&us_privacy=1-Y-`, 'consent_us_privacy_optout');
    await refuseCallback(`${SEED}&us_privacy=2YNN`, 'consent_us_privacy_invalid');
    const { browser, dmpUid } = await browserSyncedWith(harness, SIGNED_PLATFORM);
    expectGif(await browser.get(harness.url(`/uid?${SEED}&us_privacy=1YNN`)), 200);
    expect(await harness.table.get(dmpUid, STATIC_PLATFORM)).toBeDefined();
  });

  it('GPP: an opt-out in a US section or a TCF section without the partner refuses; a grant stores', async () => {
    const usOptOut = gppString({ usnat: { saleOptOut: 1 } });
    await refuseCallback(`${SEED}&gpp=${usOptOut}&gpp_sid=${GPP_SID.usnat}`, 'consent_gpp_optout');
    const tcfNoPartner = gppString({ tcfeuv2: { purposes: [1], vendors: [HOST_VENDOR_ID] } });
    await refuseCallback(`${SEED}&gpp=${tcfNoPartner}&gpp_sid=${GPP_SID.tcfeuv2}`, 'consent_gpp_denied');
    await refuseCallback(`${SEED}&gpp=garbage&gpp_sid=2`, 'consent_gpp_invalid');

    const tcfGranted = gppString({
      tcfeuv2: { purposes: [1], vendors: [HOST_VENDOR_ID, PARTNER_VENDOR_ID] },
    });
    const { browser, dmpUid } = await browserSyncedWith(harness, SIGNED_PLATFORM);
    expectGif(
      await browser.get(harness.url(`/uid?${SEED}&gpp=${tcfGranted}&gpp_sid=${GPP_SID.tcfeuv2}`)),
      200,
    );
    expect(await harness.table.get(dmpUid, STATIC_PLATFORM)).toBeDefined();
  });
});

describe('crafted range sections (4 KB strings that expand to tens of millions of vendor ids)', () => {
  const crafted = overlappingRangesTcString(4096);
  const craftedGpp = gppWithTcfSection(overlappingRangesTcString(4090));

  it('/uid refuses them as over budget: 451 consent_gdpr_over_budget, consent_gpp_over_budget', async () => {
    await refuseCallback(`${SEED}&gdpr=1&gdpr_consent=${crafted}`, 'consent_gdpr_over_budget');
    await refuseCallback(`${SEED}&gpp=${craftedGpp}&gpp_sid=2`, 'consent_gpp_over_budget');
  });

  it('/sync sends the browser nowhere and says why in the trace', async () => {
    await expectNoSync(`?pl=99999&gpp_sid=2&gpp=${craftedGpp}`);
    const browser = harness.browser();
    const trace = await browser.get(harness.url(`/sync?gdpr=1&gdpr_consent=${crafted}&debug=1`));
    expect(trace.body.toString()).toContain('consent_gdpr_over_budget');
  });
});

describe('consent on /sync', () => {
  it('gdpr=1 without consent: the pixel, no redirect to any partner, nothing stored', async () => {
    const { browser } = await expectNoSync('?gdpr=1');
    await expectNoSync('?pl=99999&gdpr=1');
    await expectNoSync('?pl=88888&gdpr=1');
    const dmpUid = browser.cookie('dmp_uid')!;
    expect(await harness.table.list(dmpUid)).toEqual([]);
  });

  it('Sec-GPC: 1 or us_privacy opt-out: no redirect', async () => {
    await expectNoSync('', { 'sec-gpc': '1' });
    await expectNoSync('?us_privacy=1YYN');
    await expectNoSync(`?gdpr=1&gdpr_consent=${NO_HOST_VENDOR}`);
  });

  it('without the partner vendor, only the partner that has no vendor id (88888) is visited', async () => {
    const browser = harness.browser();
    const response = await browser.get(harness.url(`/sync?gdpr=1&gdpr_consent=${NO_PARTNER_VENDOR}`));
    expect(response.status).toBe(302);
    expect(outOf(response.location!).searchParams.get('pl')).toBe(String(SIGNED_PLATFORM));
  });

  it('forwards gdpr and gdpr_consent into the partner URL and into the out URL', async () => {
    const browser = harness.browser();
    const response = await browser.get(harness.url(`/sync?gdpr=1&gdpr_consent=${GRANTED}`));
    expect(response.status).toBe(302);
    const partnerUrl = new URL(response.location!);
    expect(partnerUrl.origin).toBe(harness.partnerOrigin);
    // The 99999 template's {gdpr} and {gdpr_consent} placeholders.
    expect(partnerUrl.searchParams.get('gdpr')).toBe('1');
    expect(partnerUrl.searchParams.get('gdpr_consent')).toBe(GRANTED);
    expect(rawParam(response.location!, 'gdpr_consent')).toBe(encodeURIComponent(GRANTED));
    const out = outOf(response.location!);
    expect(out.searchParams.get('gdpr')).toBe('1');
    expect(out.searchParams.get('gdpr_consent')).toBe(GRANTED);
    expect(out.searchParams.get('userid')).toBe('[[USERID]]');

    // The whole chain keeps the consent on every callback and stores both platforms.
    const hops = await browser.follow(response.location!);
    expectGif(hops.at(-1)!, 200);
    const callbacks = hops.filter((hop) => new URL(hop.url).pathname === '/uid');
    expect(callbacks).toHaveLength(2);
    for (const callback of callbacks) {
      const url = new URL(callback.url);
      expect(url.searchParams.get('gdpr')).toBe('1');
      expect(url.searchParams.get('gdpr_consent')).toBe(GRANTED);
    }
    const items = await harness.table.list(browser.cookie('dmp_uid')!);
    expect(items.map((item) => item.platformId).sort()).toEqual([SIGNED_PLATFORM, STATIC_PLATFORM]);
  });

  it('forwards us_privacy, gpp and gpp_sid into the out URL', async () => {
    const gpp = gppString({ usnat: { saleOptOut: 2 } });
    const browser = harness.browser();
    const response = await browser.get(harness.url(`/sync?pl=99999&us_privacy=1YNN&gpp=${gpp}&gpp_sid=7`));
    expect(response.status).toBe(302);
    const out = outOf(response.location!);
    expect(out.searchParams.get('us_privacy')).toBe('1YNN');
    expect(out.searchParams.get('gpp')).toBe(gpp);
    expect(out.searchParams.get('gpp_sid')).toBe('7');
  });
});

describe('opt-out', () => {
  for (const method of ['POST', 'GET'] as const) {
    it(`${method} /optout deletes the mappings, sets dmp_optout=1 and expires dmp_uid; then nothing syncs`, async () => {
      const browser = harness.browser();
      await browser.follow(harness.url('/sync'));
      const dmpUid = browser.cookie('dmp_uid')!;
      expect(await harness.table.list(dmpUid)).toHaveLength(2);

      const response = await browser.request(harness.url('/optout'), { method });
      expectGif(response, 200);
      const optOut = response.setCookies.find((line) => line.startsWith('dmp_optout='));
      expect(optOut).toMatch(/^dmp_optout=1;/);
      expect(optOut).toMatch(/Max-Age=34128000/);
      expect(optOut).toContain('Secure');
      expect(optOut).toContain('HttpOnly');
      expect(optOut).toContain('SameSite=None');
      expect(response.setCookies.find((line) => line.startsWith('dmp_uid='))).toMatch(
        /^dmp_uid=;.*Max-Age=0/,
      );
      expect(browser.cookie('dmp_uid')).toBeUndefined();
      expect(browser.cookie('dmp_optout')).toBe('1');
      expect(await harness.table.list(dmpUid)).toEqual([]);

      // Afterwards: /sync answers the pixel, mints no new DMP user and sends the browser nowhere.
      const partnerRequests = harness.stack.partner.requests.length;
      browser.deleteCookie('dmp_sa');
      const sync = await browser.get(harness.url('/sync'));
      expectGif(sync, 200);
      expect(sync.setCookies.filter((line) => line.startsWith('dmp_uid='))).toEqual([]);
      expectGif(await browser.get(harness.url('/sync?pl=99999')), 200);
      expect(harness.stack.partner.requests.length).toBe(partnerRequests);

      // /uid refuses, even with a valid static token, and stores under no user.
      const partnerId = `after-optout-${method.toLowerCase()}-1`;
      const callback = await browser.get(
        harness.url(`/uid?userid=${partnerId}&pl=99999&plsec=${STATIC_TOKEN}`),
      );
      expectRefusal(callback, 451, 'opted_out');
      expect(callback.setCookies.filter((line) => line.startsWith('dmp_uid='))).toEqual([]);
      expect(await harness.table.findByPartnerId(partnerId)).toEqual([]);
    });
  }

  it('a browser that kept its old dmp_uid next to dmp_optout=1 is still refused', async () => {
    const { browser, dmpUid } = await knownBrowser(harness);
    expectGif(await browser.get(harness.url('/optout')), 200);
    browser.setCookie('dmp_uid', dmpUid);
    expectRefusal(
      await browser.get(harness.url(`/uid?userid=kept-cookie-01&pl=99999&plsec=${STATIC_TOKEN}`)),
      451,
      'opted_out',
    );
    expectGif(await browser.get(harness.url('/sync')), 200);
    expect(await harness.table.list(dmpUid)).toEqual([]);
  });
});

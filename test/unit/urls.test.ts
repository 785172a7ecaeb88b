import { describe, expect, it } from 'vitest';
import {
  allowedSyncOrigin,
  buildCallbackUrl,
  buildPartnerSyncUrl,
  type CallbackInput,
  type ForwardedConsent,
  publicBaseUrl,
} from '../../src/sync/urls.ts';
import { gppString, tcString } from '../support/consent-strings.ts';

const BASE = 'https://go.flx1.com';
const SEED_TEMPLATE = 'https://api.third-party.com/sync?out={out}&gdpr={gdpr}&gdpr_consent={gdpr_consent}';
const TOKEN = 'm1.k2.t8lq00.n0nce-AAAA.q83vEjRWeJA-_wAAAAAAAA';

const TCF = tcString({ purposes: [1, 2], vendors: [1234, 4321] });
const GPP = gppString({ tcfeuv2: { purposes: [1], vendors: [1234, 4321] }, usnat: { saleOptOut: 2 } });

function callback(overrides: Partial<CallbackInput> = {}): string {
  return buildCallbackUrl({
    baseUrl: BASE,
    platformId: 99999,
    token: TOKEN,
    userIdMacro: '[[USERID]]',
    consent: {},
    hop: 1,
    ...overrides,
  });
}

/**
 * What the partner does with our sync URL: read `out` from its query (one decoding), replace its
 * macro with its user id (percent-encoded, as any value in a query) and redirect the browser there.
 */
function partnerRedirect(syncUrl: string, macro: string, partnerUserId: string): URL {
  const out = new URL(syncUrl).searchParams.get('out');
  if (out === null) throw new Error(`no out parameter in ${syncUrl}`);
  expect(out.split(macro)).toHaveLength(2);
  return new URL(out.replace(macro, encodeURIComponent(partnerUserId)));
}

describe('buildCallbackUrl', () => {
  it('is the seed callback with the macro left literal for the partner', () => {
    expect(callback({ token: 'verysecure' })).toBe(
      'https://go.flx1.com/uid?userid=[[USERID]]&pl=99999&plsec=verysecure&hop=1',
    );
  });

  it('keeps a custom macro literal', () => {
    expect(callback({ userIdMacro: '$UID' })).toContain('userid=$UID&');
    expect(callback({ userIdMacro: '{{uid}}' })).toContain('userid={{uid}}&');
  });

  it('percent-encodes the token and the consent values', () => {
    const url = callback({
      token: 'a+b/c=d&e',
      consent: { gdpr: '1', gdprConsent: 'x y&z=1', usPrivacy: '1YNN', gpp: 'DBA~a.b', gppSid: '2,7' },
      hop: 3,
    });
    expect(url).toBe(
      'https://go.flx1.com/uid?userid=[[USERID]]&pl=99999&plsec=a%2Bb%2Fc%3Dd%26e' +
        '&gdpr=1&gdpr_consent=x%20y%26z%3D1&us_privacy=1YNN&gpp=DBA~a.b&gpp_sid=2%2C7&hop=3',
    );
  });

  it('leaves out absent and empty consent values', () => {
    const url = new URL(callback({ consent: { gdpr: '0', gdprConsent: '', gpp: undefined } }));
    expect([...url.searchParams.keys()]).toEqual(['userid', 'pl', 'plsec', 'gdpr', 'hop']);
  });

  it('keeps a path prefix of the base URL', () => {
    expect(callback({ baseUrl: 'https://api.example.com/prod' })).toMatch(
      /^https:\/\/api\.example\.com\/prod\/uid\?/,
    );
  });
});

describe('buildPartnerSyncUrl', () => {
  it('fills the seed template: the partner origin, our callback as out, consent forwarded', () => {
    const consent: ForwardedConsent = { gdpr: '1', gdprConsent: TCF };
    const result = buildPartnerSyncUrl({ urlTemplate: SEED_TEMPLATE }, callback({ consent }), consent);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    const url = new URL(result.url);
    expect(url.origin).toBe('https://api.third-party.com');
    expect(url.pathname).toBe('/sync');
    expect(url.searchParams.get('out')).toBe(callback({ consent }));
    expect(url.searchParams.get('gdpr')).toBe('1');
    expect(url.searchParams.get('gdpr_consent')).toBe(TCF);
  });

  it('round trip: after the partner replaces [[USERID]], every parameter reads back exactly', () => {
    const consent: ForwardedConsent = {
      gdpr: '1',
      gdprConsent: TCF,
      usPrivacy: '1YNN',
      gpp: GPP,
      gppSid: '2,7',
    };
    const template =
      'https://api.third-party.com/sync?out={out}&gdpr={gdpr}&gdpr_consent={gdpr_consent}&us_privacy={us_privacy}&gpp={gpp}&gpp_sid={gpp_sid}';
    const token = 'tok+en/with=odd&chars';
    const partnerUserId = 'q83vEjRWeJA+/w==';
    const result = buildPartnerSyncUrl(
      { urlTemplate: template },
      callback({ token, consent, hop: 2 }),
      consent,
    );
    if (!result.ok) throw new Error(result.reason);

    const back = partnerRedirect(result.url, '[[USERID]]', partnerUserId);
    expect(back.origin + back.pathname).toBe('https://go.flx1.com/uid');
    expect(Object.fromEntries(back.searchParams)).toEqual({
      userid: partnerUserId,
      pl: '99999',
      plsec: token,
      gdpr: '1',
      gdpr_consent: TCF,
      us_privacy: '1YNN',
      gpp: GPP,
      gpp_sid: '2,7',
      hop: '2',
    });
  });

  // biome-ignore lint/suspicious/noTemplateCurlyInString: a partner's macro spelling, not a template
  it.each(['$UID', '%%ID%%', '{{uid}}', '${UID}', '#PMUID', '__UID__'])(
    'round trip with the custom macro %s',
    (macro) => {
      const consent: ForwardedConsent = { gdpr: '1', gdprConsent: TCF };
      const result = buildPartnerSyncUrl(
        { urlTemplate: SEED_TEMPLATE },
        callback({ userIdMacro: macro, consent }),
        consent,
      );
      if (!result.ok) throw new Error(result.reason);
      const back = partnerRedirect(result.url, macro, 'abcdef123');
      expect(Object.fromEntries(back.searchParams)).toEqual({
        userid: 'abcdef123',
        pl: '99999',
        plsec: TOKEN,
        gdpr: '1',
        gdpr_consent: TCF,
        hop: '1',
      });
    },
  );

  it('encodes consent placeholders so that they cannot add parameters or a fragment', () => {
    const consent: ForwardedConsent = { gdpr: '1&out=https://evil.example/#x', gdprConsent: 'a b+c' };
    const result = buildPartnerSyncUrl({ urlTemplate: SEED_TEMPLATE }, callback(), consent);
    if (!result.ok) throw new Error(result.reason);
    const url = new URL(result.url);
    expect(url.hash).toBe('');
    expect(url.searchParams.getAll('out')).toEqual([callback()]);
    expect(url.searchParams.get('gdpr')).toBe('1&out=https://evil.example/#x');
    expect(url.searchParams.get('gdpr_consent')).toBe('a b+c');
  });

  it('fills absent consent values with the empty string', () => {
    const result = buildPartnerSyncUrl({ urlTemplate: SEED_TEMPLATE }, callback(), {});
    if (!result.ok) throw new Error(result.reason);
    expect(result.url).toMatch(/&gdpr=&gdpr_consent=$/);
  });

  it('leaves a partner macro or unknown braces in the template alone', () => {
    const template = 'https://api.third-party.com/sync?out={out}&partner={partner_id}';
    const result = buildPartnerSyncUrl({ urlTemplate: template }, callback(), {});
    if (!result.ok) throw new Error(result.reason);
    expect(result.url.endsWith('&partner={partner_id}')).toBe(true);
  });

  it.each([
    ['a host suffix', 'https://partner.example{gdpr}/sync?out={out}', '.evil.example'],
    ['a whole host', 'https://partner.example{gdpr}/sync?out={out}', 'evil.example'],
    ['userinfo', 'https://partner.example{gdpr}/sync?out={out}', '@evil.example'],
    ['a port', 'https://partner.example:{gdpr}/sync?out={out}', '8443'],
  ])('refuses a template whose expansion would change the origin (%s)', (_, urlTemplate, gdpr) => {
    expect(buildPartnerSyncUrl({ urlTemplate }, callback(), { gdpr })).toEqual({
      ok: false,
      reason: 'redirect_off_allowlist',
    });
  });

  it('allows the same template when the expansion keeps the origin', () => {
    const result = buildPartnerSyncUrl(
      { urlTemplate: 'https://partner.example{gdpr}/sync?out={out}' },
      callback(),
      { gdpr: '' },
    );
    expect(result.ok && new URL(result.url).origin).toBe('https://partner.example');
  });
});

describe('allowedSyncOrigin', () => {
  it.each([
    [SEED_TEMPLATE, 'https://api.third-party.com'],
    ['https://API.Third-Party.com:443/sync?out={out}', 'https://api.third-party.com'],
    ['https://api.third-party.com:8443/sync?out={out}', 'https://api.third-party.com:8443'],
    ['http://127.0.0.1:3001/sync?out={out}', 'http://127.0.0.1:3001'],
  ])('of %s is %s', (urlTemplate, origin) => {
    expect(allowedSyncOrigin({ urlTemplate })).toBe(origin);
  });
});

describe('publicBaseUrl', () => {
  it('prefers the configured URL, without trailing slashes', () => {
    expect(
      publicBaseUrl('https://sync.example.com/', 'abc.execute-api.eu-west-1.amazonaws.com', 'https'),
    ).toBe('https://sync.example.com');
    expect(publicBaseUrl('https://sync.example.com/v1//', 'ignored', undefined)).toBe(
      'https://sync.example.com/v1',
    );
  });

  it("derives https://<domain> from the request's host", () => {
    expect(publicBaseUrl(undefined, 'abc123def4.execute-api.eu-west-1.amazonaws.com', 'https')).toBe(
      'https://abc123def4.execute-api.eu-west-1.amazonaws.com',
    );
    expect(publicBaseUrl(undefined, 'abc.example.com', undefined, ['abc.example.com'])).toBe(
      'https://abc.example.com',
    );
    expect(publicBaseUrl(undefined, 'abc.example.com', 'gopher', ['abc.example.com'])).toBe(
      'https://abc.example.com',
    );
  });

  it('never builds a callback on a host that is not on the fixed list', () => {
    expect(publicBaseUrl(undefined, 'evil.example', 'https')).toBeUndefined();
    expect(publicBaseUrl(undefined, 'evil.example', 'https', ['sync.dmp.example'])).toBe(
      'https://sync.dmp.example',
    );
    // http only ever for loopback, whatever x-forwarded-proto says.
    expect(publicBaseUrl(undefined, 'sync.dmp.example', 'http', ['sync.dmp.example'])).toBe(
      'https://sync.dmp.example',
    );
  });

  it('uses http only when the forwarded protocol says so (local stack)', () => {
    expect(publicBaseUrl(undefined, '127.0.0.1:3000', 'http')).toBe('http://127.0.0.1:3000');
  });
});

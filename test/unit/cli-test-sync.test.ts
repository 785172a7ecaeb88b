import { describe, expect, it } from 'vitest';
import { outParameter, redactUrl, refusalHint, templateOrigin } from '../../cli/commands/test-sync.ts';
import { CookieJar } from '../../cli/cookie-jar.ts';

/** The pure parts of `dmp platforms test-sync`: its browser's cookie jar and how it reads URLs. */

const NOW = 1_800_000_000;

describe('the cookie jar of dmp platforms test-sync', () => {
  it('sends host-only cookies to their host, Domain cookies to subdomains too, by path', () => {
    const jar = new CookieJar(() => NOW);
    jar.store(
      'https://sync.pub.example/sync',
      'dmp_uid=u1; Path=/; Max-Age=100; Secure; HttpOnly; SameSite=None',
    );
    jar.store('https://sync.pub.example/sync', 'wide=w; Domain=.pub.example; Path=/');
    jar.store('https://sync.pub.example/sync', 'deep=d; Path=/uid');
    expect(jar.header('https://sync.pub.example/uid?x=1')).toBe('deep=d; dmp_uid=u1; wide=w');
    expect(jar.header('https://sync.pub.example/sync')).toBe('dmp_uid=u1; wide=w');
    expect(jar.header('https://www.pub.example/')).toBe('wide=w');
    expect(jar.header('https://partner.example/sync')).toBeUndefined();
    // /uidx is not under /uid.
    expect(jar.header('https://sync.pub.example/uidx')).toBe('dmp_uid=u1; wide=w');
  });

  it('sends Secure cookies over https, and over http to loopback only, as browsers do', () => {
    const jar = new CookieJar(() => NOW);
    jar.store('http://127.0.0.1:3000/sync', 'dmp_uid=u1; Secure');
    jar.store('http://sync.pub.example/sync', 'plain=p; Secure');
    expect(jar.header('http://127.0.0.1:3001/sync')).toBe('dmp_uid=u1');
    expect(jar.header('http://sync.pub.example/sync')).toBeUndefined();
    expect(jar.header('https://sync.pub.example/sync')).toBe('plain=p');
  });

  it('deletes on Max-Age=0 or a past Expires, forgets expired ones, refuses a foreign Domain', () => {
    let now = NOW;
    const jar = new CookieJar(() => now);
    jar.store('https://a.example/', 'x=1; Max-Age=10');
    expect(jar.store('https://a.example/', 'x=; Max-Age=0')).toMatchObject({ action: 'deleted' });
    expect(jar.get('https://a.example/', 'x')).toBeUndefined();
    jar.store('https://a.example/', 'y=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT');
    expect(jar.get('https://a.example/', 'y')).toBeUndefined();
    jar.store('https://a.example/', 'z=1; Max-Age=10');
    now += 11;
    expect(jar.get('https://a.example/', 'z')).toBeUndefined();
    expect(jar.store('https://a.example/', 'evil=1; Domain=b.example')).toMatchObject({ action: 'refused' });
    expect(jar.all()).toEqual([]);
  });

  it("reads and writes curl's cookie file", () => {
    const jar = new CookieJar(() => NOW);
    const file = [
      '# Netscape HTTP Cookie File',
      '#HttpOnly_127.0.0.1\tFALSE\t/\tTRUE\t1900000000\tdmp_uid\tabc',
      '.pub.example\tTRUE\t/\tFALSE\t0\tsession\tvalue with\ttab',
      'broken line',
      '',
    ].join('\n');
    expect(jar.load(file)).toBe(2);
    expect(jar.get('http://127.0.0.1:3000/sync', 'dmp_uid')).toBe('abc');
    expect(jar.get('https://www.pub.example/', 'session')).toBe('value with\ttab');
    const again = new CookieJar(() => NOW);
    again.load(jar.serialize());
    expect(again.all()).toEqual(jar.all());
    expect(jar.serialize()).toContain('#HttpOnly_127.0.0.1\tFALSE\t/\tTRUE\t1900000000\tdmp_uid\tabc');
  });
});

describe('how dmp platforms test-sync reads sync URLs', () => {
  it('redacts tokens and signatures, also inside the encoded out URL, and keeps the rest as sent', () => {
    expect(
      redactUrl('https://sync.pub.example/uid?userid=a%2Bb&pl=1&plsec=m1.k.x.y.z&ts=1&kid=k1&sig=abc'),
    ).toBe('https://sync.pub.example/uid?userid=a%2Bb&pl=1&plsec=[redacted]&ts=1&kid=k1&sig=[redacted]');
    const out = encodeURIComponent('https://sync.pub.example/uid?userid=[[USERID]]&pl=1&plsec=m1.k.x&hop=1');
    expect(redactUrl(`https://partner.example/sync?out=${out}&gdpr=`)).toBe(
      `https://partner.example/sync?out=${encodeURIComponent('https://sync.pub.example/uid?userid=[[USERID]]&pl=1&plsec=')}[redacted]${encodeURIComponent('&hop=1')}&gdpr=`,
    );
  });

  it("finds the template's origin and the parameter that carries {out}", () => {
    const template = 'https://cm.partner.example:8443/sync?r={out}&gdpr={gdpr}';
    expect(templateOrigin(template)).toBe('https://cm.partner.example:8443');
    expect(outParameter(template)).toBe('r');
    expect(outParameter('https://partner.example/sync/{out}')).toBeUndefined();
  });

  it('explains refusal reasons, consent ones included', () => {
    expect(refusalHint('signature_unknown_key')).toContain("not in our secret's signingKeys");
    expect(refusalHint('consent_gdpr_missing')).toContain('--param gdpr=1');
    expect(refusalHint('something_new')).toBe('');
    expect(refusalHint(null)).toBe('');
  });
});

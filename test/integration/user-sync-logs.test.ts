import { describe, expect, it } from 'vitest';
import { tcString } from '../support/consent-strings.ts';
import {
  browserSyncedWith,
  emfRecords,
  expectGif,
  expectRefusal,
  filteredMetrics,
  HOST_VENDOR_ID,
  knownBrowser,
  mintedCallback,
  nowSeconds,
  partnerCallback,
  SIGNED_PLATFORM,
  SIGNING_SECRET,
  STATIC_PLATFORM,
  STATIC_SIGNING_SECRET,
  STATIC_TOKEN,
  signedQuery,
  TOKEN_SIGNING_KEY,
  useStack,
} from './support.ts';

/**
 * What the handler prints (it runs in this process: Powertools writes JSON logs to stdout/stderr,
 * captured by the harness): no user id, partner id, token or secret in any line; every refusal
 * counted as SyncRejected with its reason by the metric filters the stack puts on the log group.
 */

const harness = useStack();

describe('handler logs and metrics', () => {
  const partnerIds = new Set<string>();
  const tokens = new Set<string>();
  const expectedReasons = new Map<string, number>();

  async function refusal(url: string, status: number, reason: string, browser = harness.browser()) {
    expectRefusal(await browser.get(url), status, reason);
    expectedReasons.set(reason, (expectedReasons.get(reason) ?? 0) + 1);
  }

  it('runs a day of traffic: chains, callbacks, refusals, opt-outs', async () => {
    // Whole chains (the reference partner's ids and the minted tokens pass through our handler).
    for (let index = 0; index < 3; index++) {
      const browser = harness.browser();
      const hops = await browser.follow(harness.url('/sync'));
      expectGif(hops.at(-1)!, 200);
      for (const hop of hops) {
        const url = new URL(hop.url);
        if (url.pathname !== '/uid') continue;
        tokens.add(url.searchParams.get('plsec')!);
        if (url.searchParams.get('sig')) tokens.add(url.searchParams.get('sig')!);
      }
    }

    // The seed's callback, with and without a DMP cookie.
    const seedPartnerId = 'seedlogcheck9876';
    partnerIds.add(seedPartnerId);
    const synced = await browserSyncedWith(harness, SIGNED_PLATFORM);
    expectGif(
      await synced.browser.get(harness.url(`/uid?userid=${seedPartnerId}&pl=99999&plsec=${STATIC_TOKEN}`)),
      200,
    );
    const fresh = harness.browser();
    const cookieless = await fresh.get(
      harness.url(`/uid?userid=${seedPartnerId}x&pl=99999&plsec=${STATIC_TOKEN}`),
    );
    expect(cookieless.status).toBe(403);
    partnerIds.add(`${seedPartnerId}x`);

    // Refusals, each with a distinctive partner id that must not be logged.
    const { browser, dmpUid } = await knownBrowser(harness);
    const id = (name: string) => {
      const value = `${name}Zq7w${partnerIds.size}`;
      partnerIds.add(value);
      return value;
    };
    await refusal(
      harness.url(`/uid?userid=${id('wrongtoken')}&pl=99999&plsec=wrong-token-77`),
      403,
      'token_mismatch',
      browser,
    );
    tokens.add('wrong-token-77');
    await refusal(
      harness.url(`/uid?userid=${id('unknownpl')}&pl=12345&plsec=${STATIC_TOKEN}`),
      400,
      'platform_unknown',
      browser,
    );
    await refusal(
      harness.url(`/uid?userid=${id('toolong').padEnd(300, 'q')}&pl=99999&plsec=${STATIC_TOKEN}`),
      400,
      'userid_too_long',
      browser,
    );
    await refusal(
      harness.url(`/uid?userid=${id('bad')}%20id&pl=99999&plsec=${STATIC_TOKEN}`),
      400,
      'userid_charset',
      browser,
    );
    await refusal(
      harness.url(`/uid?userid=${id('dup')}&userid=${id('dup')}&pl=99999&plsec=${STATIC_TOKEN}`),
      400,
      'duplicate_param',
      browser,
    );
    await refusal(
      harness.url(`/uid?userid=${id('gdpr')}&pl=99999&plsec=${STATIC_TOKEN}&gdpr=1`),
      451,
      'consent_gdpr_missing',
      browser,
    );
    const onlyHost = tcString({ purposes: [1], vendors: [HOST_VENDOR_ID] });
    await refusal(
      harness.url(
        `/uid?userid=${id('denied')}&pl=99999&plsec=${STATIC_TOKEN}&gdpr=1&gdpr_consent=${onlyHost}`,
      ),
      451,
      'consent_gdpr_denied',
      browser,
    );

    // Signed platform: missing, invalid, stale, unknown key, replayed, static token.
    const out = await mintedCallback(harness, browser, SIGNED_PLATFORM);
    tokens.add(out.searchParams.get('plsec')!);
    await refusal(partnerCallback(out, id('unsigned')), 403, 'signature_missing', browser);
    await refusal(
      partnerCallback(out, id('badsig'), { sig: 'f'.repeat(40) }),
      403,
      'signature_invalid',
      browser,
    );
    await refusal(
      partnerCallback(out, id('stale'), { ts: nowSeconds() - 1000 }),
      403,
      'signature_stale',
      browser,
    );
    await refusal(partnerCallback(out, id('kid'), { kid: 'k9' }), 403, 'signature_unknown_key', browser);
    const signed = partnerCallback(out, id('signed'), {});
    tokens.add(new URL(signed).searchParams.get('sig')!);
    expectGif(await browser.get(signed), 200);

    // A signed static-token callback (99999), replayed (another browser: this one stays due for 99999).
    const signer = (await knownBrowser(harness)).browser;
    const staticSigned = harness.url(
      `/uid?${signedQuery({ pl: STATIC_PLATFORM, userid: id('replay'), plsec: STATIC_TOKEN, secret: STATIC_SIGNING_SECRET })}`,
    );
    tokens.add(new URL(staticSigned).searchParams.get('sig')!);
    expect((await signer.get(staticSigned)).reason).toBeNull();
    await refusal(staticSigned, 403, 'replayed', signer);

    // Another browser replaying this browser's minted callback.
    const other = await knownBrowser(harness);
    const out99999 = await mintedCallback(harness, browser, STATIC_PLATFORM);
    tokens.add(out99999.searchParams.get('plsec')!);
    await refusal(partnerCallback(out99999, id('planted')), 403, 'token_mismatch', other.browser);

    // Opt-out, then a callback: refused.
    expectGif(await browser.get(harness.url('/optout')), 200);
    await refusal(
      harness.url(`/uid?userid=${id('optedout')}&pl=99999&plsec=${STATIC_TOKEN}`),
      451,
      'opted_out',
      browser,
    );
    expect(await harness.table.list(dmpUid)).toEqual([]);
  });

  it('never prints a DMP user id, a partner id, a token or a secret', () => {
    const lines = harness.output.lines;
    expect(lines.length).toBeGreaterThan(0);
    const secrets = [STATIC_TOKEN, SIGNING_SECRET, STATIC_SIGNING_SECRET, TOKEN_SIGNING_KEY];
    const ids = [...harness.seenIds, ...partnerIds];
    expect(ids.length).toBeGreaterThan(10);
    for (const line of lines) {
      for (const value of [...secrets, ...ids, ...tokens]) {
        expect(line.includes(value), `a log line contains ${value}: ${line}`).toBe(false);
      }
    }
  });

  it('writes structured JSON lines only', () => {
    for (const line of harness.output.lines) {
      expect(() => JSON.parse(line), line).not.toThrow();
    }
  });

  it('counts every refusal as SyncRejected, with platform and reason, through the metric filters', () => {
    const metrics = filteredMetrics(harness.output.lines);
    // No EMF record any more: the counts ride on the request's log line.
    expect(emfRecords(harness.output.lines)).toEqual([]);
    const rejected = metrics.filter((metric) => metric.name === 'SyncRejected');
    for (const metric of rejected) {
      expect(Object.keys(metric.dimensions).sort()).toEqual(['environment', 'platform', 'reason']);
      expect(metric.dimensions['environment']).toBe('local');
    }
    const counted = new Map<string, number>();
    for (const metric of rejected) {
      const reason = metric.dimensions['reason']!;
      counted.set(reason, (counted.get(reason) ?? 0) + 1);
    }
    for (const [reason, count] of expectedReasons) {
      expect(counted.get(reason) ?? 0, reason).toBeGreaterThanOrEqual(count);
    }
    // Per platform: the signed platform's refusals carry its id.
    expect(
      rejected.some(
        (metric) =>
          metric.dimensions['reason'] === 'signature_invalid' &&
          metric.dimensions['platform'] === String(SIGNED_PLATFORM),
      ),
    ).toBe(true);
    expect(
      rejected.some(
        (metric) =>
          metric.dimensions['reason'] === 'platform_unknown' && metric.dimensions['platform'] === '12345',
      ),
    ).toBe(true);

    // The funnel's other counts are there too, each with its platform.
    const names = new Set(metrics.map((metric) => metric.name));
    for (const name of ['SyncRedirected', 'MappingStored', 'SyncRejected', 'OptOut'])
      expect(names).toContain(name);
    for (const metric of metrics.filter((m) => m.name === 'SyncRedirected' || m.name === 'MappingStored'))
      expect(metric.dimensions['platform']).toMatch(/^\d+$/);
  });

  it('writes one line per request, with its counts on it', () => {
    const requestLines = harness.output.lines
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((entry) => entry['message'] === 'sync request');
    expect(requestLines.length).toBeGreaterThan(20);
    // Compact: the request id, not what the log group says already (function name, ARN, memory).
    for (const entry of requestLines) {
      expect(typeof entry['function_request_id']).toBe('string');
      for (const key of ['function_arn', 'function_name', 'function_memory_size', 'service', 'sampling_rate'])
        expect(entry, key).not.toHaveProperty(key);
    }
    // A stored mapping that continued the chain: the mapping and the redirect on one line.
    expect(
      requestLines.some((entry) => entry['metric'] === 'MappingStored' && typeof entry['next'] === 'string'),
    ).toBe(true);
  });
});

import { TCString } from '@iabtcf/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type ConsentPolicy,
  type ConsentSignals,
  decodeConsent,
  evaluateConsent,
  MAX_CONSENT_SIGNAL_LENGTH,
} from '../../src/sync/consent.ts';
import { MAX_GPP_SECTIONS } from '../../src/sync/consent-bits.ts';
import {
  BitWriter,
  craftedTcString,
  gppWithTcfSection,
  overlappingRangesTcString,
  type RangeEntry,
} from '../support/consent-strings.ts';

/**
 * Crafted range sections against the bounded consent readers (src/sync/consent-bits.ts): whatever
 * the ranges say, the verdict is the one a reference reading of the same ranges gives, a string
 * whose ranges exceed their budget is refused with the over-budget reason, and nothing throws.
 * Seeded (FC_SEED / FC_NUM_RUNS override).
 */

const SEED = Number(process.env['FC_SEED'] ?? 20_261_130);
const NUM_RUNS = Number(process.env['FC_NUM_RUNS'] ?? 200);
const HOST = 1234;
const PARTNER = 4321;
const policy: ConsentPolicy = {
  hostVendorId: HOST,
  gdprAppliesWhenUnknown: false,
  honourGlobalPrivacyControl: true,
};
const gdpr = (gdprConsent: string): ConsentSignals => ({
  gdpr: '1',
  gdprConsent,
  globalPrivacyControl: false,
});
const gpp = (value: string): ConsentSignals => ({ gpp: value, gppSid: '2', globalPrivacyControl: false });

const widthOf = (range: RangeEntry) => (range.end ?? range.start) - range.start + 1;
const covers = (ranges: readonly RangeEntry[], id: number) =>
  ranges.some((range) => id >= range.start && id <= (range.end ?? range.start));

/** Ranges inside 1..max, possibly overlapping, sometimes around our vendor ids. */
function rangesWithin(max: number) {
  const ours = [HOST, PARTNER].filter((vendor) => vendor <= max);
  const id =
    ours.length > 0
      ? fc.oneof(fc.integer({ min: 1, max }), fc.constantFrom(...ours))
      : fc.integer({ min: 1, max });
  const entry = fc.oneof(
    id.map((start): RangeEntry => ({ start })),
    fc.tuple(id, id).map(([a, b]): RangeEntry => ({ start: Math.min(a, b), end: Math.max(a, b) })),
  );
  return fc.array(entry, { maxLength: 60 });
}

const tcfCase = fc.record({
  purposes: fc.subarray([1, 2, 3, 4, 7, 10]),
  maxVendorId: fc.oneof(fc.integer({ min: 1, max: 6000 }), fc.constant(65_535)),
});

describe('TCF v2 range sections (gdpr_consent and GPP section 2)', () => {
  it('decide exactly as a reference reading of the ranges, or refuse them as over budget', () => {
    fc.assert(
      fc.property(
        tcfCase.chain((base) =>
          fc.record({ base: fc.constant(base), ranges: rangesWithin(base.maxVendorId) }),
        ),
        ({ base, ranges }) => {
          const text = craftedTcString({ ...base, ranges });
          const covered = ranges.reduce((sum, range) => sum + widthOf(range), 0);
          const expected =
            covered > base.maxVendorId
              ? 'over_budget'
              : base.purposes.includes(1) && covers(ranges, HOST) && covers(ranges, PARTNER)
                ? 'allowed'
                : 'denied';
          const tcf = evaluateConsent(gdpr(text), policy, PARTNER);
          const viaGpp = evaluateConsent(gpp(gppWithTcfSection(text)), policy, PARTNER);
          const name = (verdict: typeof tcf) =>
            verdict.allowed ? 'allowed' : verdict.reason.replace(/^consent_(gdpr|gpp)_/, '');
          expect(name(tcf)).toBe(expected);
          expect(name(viaGpp)).toBe(expected);
        },
      ),
      { seed: SEED, numRuns: NUM_RUNS, endOnFailure: true },
    );
  });

  it("agree with the IAB's decoder on every string inside the budget", () => {
    fc.assert(
      fc.property(
        fc
          .integer({ min: 1, max: 3000 })
          .chain((max) => fc.record({ max: fc.constant(max), ranges: rangesWithin(max) })),
        fc.array(fc.integer({ min: 1, max: 3000 }), { minLength: 1, maxLength: 5 }),
        ({ max, ranges }, probes) => {
          fc.pre(ranges.reduce((sum, range) => sum + widthOf(range), 0) <= max);
          const text = craftedTcString({ purposes: [1], maxVendorId: max, ranges });
          const reference = TCString.decode(text);
          const decoded = decodeConsent(gdpr(text), { ...policy, hostVendorId: undefined }, probes);
          for (const vendor of probes) {
            expect(decoded.verdictFor(vendor).allowed).toBe(reference.vendorConsents.has(vendor));
          }
        },
      ),
      { seed: SEED, numRuns: NUM_RUNS, endOnFailure: true },
    );
  });

  it('refuse a section declaring more entries than it carries, before reading them', () => {
    fc.assert(
      fc.property(rangesWithin(65_535), fc.integer({ min: 1, max: 4095 }), (ranges, extra) => {
        const declared = Math.min(4095, ranges.length + extra);
        fc.pre(declared > ranges.length);
        const text = craftedTcString({
          purposes: [1],
          maxVendorId: 65_535,
          ranges,
          declaredEntries: declared,
        });
        const verdict = evaluateConsent(gdpr(text), policy, PARTNER);
        expect(verdict.allowed).toBe(false);
        expect(['consent_gdpr_over_budget', 'consent_gdpr_invalid', 'consent_gdpr_denied']).toContain(
          verdict.allowed ? '' : verdict.reason,
        );
      }),
      { seed: SEED, numRuns: NUM_RUNS, endOnFailure: true },
    );
  });

  it("refuse the issue's 4 KB string of overlapping 1-65535 ranges as over budget", () => {
    const crafted = overlappingRangesTcString(MAX_CONSENT_SIGNAL_LENGTH);
    expect(crafted.length).toBeLessThanOrEqual(MAX_CONSENT_SIGNAL_LENGTH);
    expect(evaluateConsent(gdpr(crafted), policy, PARTNER)).toEqual({
      allowed: false,
      reason: 'consent_gdpr_over_budget',
    });
    expect(evaluateConsent(gpp(gppWithTcfSection(crafted.slice(0, 4000))), policy, PARTNER)).toEqual({
      allowed: false,
      reason: 'consent_gpp_over_budget',
    });
  });
});

describe('GPP headers', () => {
  /** A header with the given entries (single ids, or ranges as [start offset, length]). */
  function header(entries: readonly (number | readonly [number, number])[]): string {
    const bits = new BitWriter().int(3, 6).int(1, 6).int(entries.length, 12);
    for (const entry of entries) {
      if (typeof entry === 'number') bits.int(0, 1).fibonacci(entry);
      else bits.int(1, 1).fibonacci(entry[0]).fibonacci(entry[1]);
    }
    return bits.toBase64Url();
  }

  it('never expand a range into more sections than the budget, and never throw', () => {
    const entry = fc.oneof(
      fc.integer({ min: 1, max: 1_000_000 }),
      fc.tuple(fc.integer({ min: 1, max: 1_000_000 }), fc.integer({ min: 1, max: 100_000_000 })),
    );
    fc.assert(
      fc.property(
        fc.array(entry, { minLength: 1, maxLength: 40 }),
        fc.array(fc.constant('CA'), { maxLength: 3 }),
        (entries, sections) => {
          const verdict = evaluateConsent(
            { gpp: [header(entries), ...sections].join('~'), globalPrivacyControl: false },
            policy,
            PARTNER,
          );
          expect(verdict.allowed === false ? verdict.reason : 'allowed').toMatch(
            /^(consent_gpp_(invalid|over_budget|optout|denied)|allowed)$/,
          );
        },
      ),
      { seed: SEED, numRuns: NUM_RUNS, endOnFailure: true },
    );
  });

  it('refuse more sections than the budget as over budget', () => {
    const many = header([[1, MAX_GPP_SECTIONS + 5]]);
    expect(evaluateConsent({ gpp: `${many}~x`, globalPrivacyControl: false }, policy)).toEqual({
      allowed: false,
      reason: 'consent_gpp_over_budget',
    });
  });
});

describe('any string up to the length limit', () => {
  it('gets a verdict, never an exception', () => {
    const base64url = fc.string({
      unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~'),
      maxLength: MAX_CONSENT_SIGNAL_LENGTH,
    });
    fc.assert(
      fc.property(base64url, base64url, (tcf, gppText) => {
        expect(() => evaluateConsent(gdpr(tcf), policy, PARTNER)).not.toThrow();
        expect(() => evaluateConsent(gpp(gppText), policy, PARTNER)).not.toThrow();
        expect(() => evaluateConsent(gpp(`DBABMA~${tcf}`), policy, PARTNER)).not.toThrow();
      }),
      { seed: SEED, numRuns: NUM_RUNS, endOnFailure: true },
    );
  });
});

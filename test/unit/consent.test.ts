import { GppModel } from '@iabgpp/cmpapi';
import { TCString } from '@iabtcf/core';
import { describe, expect, it } from 'vitest';
import {
  type ConsentPolicy,
  type ConsentSignals,
  evaluateConsent,
  MAX_CONSENT_SIGNAL_LENGTH,
  readConsentSignals,
} from '../../src/sync/consent.ts';
import { GPP_SID, gppString, tcString } from '../support/consent-strings.ts';

const HOST = 1234;
const PARTNER = 4321;

const POLICY: ConsentPolicy = {
  hostVendorId: HOST,
  gdprAppliesWhenUnknown: false,
  honourGlobalPrivacyControl: true,
};

const FULL_TCF = tcString({ purposes: [1, 2, 3, 4], vendors: [HOST, PARTNER] });
const NO_PURPOSE_1 = tcString({ purposes: [2, 3, 4], vendors: [HOST, PARTNER] });
const NO_HOST = tcString({ purposes: [1], vendors: [PARTNER] });
const NO_PARTNER = tcString({ purposes: [1], vendors: [HOST] });

const GPP_TCF_FULL = gppString({ tcfeuv2: { purposes: [1, 2], vendors: [HOST, PARTNER] } });
const GPP_TCF_NO_PURPOSE_1 = gppString({ tcfeuv2: { purposes: [2], vendors: [HOST, PARTNER] } });
const GPP_TCF_NO_PARTNER = gppString({ tcfeuv2: { purposes: [1], vendors: [HOST] } });

function signals(overrides: Partial<ConsentSignals> = {}): ConsentSignals {
  return { globalPrivacyControl: false, ...overrides };
}

const decide = (overrides: Partial<ConsentSignals>, policy: ConsentPolicy = POLICY) =>
  evaluateConsent(signals(overrides), policy, PARTNER);

const refused = (reason: string) => ({ allowed: false, reason });

describe('test consent strings', () => {
  it('decode with the IAB libraries to what the tests claim', () => {
    const full = TCString.decode(FULL_TCF);
    expect([...full.purposeConsents.values()]).toEqual([1, 2, 3, 4]);
    expect([...full.vendorConsents.values()]).toEqual([HOST, PARTNER]);
    expect(full.cmpId).toBeGreaterThan(0);
    expect([...TCString.decode(NO_PARTNER).vendorConsents.values()]).toEqual([HOST]);

    const gpp = new GppModel(GPP_TCF_FULL);
    expect(gpp.getSectionIds()).toEqual([GPP_SID.tcfeuv2]);
    expect(gpp.getFieldValue('tcfeuv2', 'VendorConsents')).toEqual([HOST, PARTNER]);
    expect(new GppModel(gppString({ usnat: { saleOptOut: 1 } })).getFieldValue('usnat', 'SaleOptOut')).toBe(
      1,
    );
  });

  it('are stable from one day to the next', () => {
    expect(tcString({ purposes: [1, 2, 3, 4], vendors: [HOST, PARTNER] })).toBe(FULL_TCF);
    expect(gppString({ tcfeuv2: { purposes: [1, 2], vendors: [HOST, PARTNER] } })).toBe(GPP_TCF_FULL);
  });
});

describe('readConsentSignals', () => {
  it('reads the consent parameters of the query', () => {
    const read = readConsentSignals(
      { gdpr: '1', gdpr_consent: FULL_TCF, us_privacy: '1YNN', gpp: GPP_TCF_FULL, gpp_sid: '2', other: 'x' },
      {},
    );
    expect(read).toEqual({
      gdpr: '1',
      gdprConsent: FULL_TCF,
      usPrivacy: '1YNN',
      gpp: GPP_TCF_FULL,
      gppSid: '2',
      globalPrivacyControl: false,
    });
  });

  it.each([
    ['1', true],
    [' 1 ', true],
    ['0', false],
    ['true', false],
    [undefined, false],
  ])('reads Sec-GPC %j as %s', (value, expected) => {
    expect(readConsentSignals({}, { 'sec-gpc': value }).globalPrivacyControl).toBe(expected);
  });
});

describe('Global Privacy Control', () => {
  it('refuses a browser sending Sec-GPC: 1, whatever else it consented to', () => {
    expect(decide({ globalPrivacyControl: true })).toEqual(refused('consent_gpc'));
    expect(decide({ globalPrivacyControl: true, gdpr: '1', gdprConsent: FULL_TCF })).toEqual(
      refused('consent_gpc'),
    );
    expect(decide({ globalPrivacyControl: true, gdpr: '0' })).toEqual(refused('consent_gpc'));
  });

  it('is ignored where the environment does not honour it', () => {
    const policy = { ...POLICY, honourGlobalPrivacyControl: false };
    expect(decide({ globalPrivacyControl: true }, policy)).toEqual({
      allowed: true,
      basis: 'no_gdpr_signal',
    });
    expect(decide({ globalPrivacyControl: true, gdpr: '1', gdprConsent: FULL_TCF }, policy)).toEqual({
      allowed: true,
      basis: 'tcf_v2',
    });
  });
});

describe('GDPR (gdpr + gdpr_consent, TCF v2)', () => {
  it('allows when purpose 1 and both vendors are granted', () => {
    expect(decide({ gdpr: '1', gdprConsent: FULL_TCF })).toEqual({ allowed: true, basis: 'tcf_v2' });
  });

  it('refuses gdpr=1 without a consent string', () => {
    expect(decide({ gdpr: '1' })).toEqual(refused('consent_gdpr_missing'));
    expect(decide({ gdpr: '1', gdprConsent: '' })).toEqual(refused('consent_gdpr_missing'));
  });

  it.each([
    ['garbage', 'garbage'],
    ['a TCF v1 string', 'BOEFEAyOEFEAyAHABDENAI4AAAB9vABAASA'],
    ['a truncated string', FULL_TCF.slice(0, 2)],
    ['invalid base64url', '!!!!'],
    ['a GPP string', GPP_TCF_FULL],
  ])('refuses a consent string that does not decode: %s', (_, gdprConsent) => {
    expect(decide({ gdpr: '1', gdprConsent })).toEqual(refused('consent_gdpr_invalid'));
  });

  it('refuses without purpose 1 (store and/or access information on a device)', () => {
    expect(decide({ gdpr: '1', gdprConsent: NO_PURPOSE_1 })).toEqual(refused('consent_gdpr_denied'));
  });

  it('refuses without consent for our own vendor id', () => {
    expect(decide({ gdpr: '1', gdprConsent: NO_HOST })).toEqual(refused('consent_gdpr_denied'));
  });

  it("refuses without consent for the partner's vendor id", () => {
    expect(decide({ gdpr: '1', gdprConsent: NO_PARTNER })).toEqual(refused('consent_gdpr_denied'));
  });

  it('checks only purpose 1 when no vendor ids are configured', () => {
    const policy = { ...POLICY, hostVendorId: undefined };
    const onlyPurpose = tcString({ purposes: [1], vendors: [] });
    expect(evaluateConsent(signals({ gdpr: '1', gdprConsent: onlyPurpose }), policy)).toEqual({
      allowed: true,
      basis: 'tcf_v2',
    });
    expect(evaluateConsent(signals({ gdpr: '1', gdprConsent: NO_PURPOSE_1 }), policy)).toEqual(
      refused('consent_gdpr_denied'),
    );
  });

  it('allows gdpr=0, without looking at any consent string', () => {
    expect(decide({ gdpr: '0' })).toEqual({ allowed: true, basis: 'gdpr_not_applicable' });
    expect(decide({ gdpr: '0', gdprConsent: 'garbage' })).toEqual({
      allowed: true,
      basis: 'gdpr_not_applicable',
    });
  });

  it('without any gdpr signal, allows where GDPR is assumed not to apply', () => {
    expect(decide({})).toEqual({ allowed: true, basis: 'no_gdpr_signal' });
    expect(decide({ gdpr: '' })).toEqual({ allowed: true, basis: 'no_gdpr_signal' });
  });

  it('without any gdpr signal, requires consent where GDPR is assumed to apply', () => {
    const policy = { ...POLICY, gdprAppliesWhenUnknown: true };
    expect(decide({}, policy)).toEqual(refused('consent_gdpr_missing'));
    expect(decide({ gdprConsent: FULL_TCF }, policy)).toEqual({ allowed: true, basis: 'tcf_v2' });
    expect(decide({ gdprConsent: NO_PARTNER }, policy)).toEqual(refused('consent_gdpr_denied'));
    expect(decide({ gdpr: '0' }, policy)).toEqual({ allowed: true, basis: 'gdpr_not_applicable' });
  });

  it.each(['2', 'true', 'yes', '01', ' 1', '-1'])('refuses the invalid gdpr value %j', (gdpr) => {
    expect(decide({ gdpr, gdprConsent: FULL_TCF })).toEqual(refused('consent_gdpr_invalid'));
  });
});

describe('US Privacy (us_privacy, CCPA)', () => {
  it.each(['1YYN', '1NYN', '1-YY', '1yyn'])('refuses the opt-out of sale %s', (usPrivacy) => {
    expect(decide({ usPrivacy })).toEqual(refused('consent_us_privacy_optout'));
  });

  it.each(['1YNN', '1---', '1NNY', '1ynn'])('allows %s', (usPrivacy) => {
    expect(decide({ usPrivacy })).toEqual({ allowed: true, basis: 'no_gdpr_signal' });
  });

  it.each(['garbage', '2YNN', '1YN', '1YNNN', '1XNN', '1 NN'])(
    'refuses the invalid string %j',
    (usPrivacy) => {
      expect(decide({ usPrivacy })).toEqual(refused('consent_us_privacy_invalid'));
    },
  );

  it('refuses an opt-out of sale even with full TCF consent', () => {
    expect(decide({ gdpr: '1', gdprConsent: FULL_TCF, usPrivacy: '1YYN' })).toEqual(
      refused('consent_us_privacy_optout'),
    );
  });

  it('keeps the TCF basis when us_privacy does not object', () => {
    expect(decide({ gdpr: '1', gdprConsent: FULL_TCF, usPrivacy: '1YNN' })).toEqual({
      allowed: true,
      basis: 'tcf_v2',
    });
  });
});

describe('GPP (gpp + gpp_sid)', () => {
  it('allows a TCF EU v2 section granting purpose 1 to both vendors', () => {
    expect(decide({ gpp: GPP_TCF_FULL, gppSid: '2' })).toEqual({ allowed: true, basis: 'gpp_tcfeuv2' });
  });

  it('wins over gdpr params: a good GPP TCF section allows despite a bad gdpr_consent', () => {
    expect(decide({ gdpr: '1', gdprConsent: 'garbage', gpp: GPP_TCF_FULL, gppSid: '2' })).toEqual({
      allowed: true,
      basis: 'gpp_tcfeuv2',
    });
  });

  it('wins over gdpr params: a GPP TCF section without purpose 1 refuses despite a good gdpr_consent', () => {
    expect(decide({ gdpr: '1', gdprConsent: FULL_TCF, gpp: GPP_TCF_NO_PURPOSE_1, gppSid: '2' })).toEqual(
      refused('consent_gpp_denied'),
    );
  });

  it("refuses a GPP TCF section without the partner's vendor", () => {
    expect(decide({ gpp: GPP_TCF_NO_PARTNER, gppSid: '2' })).toEqual(refused('consent_gpp_denied'));
  });

  it('refuses when gpp_sid names the TCF section but the string has none', () => {
    const usnatOnly = gppString({ usnat: { saleOptOut: 2 } });
    expect(decide({ gpp: usnatOnly, gppSid: '2' })).toEqual(refused('consent_gpp_invalid'));
  });

  it.each([
    ['SaleOptOut', { saleOptOut: 1 }],
    ['SharingOptOut', { sharingOptOut: 1 }],
    ['TargetedAdvertisingOptOut', { targetedAdvertisingOptOut: 1 }],
  ] as const)('refuses a US national section recording %s = 1 (opted out)', (_, usnat) => {
    expect(decide({ gpp: gppString({ usnat }), gppSid: '7' })).toEqual(refused('consent_gpp_optout'));
  });

  it('allows a US national section recording no opt-out (2) or not applicable (0)', () => {
    expect(decide({ gpp: gppString({ usnat: { saleOptOut: 2 } }), gppSid: '7' })).toEqual({
      allowed: true,
      basis: 'no_gdpr_signal',
    });
    expect(decide({ gpp: gppString({ usnat: { saleOptOut: 0, sharingOptOut: 0 } }), gppSid: '7' })).toEqual({
      allowed: true,
      basis: 'no_gdpr_signal',
    });
  });

  it('refuses a US opt-out even when a TCF section in the same string consents', () => {
    const both = gppString({
      tcfeuv2: { purposes: [1], vendors: [HOST, PARTNER] },
      usnat: { saleOptOut: 1 },
    });
    expect(decide({ gpp: both, gppSid: '2,7' })).toEqual(refused('consent_gpp_optout'));
    expect(decide({ gpp: both, gppSid: '7_2' })).toEqual(refused('consent_gpp_optout'));
  });

  it('applies only the sections gpp_sid names', () => {
    const both = gppString({
      tcfeuv2: { purposes: [1], vendors: [HOST, PARTNER] },
      usnat: { saleOptOut: 1 },
    });
    expect(decide({ gpp: both, gppSid: '2' })).toEqual({ allowed: true, basis: 'gpp_tcfeuv2' });
  });

  it('refuses a US Privacy section in GPP recording an opt-out of sale', () => {
    const optOut = gppString({ uspv1: { notice: 'Y', optOutSale: 'Y', lspaCovered: 'N' } });
    const noOptOut = gppString({ uspv1: { notice: 'Y', optOutSale: 'N', lspaCovered: 'N' } });
    expect(decide({ gpp: optOut, gppSid: '6' })).toEqual(refused('consent_gpp_optout'));
    expect(decide({ gpp: noOptOut, gppSid: '6' })).toEqual({ allowed: true, basis: 'no_gdpr_signal' });
  });

  it('falls through to the gdpr params when GPP carries no TCF section', () => {
    const usnat = gppString({ usnat: { saleOptOut: 2 } });
    expect(decide({ gpp: usnat, gppSid: '7', gdpr: '1', gdprConsent: NO_PARTNER })).toEqual(
      refused('consent_gdpr_denied'),
    );
    expect(decide({ gpp: usnat, gppSid: '7', gdpr: '1', gdprConsent: FULL_TCF })).toEqual({
      allowed: true,
      basis: 'tcf_v2',
    });
  });

  it.each([
    ['garbage', '2'],
    ['garbage', '7'],
    ['garbage', undefined],
    ['DBABM~', '2'],
    ['~~~', '2'],
    ['DBABzw~1YNN', '6'],
    [`${GPP_TCF_FULL}~extra`, '2'],
  ])('refuses the malformed gpp string %j (gpp_sid %j)', (gpp, gppSid) => {
    expect(decide({ gpp, gppSid })).toEqual(refused('consent_gpp_invalid'));
  });

  it.each(['x', '2,', ',2', '2;7', '2 7', '-2', '1234', Array.from({ length: 33 }, () => '2').join(',')])(
    'refuses the malformed gpp_sid %j',
    (gppSid) => {
      expect(decide({ gpp: GPP_TCF_FULL, gppSid })).toEqual(refused('consent_gpp_invalid'));
    },
  );

  // The header names the section, but its content does not decode: that is no signal we can
  // read, so it must count as no consent, never as consent.
  it('refuses a US national section that does not decode', () => {
    expect(decide({ gpp: 'DBABLA~garbage', gppSid: '7' })).toEqual(refused('consent_gpp_invalid'));
  });

  it('refuses a US Privacy section in GPP that does not decode', () => {
    expect(decide({ gpp: 'DBABTA~xyz', gppSid: '6' })).toEqual(refused('consent_gpp_invalid'));
  });

  it('ignores an empty gpp parameter', () => {
    expect(decide({ gpp: '', gppSid: '2', gdpr: '1', gdprConsent: FULL_TCF })).toEqual({
      allowed: true,
      basis: 'tcf_v2',
    });
  });
});

describe('signal size', () => {
  const oversize = 'A'.repeat(MAX_CONSENT_SIGNAL_LENGTH + 1);

  it.each([
    ['gdpr', { gdpr: oversize }],
    ['gdpr_consent', { gdpr: '1', gdprConsent: oversize }],
    ['us_privacy', { usPrivacy: oversize }],
    ['gpp', { gpp: oversize, gppSid: '2' }],
    ['gpp_sid', { gpp: GPP_TCF_FULL, gppSid: oversize }],
  ])('refuses an oversize %s before parsing it', (_, overrides) => {
    expect(decide(overrides)).toEqual(refused('consent_signal_too_long'));
  });

  it('parses a string of exactly the maximum length', () => {
    const atLimit = 'A'.repeat(MAX_CONSENT_SIGNAL_LENGTH);
    expect(decide({ gdpr: '1', gdprConsent: atLimit })).not.toEqual(refused('consent_signal_too_long'));
  });

  it('refuses an oversize signal even when gdpr=0', () => {
    expect(decide({ gdpr: '0', gdprConsent: oversize })).toEqual(refused('consent_signal_too_long'));
  });
});

import { GppModel } from '@iabgpp/cmpapi';
import type { Vendor, VendorList } from '@iabtcf/core';
import { GVL, TCModel, TCString } from '@iabtcf/core';

/**
 * Real consent strings for tests, encoded offline with the IAB's own libraries (no GVL download).
 * Every builder decodes what it encoded and throws when the result does not say what was asked,
 * so a test never runs on a string that silently lost a vendor or a purpose.
 */

/** A fixed date, so that encoded strings do not change with the day the tests run. */
const FIXED_DATE = new Date('2026-01-01T00:00:00Z');

/** A CMP id registered with the IAB (must be > 0 for a valid string). */
const TEST_CMP_ID = 7;

function gvlVendor(id: number): Vendor {
  return {
    id,
    name: `Test vendor ${id}`,
    purposes: [1],
    legIntPurposes: [],
    flexiblePurposes: [],
    specialPurposes: [],
    features: [],
    specialFeatures: [],
    policyUrl: `https://vendor-${id}.example/privacy`,
    usesCookies: true,
    cookieMaxAgeSeconds: 31_536_000,
    cookieRefresh: false,
    usesNonCookieAccess: false,
  };
}

/** An offline Global Vendor List naming exactly the vendors a test uses (encode drops others). */
export function offlineGvl(vendorIds: readonly number[]): GVL {
  const purposes: VendorList['purposes'] = {};
  for (let id = 1; id <= 11; id++) {
    purposes[id] = { id, name: `Purpose ${id}`, description: '', descriptionLegal: '' };
  }
  const vendors: VendorList['vendors'] = {};
  for (const id of vendorIds) vendors[id] = gvlVendor(id);
  return new GVL({
    gvlSpecificationVersion: 3,
    vendorListVersion: 100,
    tcfPolicyVersion: 5,
    lastUpdated: '2026-01-01T00:00:00Z',
    purposes,
    specialPurposes: {},
    features: {},
    specialFeatures: {},
    vendors,
    stacks: {},
  });
}

export interface TcfConsent {
  /** Purposes the user consented to (1 = store and/or access information on a device). */
  readonly purposes: readonly number[];
  /** Vendors the user consented to. */
  readonly vendors: readonly number[];
}

function sameSet(actual: Iterable<number>, expected: readonly number[]): boolean {
  const a = [...new Set(actual)].sort((x, y) => x - y);
  const b = [...new Set(expected)].sort((x, y) => x - y);
  return a.length === b.length && a.every((value, index) => value === b[index]);
}

/** A TCF v2 consent string (the `gdpr_consent` parameter). */
export function tcString(consent: TcfConsent): string {
  const model = new TCModel(offlineGvl(consent.vendors));
  model.cmpId = TEST_CMP_ID;
  model.cmpVersion = 1;
  model.consentScreen = 1;
  model.purposeConsents.set([...consent.purposes]);
  model.vendorConsents.set([...consent.vendors]);
  model.created = FIXED_DATE;
  model.lastUpdated = FIXED_DATE;
  const encoded = TCString.encode(model);
  const decoded = TCString.decode(encoded);
  if (
    decoded.cmpId !== TEST_CMP_ID ||
    !sameSet(decoded.purposeConsents.values(), consent.purposes) ||
    !sameSet(decoded.vendorConsents.values(), consent.vendors)
  ) {
    throw new Error(`tcString: ${encoded} does not decode to ${JSON.stringify(consent)}`);
  }
  return encoded;
}

/** GPP's values in US sections: 0 = not applicable, 1 = opted out, 2 = did not opt out. */
export type UsOptOut = 0 | 1 | 2;

export interface UsNatSignals {
  readonly saleOptOut?: UsOptOut;
  readonly sharingOptOut?: UsOptOut;
  readonly targetedAdvertisingOptOut?: UsOptOut;
}

export interface UspV1Signals {
  readonly notice: 'Y' | 'N' | '-';
  readonly optOutSale: 'Y' | 'N' | '-';
  readonly lspaCovered: 'Y' | 'N' | '-';
}

export interface GppSections {
  /** Section 2, TCF EU v2. */
  readonly tcfeuv2?: TcfConsent;
  /** Section 6, the US Privacy string carried in GPP. */
  readonly uspv1?: UspV1Signals;
  /** Section 7, US national. */
  readonly usnat?: UsNatSignals;
}

export const GPP_SID = { tcfeuv2: 2, uspv1: 6, usnat: 7 } as const;

/** A GPP string (the `gpp` parameter) holding the given sections. */
export function gppString(sections: GppSections): string {
  const model = new GppModel();
  if (sections.tcfeuv2) {
    const purposes = Array.from({ length: 24 }, (_, index) => sections.tcfeuv2?.purposes.includes(index + 1));
    model.setFieldValue('tcfeuv2', 'CmpId', TEST_CMP_ID);
    model.setFieldValue('tcfeuv2', 'CmpVersion', 1);
    model.setFieldValue('tcfeuv2', 'VendorListVersion', 100);
    model.setFieldValue('tcfeuv2', 'PurposeConsents', purposes);
    model.setFieldValue('tcfeuv2', 'VendorConsents', [...sections.tcfeuv2.vendors]);
    // Last: any other field stamps today's date on the section.
    model.setFieldValue('tcfeuv2', 'Created', FIXED_DATE);
  }
  if (sections.uspv1) {
    model.setFieldValue('uspv1', 'Notice', sections.uspv1.notice);
    model.setFieldValue('uspv1', 'OptOutSale', sections.uspv1.optOutSale);
    model.setFieldValue('uspv1', 'LspaCovered', sections.uspv1.lspaCovered);
  }
  if (sections.usnat) {
    model.setFieldValue('usnat', 'SaleOptOutNotice', 1);
    model.setFieldValue('usnat', 'SharingOptOutNotice', 1);
    model.setFieldValue('usnat', 'TargetedAdvertisingOptOutNotice', 1);
    model.setFieldValue('usnat', 'SaleOptOut', sections.usnat.saleOptOut ?? 2);
    model.setFieldValue('usnat', 'SharingOptOut', sections.usnat.sharingOptOut ?? 2);
    model.setFieldValue('usnat', 'TargetedAdvertisingOptOut', sections.usnat.targetedAdvertisingOptOut ?? 2);
  }
  const encoded = model.encode();
  verifyGpp(encoded, sections);
  return encoded;
}

function verifyGpp(encoded: string, sections: GppSections): void {
  const back = new GppModel(encoded);
  const fail = (what: string) => {
    throw new Error(`gppString: ${encoded} does not decode to the requested ${what}`);
  };
  if (sections.tcfeuv2) {
    const purposes = back.getFieldValue('tcfeuv2', 'PurposeConsents') as boolean[];
    const granted = purposes.flatMap((given, index) => (given ? [index + 1] : []));
    if (!sameSet(granted, sections.tcfeuv2.purposes)) fail('tcfeuv2 purposes');
    if (!sameSet(back.getFieldValue('tcfeuv2', 'VendorConsents') as number[], sections.tcfeuv2.vendors)) {
      fail('tcfeuv2 vendors');
    }
  }
  if (sections.uspv1 && back.getFieldValue('uspv1', 'OptOutSale') !== sections.uspv1.optOutSale) {
    fail('uspv1 OptOutSale');
  }
  if (sections.usnat && back.getFieldValue('usnat', 'SaleOptOut') !== (sections.usnat.saleOptOut ?? 2)) {
    fail('usnat SaleOptOut');
  }
}

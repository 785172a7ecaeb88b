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

// ---------------------------------------------------------------------------------------------
// Hand-crafted strings: what an attacker (or a broken CMP) can send, bit by bit.

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** Writes bit fields and ends as base64url (zero-padded to a multiple of 6 bits). */
export class BitWriter {
  private readonly bits: number[] = [];
  int(value: number, width: number): this {
    for (let bit = width - 1; bit >= 0; bit--) this.bits.push(Math.floor(value / 2 ** bit) % 2);
    return this;
  }
  fibonacci(value: number): this {
    const weights = [1, 2];
    while ((weights.at(-1) as number) + (weights.at(-2) as number) <= value)
      weights.push((weights.at(-1) as number) + (weights.at(-2) as number));
    const code = weights.map(() => 0);
    let rest = value;
    for (let index = weights.length - 1; index >= 0; index--) {
      if ((weights[index] as number) <= rest) {
        code[index] = 1;
        rest -= weights[index] as number;
      }
    }
    while (code.length > 1 && code.at(-1) === 0) code.pop();
    this.bits.push(...code, 1);
    return this;
  }
  get length(): number {
    return this.bits.length;
  }
  toBase64Url(): string {
    let text = '';
    for (let index = 0; index < this.bits.length; index += 6) {
      let value = 0;
      for (let bit = 0; bit < 6; bit++) value = value * 2 + (this.bits[index + bit] ?? 0);
      text += BASE64URL[value];
    }
    return text;
  }
}

/** One vendor-section range entry: a single id when `end` is absent. */
export interface RangeEntry {
  readonly start: number;
  readonly end?: number;
}

export interface CraftedTcf {
  readonly purposes: readonly number[];
  readonly maxVendorId: number;
  readonly ranges: readonly RangeEntry[];
  /** Entries the section declares (default: ranges.length); more than are written is a lie. */
  readonly declaredEntries?: number;
}

/**
 * A TCF v2 core string whose vendor consent section is range-encoded exactly as given (no
 * sorting, merging or checks), followed by an empty legitimate-interest section and no publisher
 * restrictions: the IAB decoder reads it like any other string.
 */
export function craftedTcString(crafted: CraftedTcf): string {
  const seconds = FIXED_DATE.getTime() / 100;
  const bits = new BitWriter()
    .int(2, 6)
    .int(seconds, 36)
    .int(seconds, 36)
    .int(TEST_CMP_ID, 12)
    .int(1, 12)
    .int(1, 6)
    .int(4 * 64 + 13, 12) // EN
    .int(100, 12)
    .int(4, 6)
    .int(0, 1)
    .int(0, 1)
    .int(0, 12);
  for (let purpose = 1; purpose <= 24; purpose++) bits.int(crafted.purposes.includes(purpose) ? 1 : 0, 1);
  bits.int(0, 24).int(0, 1).int(0, 12); // no legitimate interests, purpose one treatment, country AA
  bits
    .int(crafted.maxVendorId, 16)
    .int(1, 1)
    .int(crafted.declaredEntries ?? crafted.ranges.length, 12);
  for (const range of crafted.ranges) {
    if (range.end === undefined) bits.int(0, 1).int(range.start, 16);
    else bits.int(1, 1).int(range.start, 16).int(range.end, 16);
  }
  bits.int(0, 16).int(0, 1).int(0, 12); // vendor legitimate interests: none; publisher restrictions: none
  return bits.toBase64Url();
}

/**
 * The attack: as many entries as fit in `maxChars`, each covering vendors 1-65535
 * (tens of millions of ids for a decoder that expands ranges).
 */
export function overlappingRangesTcString(maxChars = 4096): string {
  const entries = Math.floor((maxChars * 6 - 300) / 33);
  return craftedTcString({
    purposes: [1],
    maxVendorId: 65_535,
    ranges: Array.from({ length: Math.min(entries, 4095) }, () => ({ start: 1, end: 65_535 })),
  });
}

/** A GPP string carrying one TCF EU v2 section (`gpp_sid=2`): the header `DBABMA`. */
export function gppWithTcfSection(section: string): string {
  return `DBABMA~${section}`;
}

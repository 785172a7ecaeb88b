import { GppModel } from '@iabgpp/cmpapi';
import { TCString } from '@iabtcf/core';

/**
 * Consent and privacy signals of a sync request. No consent means no mapping and no redirect to
 * a partner. Rules, in order (the first that speaks decides):
 *
 * 1. `Sec-GPC: 1` (Global Privacy Control) is an opt-out of sale/sharing, where honoured.
 * 2. GPP (`gpp` + `gpp_sid`) wins over the older signals: its TCF EU v2 section must grant
 *    purpose 1 to us and to the partner; its US sections must not record an opt-out of sale,
 *    sharing or targeted advertising; its USP v1 section must not record an opt-out of sale.
 * 3. `gdpr=1` needs a TCF v2 string (`gdpr_consent`) granting purpose 1 (store/access
 *    information on a device) and consent for our vendor id and the partner's, where configured.
 *    Without a `gdpr` signal the environment's `gdprAppliesWhenUnknown` decides.
 * 4. `us_privacy` (CCPA USP v1) with an opt-out of sale (`1?Y?`) refuses.
 *
 * Strings are decoded with the IAB's own libraries (@iabtcf/core, @iabgpp/cmpapi); a string that
 * does not decode counts as no consent, never as consent.
 */

export interface ConsentSignals {
  readonly gdpr?: string | undefined;
  readonly gdprConsent?: string | undefined;
  readonly usPrivacy?: string | undefined;
  readonly gpp?: string | undefined;
  readonly gppSid?: string | undefined;
  readonly globalPrivacyControl: boolean;
}

export interface ConsentPolicy {
  readonly hostVendorId?: number | undefined;
  readonly gdprAppliesWhenUnknown: boolean;
  readonly honourGlobalPrivacyControl: boolean;
}

export type ConsentRejection =
  | 'consent_signal_too_long'
  | 'consent_gpc'
  | 'consent_gpp_invalid'
  | 'consent_gpp_denied'
  | 'consent_gpp_optout'
  | 'consent_gdpr_invalid'
  | 'consent_gdpr_missing'
  | 'consent_gdpr_denied'
  | 'consent_us_privacy_invalid'
  | 'consent_us_privacy_optout';

export type ConsentVerdict =
  | { readonly allowed: true; readonly basis: string }
  | { readonly allowed: false; readonly reason: ConsentRejection };

/** Consent strings are at most a few kilobytes; anything longer is refused, not parsed. */
export const MAX_CONSENT_SIGNAL_LENGTH = 4096;

const GPP_SECTION_TCF_EU_V2 = 2;
const GPP_SECTION_USP_V1 = 6;
const US_OPT_OUT_FIELDS = ['SaleOptOut', 'SharingOptOut', 'TargetedAdvertisingOptOut'] as const;
/** GPP's value for "opted out" in US sections (0 = not applicable, 2 = did not opt out). */
const GPP_OPTED_OUT = 1;
const PURPOSE_STORE_AND_ACCESS = 1;

export function readConsentSignals(
  query: Readonly<Record<string, string | undefined>>,
  headers: Readonly<Record<string, string | undefined>>,
): ConsentSignals {
  return {
    gdpr: query['gdpr'],
    gdprConsent: query['gdpr_consent'],
    usPrivacy: query['us_privacy'],
    gpp: query['gpp'],
    gppSid: query['gpp_sid'],
    globalPrivacyControl: headers['sec-gpc']?.trim() === '1',
  };
}

/**
 * Decides for one partner. `partnerVendorId` is the partner's IAB vendor id, when known.
 */
export function evaluateConsent(
  signals: ConsentSignals,
  policy: ConsentPolicy,
  partnerVendorId?: number,
): ConsentVerdict {
  const texts = [signals.gdpr, signals.gdprConsent, signals.usPrivacy, signals.gpp, signals.gppSid];
  if (texts.some((text) => text !== undefined && text.length > MAX_CONSENT_SIGNAL_LENGTH)) {
    return { allowed: false, reason: 'consent_signal_too_long' };
  }
  if (policy.honourGlobalPrivacyControl && signals.globalPrivacyControl)
    return { allowed: false, reason: 'consent_gpc' };

  const vendors = [policy.hostVendorId, partnerVendorId].filter((id): id is number => id !== undefined);

  if (signals.gpp !== undefined && signals.gpp !== '') {
    const gppVerdict = evaluateGpp(signals.gpp, signals.gppSid, vendors);
    if (gppVerdict) return gppVerdict;
  }

  const gdprVerdict = evaluateGdpr(signals, policy, vendors);
  if (!gdprVerdict.allowed) return gdprVerdict;

  if (signals.usPrivacy !== undefined && signals.usPrivacy !== '') {
    if (!/^1[YNyn-][YNyn-][YNyn-]$/.test(signals.usPrivacy))
      return { allowed: false, reason: 'consent_us_privacy_invalid' };
    if (signals.usPrivacy[2]?.toUpperCase() === 'Y')
      return { allowed: false, reason: 'consent_us_privacy_optout' };
  }
  return gdprVerdict;
}

/** Returns a verdict when GPP decides (a TCF section), a refusal, or undefined to fall through. */
function evaluateGpp(
  gpp: string,
  gppSid: string | undefined,
  vendors: readonly number[],
): ConsentVerdict | undefined {
  const sids = parseSectionIds(gppSid);
  if (sids === undefined) return { allowed: false, reason: 'consent_gpp_invalid' };
  let model: GppModel;
  try {
    model = new GppModel(gpp);
  } catch {
    return { allowed: false, reason: 'consent_gpp_invalid' };
  }
  let present: number[];
  try {
    present = model.getSectionIds();
  } catch {
    return { allowed: false, reason: 'consent_gpp_invalid' };
  }
  // Without gpp_sid every section the string carries applies; a listed section must be there.
  const applicable = sids.length > 0 ? sids : present;
  if (!applicable.every((sid) => present.includes(sid)))
    return { allowed: false, reason: 'consent_gpp_invalid' };
  for (const sid of applicable) {
    if (sid === GPP_SECTION_TCF_EU_V2) continue;
    const fields = sid === GPP_SECTION_USP_V1 ? (['OptOutSale'] as const) : US_OPT_OUT_FIELDS;
    const optedOutValue = sid === GPP_SECTION_USP_V1 ? 'Y' : GPP_OPTED_OUT;
    let readable = 0;
    for (const field of fields) {
      let value: unknown;
      try {
        value = model.getFieldValueBySectionId(sid, field);
      } catch {
        continue; // a field this section does not have, or a section that does not decode
      }
      readable++;
      if (value === optedOutValue) return { allowed: false, reason: 'consent_gpp_optout' };
    }
    // A section we cannot read (undecodable, or of a kind we do not know) is no consent.
    if (readable === 0) return { allowed: false, reason: 'consent_gpp_invalid' };
  }
  if (applicable.includes(GPP_SECTION_TCF_EU_V2)) {
    const purposes = safe(() => model.getFieldValue('tcfeuv2', 'PurposeConsents')) as boolean[] | undefined;
    const vendorConsents = safe(() => model.getFieldValue('tcfeuv2', 'VendorConsents')) as
      | number[]
      | undefined;
    if (!Array.isArray(purposes) || !Array.isArray(vendorConsents))
      return { allowed: false, reason: 'consent_gpp_invalid' };
    if (purposes[PURPOSE_STORE_AND_ACCESS - 1] !== true)
      return { allowed: false, reason: 'consent_gpp_denied' };
    if (!vendors.every((vendor) => vendorConsents.includes(vendor)))
      return { allowed: false, reason: 'consent_gpp_denied' };
    return { allowed: true, basis: 'gpp_tcfeuv2' };
  }
  return undefined;
}

function evaluateGdpr(
  signals: ConsentSignals,
  policy: ConsentPolicy,
  vendors: readonly number[],
): ConsentVerdict {
  const gdpr = signals.gdpr === undefined || signals.gdpr === '' ? undefined : signals.gdpr;
  if (gdpr !== undefined && gdpr !== '0' && gdpr !== '1')
    return { allowed: false, reason: 'consent_gdpr_invalid' };
  const applies = gdpr === undefined ? policy.gdprAppliesWhenUnknown : gdpr === '1';
  if (!applies) return { allowed: true, basis: gdpr === '0' ? 'gdpr_not_applicable' : 'no_gdpr_signal' };
  if (signals.gdprConsent === undefined || signals.gdprConsent === '') {
    return { allowed: false, reason: 'consent_gdpr_missing' };
  }
  const consentString = signals.gdprConsent;
  const model = safe(() => TCString.decode(consentString));
  if (!model) return { allowed: false, reason: 'consent_gdpr_invalid' };
  if (!model.purposeConsents.has(PURPOSE_STORE_AND_ACCESS))
    return { allowed: false, reason: 'consent_gdpr_denied' };
  if (!vendors.every((vendor) => model.vendorConsents.has(vendor)))
    return { allowed: false, reason: 'consent_gdpr_denied' };
  return { allowed: true, basis: 'tcf_v2' };
}

function parseSectionIds(gppSid: string | undefined): number[] | undefined {
  if (gppSid === undefined || gppSid === '') return [];
  const parts = gppSid.split(/[,_]/);
  if (parts.length > 32 || !parts.every((part) => /^\d{1,3}$/.test(part))) return undefined;
  return parts.map(Number);
}

function safe<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch {
    return undefined;
  }
}

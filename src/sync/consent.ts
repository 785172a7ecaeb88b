import {
  ConsentBitsError,
  GPP_SECTION_USP_V1,
  readGppHeader,
  readTcfCore,
  readUsOptOut,
  type TcfCore,
  US_SECTION_IDS,
} from './consent-bits.ts';

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
 * A request's strings are decoded once, for every partner at a time, in bounded work, by our own
 * readers (consent-bits.ts): the TCF v2 core segment and the GPP header, whose range sections are
 * checked against their bit budget before they are read and never expanded, and GPP's US sections
 * (fixed-size fields, of which only the opt-outs are read; the same verdicts as the IAB's
 * @iabgpp/cmpapi, which the Lambda bundle no longer carries). A string that
 * does not decode counts as no consent, never as consent; one whose range sections exceed their
 * budget is refused as `consent_gdpr_over_budget` / `consent_gpp_over_budget`.
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
  | 'consent_gpp_over_budget'
  | 'consent_gpp_denied'
  | 'consent_gpp_optout'
  | 'consent_gdpr_invalid'
  | 'consent_gdpr_over_budget'
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

/** What one request's consent says, decoded once; `verdictFor` is then cheap per partner. */
export interface DecodedConsent {
  verdictFor(partnerVendorId?: number): ConsentVerdict;
}

type Refusal = { readonly allowed: false; readonly reason: ConsentRejection };
/** A TCF decision that depends on the vendor: purpose 1, and the vendors (of those asked for) with consent. */
type TcfGrant = { readonly kind: 'tcf'; readonly core: TcfCore };

/**
 * Decodes the request's signals once. `vendorIds` are every vendor id a verdict may be asked about
 * (ours and the partners'): only those are looked up in the strings.
 */
export function decodeConsent(
  signals: ConsentSignals,
  policy: ConsentPolicy,
  vendorIds: readonly number[],
): DecodedConsent {
  const wanted = [...new Set([policy.hostVendorId, ...vendorIds])].filter(
    (id): id is number => id !== undefined,
  );
  const fixed = decideIndependently(signals, policy, wanted);
  return {
    verdictFor(partnerVendorId) {
      if ('allowed' in fixed) return fixed;
      const vendors = [policy.hostVendorId, partnerVendorId].filter((id): id is number => id !== undefined);
      if (!fixed.core.purposeConsents.has(PURPOSE_STORE_AND_ACCESS))
        return { allowed: false, reason: fixed.denied };
      if (!vendors.every((vendor) => fixed.core.vendorConsents.has(vendor)))
        return { allowed: false, reason: fixed.denied };
      return fixed.whenGranted;
    },
  };
}

/** Decides for one partner (decodes the strings: use decodeConsent for several). */
export function evaluateConsent(
  signals: ConsentSignals,
  policy: ConsentPolicy,
  partnerVendorId?: number,
): ConsentVerdict {
  return decodeConsent(signals, policy, partnerVendorId === undefined ? [] : [partnerVendorId]).verdictFor(
    partnerVendorId,
  );
}

/**
 * Everything that does not depend on the partner: a verdict, or a TCF grant to check per vendor
 * (with the refusal for a missing vendor and the verdict to give when all are there).
 */
function decideIndependently(
  signals: ConsentSignals,
  policy: ConsentPolicy,
  wanted: readonly number[],
): ConsentVerdict | (TcfGrant & { readonly denied: ConsentRejection; readonly whenGranted: ConsentVerdict }) {
  const texts = [signals.gdpr, signals.gdprConsent, signals.usPrivacy, signals.gpp, signals.gppSid];
  if (texts.some((text) => text !== undefined && text.length > MAX_CONSENT_SIGNAL_LENGTH)) {
    return { allowed: false, reason: 'consent_signal_too_long' };
  }
  if (policy.honourGlobalPrivacyControl && signals.globalPrivacyControl)
    return { allowed: false, reason: 'consent_gpc' };

  if (signals.gpp !== undefined && signals.gpp !== '') {
    const gpp = decodeGpp(signals.gpp, signals.gppSid, wanted);
    if (gpp !== undefined) {
      if ('allowed' in gpp) return gpp;
      return { ...gpp, denied: 'consent_gpp_denied', whenGranted: { allowed: true, basis: 'gpp_tcfeuv2' } };
    }
  }

  const gdpr = decodeGdpr(signals, policy, wanted);
  if ('allowed' in gdpr && !gdpr.allowed) return gdpr;

  const usPrivacy = checkUsPrivacy(signals.usPrivacy);
  if (usPrivacy) return usPrivacy;
  if ('allowed' in gdpr) return gdpr;
  return { ...gdpr, denied: 'consent_gdpr_denied', whenGranted: { allowed: true, basis: 'tcf_v2' } };
}

function checkUsPrivacy(usPrivacy: string | undefined): Refusal | undefined {
  if (usPrivacy === undefined || usPrivacy === '') return undefined;
  if (!/^1[YNyn-][YNyn-][YNyn-]$/.test(usPrivacy))
    return { allowed: false, reason: 'consent_us_privacy_invalid' };
  if (usPrivacy[2]?.toUpperCase() === 'Y') return { allowed: false, reason: 'consent_us_privacy_optout' };
  return undefined;
}

/** A refusal, a TCF grant (the string's TCF EU v2 section decides), or undefined to fall through. */
function decodeGpp(
  gpp: string,
  gppSid: string | undefined,
  wanted: readonly number[],
): Refusal | TcfGrant | undefined {
  const sids = parseSectionIds(gppSid);
  if (sids === undefined) return { allowed: false, reason: 'consent_gpp_invalid' };
  const [header, ...sections] = gpp.split('~');
  let present: number[];
  try {
    present = readGppHeader(header ?? '');
  } catch (error) {
    return bitsRefusal(error, 'consent_gpp_invalid', 'consent_gpp_over_budget');
  }
  if (present.length !== sections.length || sections.some((section) => section.trim() === ''))
    return { allowed: false, reason: 'consent_gpp_invalid' };
  // Without gpp_sid every section the string carries applies; a listed section must be there.
  const applicable = sids.length > 0 ? sids : present;
  if (!applicable.every((sid) => present.includes(sid)))
    return { allowed: false, reason: 'consent_gpp_invalid' };
  const sectionOf = (sid: number) => sections[present.indexOf(sid)] as string;

  for (const sid of applicable) {
    if (sid === GPP_SECTION_TCF_EU_V2) continue;
    const refusal = checkUsSection(sid, sectionOf(sid));
    if (refusal) return refusal;
  }
  if (!applicable.includes(GPP_SECTION_TCF_EU_V2)) return undefined;
  try {
    return { kind: 'tcf', core: readTcfCore(sectionOf(GPP_SECTION_TCF_EU_V2), wanted) };
  } catch (error) {
    return bitsRefusal(error, 'consent_gpp_invalid', 'consent_gpp_over_budget');
  }
}

/** A US (or USP v1) section's opt-outs; sections of any other kind are not read and refuse. */
function checkUsSection(sid: number, encoded: string): Refusal | undefined {
  if (sid !== GPP_SECTION_USP_V1 && !US_SECTION_IDS.includes(sid))
    return { allowed: false, reason: 'consent_gpp_invalid' };
  try {
    return readUsOptOut(sid, encoded) ? { allowed: false, reason: 'consent_gpp_optout' } : undefined;
  } catch (error) {
    // A section we cannot read is no consent.
    return bitsRefusal(error, 'consent_gpp_invalid', 'consent_gpp_invalid');
  }
}

function decodeGdpr(
  signals: ConsentSignals,
  policy: ConsentPolicy,
  wanted: readonly number[],
): ConsentVerdict | TcfGrant {
  const gdpr = signals.gdpr === undefined || signals.gdpr === '' ? undefined : signals.gdpr;
  if (gdpr !== undefined && gdpr !== '0' && gdpr !== '1')
    return { allowed: false, reason: 'consent_gdpr_invalid' };
  const applies = gdpr === undefined ? policy.gdprAppliesWhenUnknown : gdpr === '1';
  if (!applies) return { allowed: true, basis: gdpr === '0' ? 'gdpr_not_applicable' : 'no_gdpr_signal' };
  if (signals.gdprConsent === undefined || signals.gdprConsent === '') {
    return { allowed: false, reason: 'consent_gdpr_missing' };
  }
  try {
    return { kind: 'tcf', core: readTcfCore(signals.gdprConsent, wanted) };
  } catch (error) {
    return bitsRefusal(error, 'consent_gdpr_invalid', 'consent_gdpr_over_budget');
  }
}

function bitsRefusal(
  error: unknown,
  invalidReason: ConsentRejection,
  overBudgetReason: ConsentRejection,
): Refusal {
  if (error instanceof ConsentBitsError && error.problem === 'over_budget')
    return { allowed: false, reason: overBudgetReason };
  if (error instanceof ConsentBitsError) return { allowed: false, reason: invalidReason };
  throw error;
}

function parseSectionIds(gppSid: string | undefined): number[] | undefined {
  if (gppSid === undefined || gppSid === '') return [];
  const parts = gppSid.split(/[,_]/);
  if (parts.length > 32 || !parts.every((part) => /^\d{1,3}$/.test(part))) return undefined;
  return parts.map(Number);
}

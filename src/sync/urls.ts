import type { SyncSettings } from '../config/schema.ts';

/**
 * URLs of the sync chain. Our callback (`out`) keeps the partner's user-id macro literal, so that
 * after the partner decodes `out` it finds `[[USERID]]` (or its own spelling) to replace; every
 * other value is percent-encoded. The whole `out` URL is then percent-encoded once more as the
 * value of the partner template's `{out}` placeholder.
 */

export interface ForwardedConsent {
  readonly gdpr?: string | undefined;
  readonly gdprConsent?: string | undefined;
  readonly usPrivacy?: string | undefined;
  readonly gpp?: string | undefined;
  readonly gppSid?: string | undefined;
}

export interface CallbackInput {
  /** Origin (and optional path prefix) of our public API, without a trailing slash. */
  readonly baseUrl: string;
  readonly platformId: number;
  readonly token: string;
  readonly userIdMacro: string;
  readonly consent: ForwardedConsent;
  /** Position of this partner in the redirect chain, starting at 1. */
  readonly hop: number;
  /** The pixel asked for this one platform (`/sync?pl=`): the callback ends the chain (`last=1`). */
  readonly last?: boolean;
}

const CONSENT_PARAMS: readonly [keyof ForwardedConsent, string][] = [
  ['gdpr', 'gdpr'],
  ['gdprConsent', 'gdpr_consent'],
  ['usPrivacy', 'us_privacy'],
  ['gpp', 'gpp'],
  ['gppSid', 'gpp_sid'],
];

export function buildCallbackUrl(input: CallbackInput): string {
  const params = [
    `userid=${input.userIdMacro}`,
    `pl=${input.platformId}`,
    `plsec=${encodeURIComponent(input.token)}`,
    ...CONSENT_PARAMS.flatMap(([key, name]) => {
      const value = input.consent[key];
      return value === undefined || value === '' ? [] : [`${name}=${encodeURIComponent(value)}`];
    }),
    `hop=${input.hop}`,
    ...(input.last ? ['last=1'] : []),
  ];
  return `${input.baseUrl}/uid?${params.join('&')}`;
}

const PLACEHOLDER = /\{(out|gdpr|gdpr_consent|us_privacy|gpp|gpp_sid)\}/g;

/** The only origin a platform's redirects may go to: its template's. */
export function allowedSyncOrigin(settings: Pick<SyncSettings, 'urlTemplate'>): string {
  return new URL(settings.urlTemplate.replaceAll(PLACEHOLDER, '')).origin;
}

export type PartnerUrlResult =
  | { readonly ok: true; readonly url: string }
  | { readonly ok: false; readonly reason: 'redirect_off_allowlist' };

/** Fills the partner's sync template; refuses any result that would leave the partner's origin. */
export function buildPartnerSyncUrl(
  settings: Pick<SyncSettings, 'urlTemplate'>,
  callbackUrl: string,
  consent: ForwardedConsent,
): PartnerUrlResult {
  const values: Record<string, string | undefined> = {
    out: callbackUrl,
    gdpr: consent.gdpr,
    gdpr_consent: consent.gdprConsent,
    us_privacy: consent.usPrivacy,
    gpp: consent.gpp,
    gpp_sid: consent.gppSid,
  };
  const url = settings.urlTemplate.replaceAll(PLACEHOLDER, (_, name: string) =>
    encodeURIComponent(values[name] ?? ''),
  );
  let origin: string;
  try {
    origin = new URL(url).origin;
  } catch {
    return { ok: false, reason: 'redirect_off_allowlist' };
  }
  return origin === allowedSyncOrigin(settings)
    ? { ok: true, url }
    : { ok: false, reason: 'redirect_off_allowlist' };
}

/**
 * Our public base URL: the configured one (custom domain), else the request's own host as API
 * Gateway reports it. The protocol comes from `x-forwarded-proto` (https in AWS).
 */
export function publicBaseUrl(
  configured: string | undefined,
  domainName: string,
  forwardedProto: string | undefined,
): string {
  if (configured) return configured.replace(/\/+$/, '');
  const proto = forwardedProto === 'http' ? 'http' : 'https';
  return `${proto}://${domainName}`;
}

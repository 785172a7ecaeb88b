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
  /** The partner's macro; undefined for a partner that appends its id (`userid=` comes last). */
  readonly userIdMacro: string | undefined;
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
  const append = input.userIdMacro === undefined;
  const params = [
    ...(append ? [] : [`userid=${input.userIdMacro}`]),
    `pl=${input.platformId}`,
    `plsec=${encodeURIComponent(input.token)}`,
    ...CONSENT_PARAMS.flatMap(([key, name]) => {
      const value = input.consent[key];
      return value === undefined || value === '' ? [] : [`${name}=${encodeURIComponent(value)}`];
    }),
    `hop=${input.hop}`,
    ...(input.last ? ['last=1'] : []),
    // An appending partner adds its id at the very end: the URL must end with `userid=`.
    ...(append ? ['userid='] : []),
  ];
  return `${input.baseUrl}/uid?${params.join('&')}`;
}

const PLACEHOLDER = /\{(out|gdpr|gdpr_consent|us_privacy|gpp|gpp_sid)\}/g;

/** The only origin a platform's redirects may go to: its template's. */
export function allowedSyncOrigin(settings: Pick<SyncSettings, 'urlTemplate'>): string {
  let origin = templateOrigins.get(settings.urlTemplate);
  if (origin === undefined) {
    origin = new URL(settings.urlTemplate.replaceAll(PLACEHOLDER, '')).origin;
    templateOrigins.set(settings.urlTemplate, origin);
  }
  return origin;
}

/** Origins of the configured templates, parsed once per template rather than per redirect. */
const templateOrigins = new Map<string, string>();

export type PartnerUrlResult =
  | { readonly ok: true; readonly url: string; readonly origin: string }
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
    ? { ok: true, url, origin }
    : { ok: false, reason: 'redirect_off_allowlist' };
}

/** API Gateway's own default host: API Gateway sets it, a client cannot choose it. */
const EXECUTE_API_HOST = /^[a-z0-9]{10}\.execute-api\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$/;
const LOOPBACK_HOST = /^(127\.0\.0\.1|localhost|\[::1\])(:\d{1,5})?$/;

/**
 * Our public base URL: the configured one (custom domain), else the request's host, but only a
 * host from a fixed list: `allowedHosts`, API Gateway's execute-api host, or loopback (the local
 * stack). Any other host gets the first allowed one, or none (undefined: no callback URL is built).
 * The protocol comes from `x-forwarded-proto` (https in AWS).
 */
export function publicBaseUrl(
  configured: string | undefined,
  domainName: string,
  forwardedProto: string | undefined,
  allowedHosts: readonly string[] = [],
): string | undefined {
  if (configured) return configured.replace(/\/+$/, '');
  const host = domainName.toLowerCase();
  const allowed =
    allowedHosts.some((candidate) => candidate.toLowerCase() === host) ||
    EXECUTE_API_HOST.test(host) ||
    LOOPBACK_HOST.test(host);
  const chosen = allowed ? host : allowedHosts[0];
  if (chosen === undefined) return undefined;
  const proto = forwardedProto === 'http' && LOOPBACK_HOST.test(chosen) ? 'http' : 'https';
  return `${proto}://${chosen}`;
}

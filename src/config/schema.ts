import * as z from 'zod';
import { ConnectorSchema } from './connector.ts';

/**
 * The versioned configuration of one environment: its settings and the execution platforms it
 * integrates. Files live in `config/environments/<name>.json`; the same schema validates them at
 * synth time (bin/app.ts), at a Lambda's cold start and in the `dmp` CLI, so a typo is refused
 * with the field named before anything is deployed.
 */

const HOURS = 3600;
const DAYS = 24 * HOURS;

/** Partner user-id macro spellings vary wildly; the seed's is `[[USERID]]`. */
export const DEFAULT_USER_ID_MACRO = '[[USERID]]';

/** Our own placeholders inside a platform's sync URL template. */
export const SYNC_TEMPLATE_PLACEHOLDERS = [
  '{out}',
  '{gdpr}',
  '{gdpr_consent}',
  '{us_privacy}',
  '{gpp}',
  '{gpp_sid}',
] as const;

const platformId = z
  .number()
  .int()
  .min(1)
  .max(2_147_483_647)
  .describe('numeric platform id, as in the seed (pl=99999)');

const httpUrl = z.string().refine(
  (value) => {
    try {
      const url = new URL(value.replaceAll(/\{[a-z_]+\}/g, 'x'));
      return url.protocol === 'https:' || (url.protocol === 'http:' && isLoopbackHost(url.hostname));
    } catch {
      return false;
    }
  },
  { message: 'must be an absolute https URL (http only for 127.0.0.1, ::1 or localhost)' },
);

/** True when a placeholder would stand in the scheme, credentials or host of a template. */
function placeholderInOrigin(template: string): boolean {
  const marker = 'placeholdermarker';
  try {
    const url = new URL(template.replaceAll(/\{[a-z_]+\}/g, marker));
    return [url.protocol, url.username, url.password, url.host].some((part) =>
      part.toLowerCase().includes(marker),
    );
  } catch {
    return true;
  }
}

export function isLoopbackHost(hostname: string): boolean {
  return hostname === '127.0.0.1' || hostname === 'localhost' || hostname === '[::1]' || hostname === '::1';
}

export const SignatureSettingsSchema = z
  .object({
    /** Refuse unsigned callbacks from this platform. */
    required: z.boolean().default(false),
    algorithm: z.enum(['sha1', 'sha256']).default('sha1'),
    /** Allowed clock skew either side of the partner's timestamp. */
    maxSkewSeconds: z.number().int().min(30).max(3600).default(300),
  })
  .strict();

export const SyncSettingsSchema = z
  .object({
    enabled: z.boolean().default(true),
    /**
     * Where the browser is sent, with `{out}` standing for our callback URL (percent-encoded as a
     * query value); consent placeholders forward the browser's consent signals to the partner.
     */
    urlTemplate: httpUrl
      .refine((value) => value.split('{out}').length === 2, {
        message: 'must contain the {out} placeholder exactly once',
      })
      .refine((value) => !placeholderInOrigin(value), {
        message:
          'placeholders may not stand in the scheme or host: redirects must stay on the partner origin',
      }),
    /** The macro the partner replaces with its user id inside our `out` URL. */
    userIdMacro: z.string().min(1).max(64).default(DEFAULT_USER_ID_MACRO),
    resyncAfterDays: z.number().min(1).max(90).default(7),
    /** +/- fraction of the resync interval, so a cohort synced on one day does not return on one day. */
    resyncJitter: z.number().min(0).max(0.5).default(0.1),
    /** After a redirect that never came back, wait this long before trying the partner again. */
    retryAfterAttemptHours: z.number().min(1).max(720).default(24),
    mappingTtlDays: z.number().int().min(1).max(395).default(90),
    /** Accept the seed's static `plsec` token (partner-initiated syncs). */
    acceptStaticToken: z.boolean().default(true),
    /**
     * What an unsigned static-token callback may do (the token travels in browser URLs: anybody
     * can read it). It never replaces an id a minted or signed callback stored.
     */
    staticToken: z
      .object({
        /** It changes a stored id at most once per this many hours per browser and platform. */
        minChangeIntervalHours: z.number().min(0).max(720).default(24),
        /**
         * When set, it is accepted only within this many seconds after `/sync` sent this browser
         * to the partner (the `dmp_sa` cookie): partner-initiated syncs are then refused.
         */
        requireSyncWithinSeconds: z.number().int().min(60).max(86_400).optional(),
      })
      .strict()
      .default({ minChangeIntervalHours: 24 }),
    /**
     * How the partner puts its id into our callback: it replaces `userIdMacro` (`macro`), or it
     * appends the id to the URL, which then ends with `userid=` (`append`).
     */
    userIdPlacement: z.enum(['macro', 'append']).default('macro'),
    /**
     * Characters a partner id may hold besides `A-Z a-z 0-9 . _ ~ -` (the strict default, safe in
     * URLs and TSV/CSV files). Only `+ / = : @ ! * ( )` may be added, e.g. `+/=` for base64 ids;
     * tabs, line breaks, commas and semicolons never.
     */
    userIdExtraCharacters: z
      .string()
      .max(10)
      .regex(/^[+/=:@!*()]*$/, 'only + / = : @ ! * ( ) may be added to the id alphabet')
      .default(''),
    /** How long a token minted by `/sync` stays valid. */
    mintedTokenMaxAgeSeconds: z
      .number()
      .int()
      .min(60)
      .max(7 * DAYS)
      .default(HOURS),
    signature: SignatureSettingsSchema.default({ required: false, algorithm: 'sha1', maxSkewSeconds: 300 }),
    maxUserIdLength: z.number().int().min(8).max(512).default(256),
    /** Extra ids the partner is known to send when it has none (besides 0, null, undefined, ...). */
    sentinelUserIds: z.array(z.string()).default([]),
    /** IAB Global Vendor List id of the partner, checked in TCF consent strings. */
    gdprVendorId: z.number().int().min(1).optional(),
  })
  .strict();

export const PlatformSchema = z
  .object({
    id: platformId,
    name: z.string().min(1).max(128),
    sync: SyncSettingsSchema.optional(),
    /** How we call the partner's API: auth, segment creation, population (src/config/connector.ts). */
    connector: ConnectorSchema.optional(),
  })
  .strict();

export const ConsentSettingsSchema = z
  .object({
    /** Our own IAB vendor id; when set, our purpose-1 consent is required where GDPR applies. */
    hostVendorId: z.number().int().min(1).optional(),
    /** What to assume when a request carries no gdpr signal at all. */
    gdprAppliesWhenUnknown: z.boolean().default(false),
    /** Honour the browser's Global Privacy Control header as an opt-out of sale/sharing. */
    honourGlobalPrivacyControl: z.boolean().default(true),
  })
  .strict();

export const UserSyncSettingsSchema = z
  .object({
    /**
     * Public base URL of the sync API (custom domain), where callbacks are sent. Without it, the
     * request's host is used only if it is listed in `allowedHosts` (the API's own hosts);
     * a deployed environment needs one of the two (see EnvironmentSchema).
     */
    publicBaseUrl: httpUrl.optional(),
    /**
     * Hosts (host[:port]) a callback URL may be built on when `publicBaseUrl` is absent; a request
     * for another host gets the first. Deployed stacks add the API's execute-api host themselves.
     */
    allowedHosts: z.array(z.string().regex(/^[a-z0-9.-]+(:\d{1,5})?$/i, 'host or host:port')).default([]),
    cookieDomain: z.string().min(1).optional(),
    cookieMaxAgeDays: z.number().int().min(1).max(400).default(395),
    /** How many partners one pixel hit may chain through before it ends. */
    maxRedirectsPerChain: z.number().int().min(1).max(20).default(5),
    consent: ConsentSettingsSchema.default({
      gdprAppliesWhenUnknown: false,
      honourGlobalPrivacyControl: true,
    }),
  })
  .strict();

export const ApiSettingsSchema = z
  .object({
    throttlingRateLimit: z.number().int().min(1).default(1000),
    throttlingBurstLimit: z.number().int().min(1).default(2000),
    /**
     * Reserved concurrency of the function behind the API. Default: sized to the throttle
     * (lib/constructs/reserved-concurrency.ts); set it when the account's quota is smaller.
     */
    reservedConcurrency: z.number().int().min(1).max(10_000).optional(),
    /** Origins allowed to call the API from scripts; pixels and redirects need none. */
    corsAllowOrigins: z.array(z.string()).default([]),
  })
  .strict();

const DOMAIN_NAME = /^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;

/**
 * The custom domain of the sync API (the host browsers see, and so the host of its cookie). The
 * certificate is an existing ACM certificate of the same region (`certificateArn`), or one this
 * stack requests and validates by DNS in `hostedZone`; with `hostedZone` the stack also creates
 * the alias records. Checked against the rest of the file at synth (lib/deployment.ts).
 */
export const CustomDomainSchema = z
  .object({
    name: z.string().regex(DOMAIN_NAME, 'must be a lower-case DNS name such as sync.publisher.example'),
    certificateArn: z
      .string()
      .regex(
        /^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate\/[A-Za-z0-9-]+$/,
        'must be an ACM certificate ARN',
      )
      .optional(),
    hostedZone: z
      .object({
        id: z.string().regex(/^Z[A-Z0-9]{1,31}$/, 'must be a Route 53 hosted zone id (Z...)'),
        name: z.string().regex(DOMAIN_NAME, 'must be the zone name, e.g. publisher.example'),
      })
      .strict()
      .optional(),
  })
  .strict();

export const EnvironmentSchema = z
  .object({
    $schema: z.string().optional(),
    /** Free text for the reader of the file (the example environments say they are examples). */
    $comment: z.string().optional(),
    name: z
      .string()
      .regex(/^[a-z][a-z0-9-]{1,20}$/, 'lower-case letters, digits and dashes, starting with a letter'),
    /** Whether `bin/app.ts` synthesizes a stack for it (the local environment is not deployed). */
    deploy: z.boolean().default(true),
    aws: z
      .object({
        account: z
          .string()
          .regex(/^\d{12}$/)
          .optional(),
        region: z.string().min(1).optional(),
      })
      .strict()
      .default({}),
    logRetentionDays: z.number().int().min(1).default(30),
    /** Tags added to every resource of the stack, besides `project` and `environment`. */
    tags: z
      .record(
        z.string().regex(/^[\w .:/=+@-]{1,128}$/, 'tag keys: 1-128 letters, digits, spaces and _.:/=+-@'),
        z
          .string()
          .regex(/^[\w .:/=+@-]{0,256}$/, 'tag values: up to 256 letters, digits, spaces and _.:/=+-@'),
      )
      .refine((tags) => !Object.keys(tags).some((key) => key.startsWith('aws:')), {
        message: 'the aws: prefix is reserved by AWS',
      })
      .default({}),
    domain: CustomDomainSchema.optional(),
    /**
     * Whether `debug=1` returns the JSON trace of a sync decision. Absent: on where the service runs
     * on this machine, off in a deployed stack (lib/deployment.ts writes `false` into the bundle),
     * since the trace tells anyone who asks why a browser was or was not synced.
     */
    debugTraces: z.boolean().optional(),
    /** Keep data tables when the stack is deleted (prod). */
    retainData: z.boolean().default(true),
    api: ApiSettingsSchema.default({
      throttlingRateLimit: 1000,
      throttlingBurstLimit: 2000,
      corsAllowOrigins: [],
    }),
    userSync: UserSyncSettingsSchema.default({
      allowedHosts: [],
      cookieMaxAgeDays: 395,
      maxRedirectsPerChain: 5,
      consent: { gdprAppliesWhenUnknown: false, honourGlobalPrivacyControl: true },
    }),
    monitoring: z
      .object({
        /** An existing SNS topic that the alarms notify (alarm and back to OK). */
        alarmTopicArn: z
          .string()
          .regex(/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$/, 'must be an SNS topic ARN')
          .optional(),
      })
      .strict()
      .default({}),
    platforms: z.array(PlatformSchema),
  })
  .strict()
  .superRefine((env, ctx) => {
    const seen = new Set<number>();
    env.platforms.forEach((platform, index) => {
      if (seen.has(platform.id)) {
        ctx.addIssue({
          code: 'custom',
          path: ['platforms', index, 'id'],
          message: `duplicate platform id ${platform.id}`,
        });
      }
      seen.add(platform.id);
    });
  });

export type EnvironmentInput = z.input<typeof EnvironmentSchema>;
export type EnvironmentConfig = z.output<typeof EnvironmentSchema>;
export type PlatformConfig = z.output<typeof PlatformSchema>;
export type SyncSettings = z.output<typeof SyncSettingsSchema>;
export type UserSyncSettings = z.output<typeof UserSyncSettingsSchema>;
export type ConsentSettings = z.output<typeof ConsentSettingsSchema>;

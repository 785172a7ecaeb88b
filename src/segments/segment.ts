import type { SegmentsSettings } from '../config/connector.ts';
import * as z from '../config/zod-mini.ts';
import type { TemplateValues } from '../connectors/templates.ts';

/**
 * A DMP audience and the partner segment it becomes on one platform. The partner's segment id is
 * obtained once (by the platform's create call, or implied by the segment's name), stored, and
 * reused for the audience's lifetime.
 */
/** Longest DMP audience name, in UTF-16 code units (docs/segments.md "Names"). */
export const MAX_AUDIENCE_NAME_LENGTH = 256;

export const AudienceSchema = z.strictObject({
  id: z.string().check(z.regex(/^[A-Za-z0-9._:-]{1,128}$/, 'letters, digits and . _ : - (1 to 128)')),
  name: z
    .string()
    .check(
      z.minLength(1, 'must not be empty'),
      z.maxLength(MAX_AUDIENCE_NAME_LENGTH, `at most ${MAX_AUDIENCE_NAME_LENGTH} characters`),
    ),
  kind: z._default(z.enum(['custom', 'lookalike']), 'custom'),
});

export type Audience = z.output<typeof AudienceSchema>;

/**
 * - `creating`: one caller holds the lease and is calling the partner;
 * - `retry`: the last attempt ended in a retryable failure; the next caller tries again (not
 *   before `retryAt`, when the partner said when);
 * - `ready`: the partner segment id is known;
 * - `failed`: the partner refused (4xx); not retried blindly;
 * - `unresolved`: a create may have been carried out by the partner and nothing can tell (no
 *   lookup, no idempotency key, no de-duplication): `possibleDuplicate` is set and an operator
 *   decides with `dmp segments resolve` (adopt the partner's id, or confirm a new create).
 */
export type SegmentState = 'creating' | 'retry' | 'ready' | 'failed' | 'unresolved';

/** The step of segment creation a failure happened in. */
export type SegmentStep = 'credentials' | 'token' | 'lookup' | 'create' | 'rename' | 'claim';

export interface SegmentError {
  readonly status?: number | undefined;
  readonly message: string;
  /** ISO time. */
  readonly at: string;
  /** Where it failed: the OAuth2 token endpoint, the lookup, the create call, ... */
  readonly step?: SegmentStep | undefined;
}

/** A partner segment that exists at the partner but serves no audience (see `orphans`). */
export interface OrphanSegment {
  readonly partnerSegmentId: string;
  /** Why it is not the audience's segment. */
  readonly reason: string;
  /** ISO time. */
  readonly at: string;
}

export interface SegmentRecord {
  readonly platformId: number;
  readonly audienceId: string;
  /** The audience's name in the DMP, as last seen. */
  readonly audienceName: string;
  readonly kind: Audience['kind'];
  readonly state: SegmentState;
  readonly partnerSegmentId?: string | undefined;
  /** The name the partner segment carries (differs from audienceName when a rename is pending or unsupported). */
  readonly nameAtPartner?: string | undefined;
  readonly leaseOwner?: string | undefined;
  /** Epoch milliseconds. */
  readonly leaseExpiresAt?: number | undefined;
  /** Create calls sent for this audience (the in-call repeats of the partner client not counted). */
  readonly attempts: number;
  /** The partner may have created a segment we did not record (a crash, a timeout, a 5xx). */
  readonly outcomeUnknown: boolean;
  /**
   * The partner may hold a segment of this audience besides (or instead of) the recorded one: a
   * create had an unknown outcome with no way to look up or de-duplicate (state `unresolved`),
   * or a second segment was obtained (`orphans`). Cleared by `dmp segments resolve`.
   */
  readonly possibleDuplicate: boolean;
  /** Epoch ms before which the partner asked not to be called again (Retry-After of a 429 or 503). */
  readonly retryAt?: number | undefined;
  /** Partner segments obtained for this audience that it does not use (a create after losing the lease, a replaced id). */
  readonly orphans?: readonly OrphanSegment[] | undefined;
  /** How the id was obtained: `created`, `existing` (created:false), `lookup`, `implicit`. */
  readonly source?: string | undefined;
  readonly lastError?: SegmentError | undefined;
  readonly renameError?: SegmentError | undefined;
  readonly createdAt: string;
  readonly updatedAt: string;
}

/** Stable per (environment, platform, audience), so a partner honouring it never creates twice. */
export function idempotencyKey(environment: string, platformId: number, audienceId: string): string {
  return `dmp-${environment}-${platformId}-${audienceId}`;
}

export interface SegmentTemplateContext {
  readonly environment: string;
  readonly platformId: number;
  readonly variables: Readonly<Record<string, string>>;
}

/** The placeholders of segment requests (see src/config/connector.ts). */
export function segmentTemplateValues(
  settings: SegmentsSettings,
  audience: Audience,
  context: SegmentTemplateContext,
  segmentId?: string,
): TemplateValues {
  const base: Record<string, string | number> = {
    audienceId: audience.id,
    audienceName: audience.name,
    kind: settings.kinds[audience.kind],
    environment: context.environment,
    platformId: context.platformId,
  };
  for (const [key, value] of Object.entries(context.variables)) base[`var.${key}`] = value;
  const name = renderName(settings.nameTemplate, base);
  const values: Record<string, string | number | bigint> = { ...base, name };
  if (segmentId !== undefined) {
    values['segmentId'] = segmentId;
    // Beyond 15 digits a number may not hold the id exactly: a bigint, written as the same digits.
    if (/^\d{1,15}$/.test(segmentId)) values['segmentIdNumber'] = Number(segmentId);
    else if (/^[1-9]\d*$/.test(segmentId)) values['segmentIdNumber'] = BigInt(segmentId);
  }
  return values;
}

function renderName(template: string, values: Readonly<Record<string, string | number>>): string {
  return template.replaceAll(/\{([A-Za-z][A-Za-z0-9_.]*)\}/g, (whole, key: string) =>
    Object.hasOwn(values, key) ? String(values[key]) : whole,
  );
}

/** The partner segment name for an audience. */
export function partnerSegmentName(
  settings: SegmentsSettings,
  audience: Audience,
  context: SegmentTemplateContext,
): string {
  return String(segmentTemplateValues(settings, audience, context)['name']);
}

/**
 * A segment id read from a partner answer (parsed by parseJsonExact): a non-empty string, or a
 * non-negative integer as its exact digits (a bigint beyond 2^53).
 */
export function asSegmentId(value: unknown): string | undefined {
  if (typeof value === 'string' && value.length > 0 && value.length <= 256) return value;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return String(value);
  if (typeof value === 'bigint' && value >= 0n) return value.toString();
  return undefined;
}

import * as z from 'zod';
import type { SegmentsSettings } from '../config/connector.ts';
import type { TemplateValues } from '../connectors/templates.ts';

/**
 * A DMP audience and the partner segment it becomes on one platform. The partner's segment id is
 * obtained once (by the platform's create call, or implied by the segment's name), stored, and
 * reused for the audience's lifetime.
 */
export const AudienceSchema = z
  .object({
    id: z.string().regex(/^[A-Za-z0-9._:-]{1,128}$/, 'letters, digits and . _ : - (1 to 128)'),
    name: z.string().min(1).max(256),
    kind: z.enum(['custom', 'lookalike']).default('custom'),
  })
  .strict();

export type Audience = z.output<typeof AudienceSchema>;

/**
 * - `creating`: one caller holds the lease and is calling the partner;
 * - `retry`: the last attempt ended in a retryable failure; the next caller tries again;
 * - `ready`: the partner segment id is known;
 * - `failed`: the partner refused (4xx); not retried blindly.
 */
export type SegmentState = 'creating' | 'retry' | 'ready' | 'failed';

export interface SegmentError {
  readonly status?: number | undefined;
  readonly message: string;
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
  /** Create calls started for this audience. */
  readonly attempts: number;
  /** The partner may have created a segment we did not record (a crash, a timeout, a 5xx). */
  readonly outcomeUnknown: boolean;
  /** Set when a create had to be repeated after an unknown outcome with no way to look up or dedupe. */
  readonly possibleDuplicate: boolean;
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
  const values: Record<string, string | number> = { ...base, name };
  if (segmentId !== undefined) {
    values['segmentId'] = segmentId;
    if (/^\d{1,15}$/.test(segmentId)) values['segmentIdNumber'] = Number(segmentId);
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

/** A segment id read from a partner answer: a non-empty string or an integer. */
export function asSegmentId(value: unknown): string | undefined {
  if (typeof value === 'string' && value.length > 0 && value.length <= 256) return value;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return String(value);
  return undefined;
}

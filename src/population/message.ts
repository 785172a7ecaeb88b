import * as z from '../config/zod-mini.ts';
import { AudienceSchema } from '../segments/segment.ts';
import { isValidDmpUserId } from '../sync/user-ids.ts';

/**
 * The DMP's audience event (architecture section 4): one JSON SQS message carries many users of
 * one audience, for one or more platforms. Producers get a JSON Schema of it
 * (docs/schemas/audience-event.v1.json, generated from `ProducerAudienceEventSchema`).
 *
 * Limits we take (a larger message is rejected whole, with its reason):
 * - the message body: at most MAX_MESSAGE_BYTES (SQS's own maximum, 1 MiB);
 * - users per message: at most MAX_USERS_PER_MESSAGE;
 * - platforms per message: at most MAX_PLATFORMS_PER_MESSAGE.
 *
 * An invalid user id rejects that user only; the message's other users go on.
 */

export const MAX_MESSAGE_BYTES = 1024 * 1024;
export const MAX_USERS_PER_MESSAGE = 10_000;
export const MAX_PLATFORMS_PER_MESSAGE = 100;
/** Membership lifetimes: 1 minute to 540 days (DV360's longest). */
export const MIN_TTL_SECONDS = 60;
export const MAX_TTL_SECONDS = 540 * 86_400;
/** Longest string accepted where a user id stands, before the id rules are checked one by one. */
const MAX_USER_FIELD = 1024;

/** A platform id where a number stands for one (1 to 2^31 - 1). */
const platformId = z.number().check(z.int(), z.gte(1), z.lte(2_147_483_647));

const common = {
  v: z.literal(1),
  audience: AudienceSchema,
  platforms: z.array(platformId).check(z.minLength(1), z.maxLength(MAX_PLATFORMS_PER_MESSAGE)),
  op: z.enum(['add', 'remove']),
  ttlSeconds: z.optional(z.number().check(z.int(), z.gte(MIN_TTL_SECONDS), z.lte(MAX_TTL_SECONDS))),
  /** When the DMP decided the membership: orders an add and a later remove of the same user. */
  ts: z.iso.datetime({ offset: true }),
};

/** What the route Lambda parses: users are checked one by one afterwards (see `validUsers`). */
export const AudienceEventSchema = z.strictObject({
  ...common,
  users: z
    .array(z.string().check(z.maxLength(MAX_USER_FIELD)))
    .check(z.minLength(1), z.maxLength(MAX_USERS_PER_MESSAGE)),
});

/** The contract as producers should write it (every user id valid); the published JSON Schema. */
export const ProducerAudienceEventSchema = z
  .strictObject({
    ...common,
    users: z
      .array(
        z
          .string()
          .check(
            z.regex(/^[A-Za-z0-9._-]{8,128}$/),
            z.describe('the DMP user id (the dmp_uid cookie value)'),
          ),
      )
      .check(z.minLength(1), z.maxLength(MAX_USERS_PER_MESSAGE)),
  })
  .check(
    z.describe(
      `dmp-activation audience event v1: at most ${MAX_USERS_PER_MESSAGE} users, ${MAX_PLATFORMS_PER_MESSAGE} platforms and ${MAX_MESSAGE_BYTES} bytes per message`,
    ),
  );

export type AudienceEvent = z.output<typeof AudienceEventSchema>;
export type AudienceEventInput = z.input<typeof ProducerAudienceEventSchema>;

export function audienceEventJsonSchema(): unknown {
  return {
    ...(z.toJSONSchema(ProducerAudienceEventSchema, { io: 'input' }) as Record<string, unknown>),
    $id: 'https://dmp-activation/schemas/audience-event.v1.json',
    title: 'AudienceEvent',
  };
}

export type RejectionReason =
  | 'message_too_large'
  | 'message_not_json'
  | 'message_invalid'
  | 'user_invalid'
  | 'platform_unknown'
  | 'platform_without_connector'
  | 'segment_refused'
  | 'removal_unsupported'
  | 'partner_refused'
  | 'item_too_large';

export type ParsedMessage =
  | { readonly ok: true; readonly event: AudienceEvent; readonly tsMs: number }
  | { readonly ok: false; readonly reason: RejectionReason; readonly detail: string };

/** Parses one SQS body; never throws. */
export function parseAudienceEvent(body: string): ParsedMessage {
  if (Buffer.byteLength(body, 'utf8') > MAX_MESSAGE_BYTES) {
    return { ok: false, reason: 'message_too_large', detail: `larger than ${MAX_MESSAGE_BYTES} bytes` };
  }
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return { ok: false, reason: 'message_not_json', detail: 'the body is not JSON' };
  }
  const parsed = AudienceEventSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? issue.path.join('.') : 'message';
    const tooMany = issue?.code === 'too_big' && issue.path[0] === 'users';
    return {
      ok: false,
      reason: tooMany ? 'message_too_large' : 'message_invalid',
      detail: `${where}: ${issue?.message ?? 'invalid'}`.slice(0, 300),
    };
  }
  return { ok: true, event: parsed.data, tsMs: Date.parse(parsed.data.ts) };
}

/** The message's distinct valid users, and the invalid ones (each rejected on its own). */
export function validUsers(users: readonly string[]): { valid: string[]; invalid: string[] } {
  const valid = new Set<string>();
  const invalid: string[] = [];
  for (const user of users) {
    if (isValidDmpUserId(user)) valid.add(user);
    else invalid.push(user);
  }
  return { valid: [...valid], invalid };
}

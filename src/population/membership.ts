import * as z from '../config/zod-mini.ts';
import type { StagedMembership } from '../files/staging.ts';

/**
 * One membership change for one platform: what the route step hands to a platform's delivery
 * queue, and what the deliver step sends. Ordered per (platform, segment, user) by `ts`.
 */
export interface Membership {
  readonly platformId: number;
  /** The partner's segment id, as text (as the partner sent it). */
  readonly segmentId: string;
  readonly audienceId: string;
  readonly dmpUserId: string;
  readonly partnerUserId: string;
  readonly op: 'add' | 'remove';
  /** Event time, epoch milliseconds. */
  readonly ts: number;
  readonly ttlSeconds?: number | undefined;
  /**
   * A removal the service sends because the add (at `ts`) expired (src/population/expiry.ts), not
   * an event of the DMP: counted as `expired`, never in the accepted events' outcomes.
   */
  readonly expiry?: true | undefined;
  /**
   * A pending event handed to delivery when the user's sync stored a partner id: the deliver step
   * counts its outcome in the event's own tally (src/population/accounting.ts, `EventTally`), so
   * that the event is counted once whichever step moved it and however many copies were sent.
   */
  readonly released?: true | undefined;
}

export type Op = Membership['op'];

const ITEM_HEAD = [
  z.string(),
  z.string(),
  z.string(),
  z.string(),
  z.enum(['a', 'r', 'x', 'A', 'R']),
  z.number().check(z.int()),
] as const;

/** A delivery-queue message: many memberships of one platform, packed (SQS bills per request). */
export const DeliveryMessageSchema = z.strictObject({
  v: z.literal(1),
  platformId: z.number().check(z.int(), z.gte(1)),
  /**
   * [segmentId, audienceId, dmpUserId, partnerUserId, op, ts, ttlSeconds?] per membership; op is
   * `a` (add), `r` (remove), `x` (the removal of the add at `ts` because it expired), or `A` / `R`
   * (an add / remove released from pending: counted in its event tally).
   */
  items: z
    .array(z.union([z.tuple([...ITEM_HEAD]), z.tuple([...ITEM_HEAD, z.number().check(z.int())])]))
    .check(z.minLength(1)),
});

export type DeliveryMessage = z.output<typeof DeliveryMessageSchema>;

/** Largest delivery message body we write: well inside SQS's 1 MiB and the batch call's total. */
export const MAX_DELIVERY_MESSAGE_BYTES = 96 * 1024;

function opCode(m: Membership): 'a' | 'r' | 'x' | 'A' | 'R' {
  if (m.expiry) return 'x';
  const code = m.op === 'add' ? 'a' : 'r';
  return m.released ? (code.toUpperCase() as 'A' | 'R') : code;
}

function toTuple(m: Membership): DeliveryMessage['items'][number] {
  const base = [m.segmentId, m.audienceId, m.dmpUserId, m.partnerUserId, opCode(m), m.ts] as const;
  return m.ttlSeconds === undefined ? [...base] : [...base, m.ttlSeconds];
}

export function decodeDeliveryMessage(body: string): Membership[] | undefined {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return undefined;
  }
  const parsed = DeliveryMessageSchema.safeParse(value);
  if (!parsed.success) return undefined;
  const { platformId } = parsed.data;
  return parsed.data.items.map((item) => ({
    platformId,
    segmentId: item[0],
    audienceId: item[1],
    dmpUserId: item[2],
    partnerUserId: item[3],
    op: item[4] === 'a' || item[4] === 'A' ? 'add' : 'remove',
    ts: item[5],
    ...(item[4] === 'x' ? { expiry: true as const } : {}),
    ...(item[4] === 'A' || item[4] === 'R' ? { released: true as const } : {}),
    ...(item[6] === undefined ? {} : { ttlSeconds: item[6] }),
  }));
}

/**
 * Packs memberships of one platform into delivery-message bodies of at most `maxUsers` items and
 * MAX_DELIVERY_MESSAGE_BYTES bytes each, in the order given.
 */
export function packDeliveryMessages(
  platformId: number,
  memberships: readonly Membership[],
  maxUsers: number,
  maxBytes: number = MAX_DELIVERY_MESSAGE_BYTES,
): string[] {
  const bodies: string[] = [];
  const head = `{"v":1,"platformId":${platformId},"items":[`;
  let items: string[] = [];
  let size = head.length + 2;
  const flush = () => {
    if (items.length > 0) bodies.push(`${head}${items.join(',')}]}`);
    items = [];
    size = head.length + 2;
  };
  for (const membership of memberships) {
    const encoded = JSON.stringify(toTuple(membership));
    const added = encoded.length + (items.length > 0 ? 1 : 0);
    if (items.length > 0 && (items.length >= maxUsers || size + added > maxBytes)) flush();
    items.push(encoded);
    size += encoded.length + (items.length > 1 ? 1 : 0);
  }
  flush();
  return bodies;
}

/** Key of the ordering unit. */
export function membershipKey(m: Pick<Membership, 'platformId' | 'segmentId' | 'dmpUserId'>): string {
  return `${m.platformId}#${m.segmentId}#${m.dmpUserId}`;
}

/** A membership as file staging takes it (src/files/staging.ts). */
export function toStaged(m: Membership): StagedMembership {
  return {
    platformId: m.platformId,
    segmentId: m.segmentId,
    audienceId: m.audienceId,
    dmpUserId: m.dmpUserId,
    partnerUserId: m.partnerUserId,
    op: m.op,
    ts: new Date(m.ts).toISOString(),
    ...(m.ttlSeconds === undefined ? {} : { ttlSeconds: m.ttlSeconds }),
  };
}

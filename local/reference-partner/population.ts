import { z } from 'zod';
import {
  isRecord,
  json,
  type PartnerRequest,
  type PartnerResponse,
  type PartnerRoute,
  parseJson,
  seedError,
} from './common.ts';

/**
 * The seed's segment population, as an honest platform implements it ("Segment Population"):
 *
 * - `POST /v1/segment?id=12345&userid=abcdef123` adds one user (200, empty body);
 * - `POST /v1/segment` with `[{"segment":12345,"userid":"abcdef123"}, ...]` adds a micro batch;
 * - `DELETE /v1/segment` (same two forms) removes.
 *
 * Like most real platforms it does not de-duplicate: every add it receives is counted, and an add
 * for a member already in is a visible duplicate (`duplicateAdds`). Its answers follow settings:
 * `answer` `count` (`{"status":"OK","processed":N}`, the seed's "amount of successful mutations")
 * or `empty` (200 and nothing, the seed's typical case); a bad item (unknown segment, malformed,
 * or a user id matching `rejectUserIds`) is either left out of the count with a per-item error
 * (`badItems: perItem`) or fails the whole batch with 400 (`badItems: rejectBatch`), as many
 * platforms do. Fault switches (faults.ts) add 429s, 5xx after the work, slow answers and resets.
 *
 * `GET /__population` shows what it holds; `PUT /__population/settings` changes the settings.
 */

/** How the seed API names segments: ids as decimal text inside, JSON numbers (or bigints) outside. */
export interface SegmentIds {
  /** The decimal text of an id sent to the partner; undefined if it is not one. */
  key(value: unknown): string | undefined;
  value(key: string): number | bigint;
  exists(key: string): boolean;
}

export const PopulationSettingsSchema = z
  .object({
    answer: z.enum(['count', 'empty']).default('count'),
    badItems: z.enum(['perItem', 'rejectBatch']).default('perItem'),
    /** A regular expression: user ids the partner refuses as malformed. */
    rejectUserIds: z.string().max(256).optional(),
    /** Items per batch call; more is refused with 413. */
    maxItems: z.number().int().min(1).max(1_000_000).default(10_000),
  })
  .strict();

export type PopulationSettings = z.output<typeof PopulationSettingsSchema>;

interface Member {
  /** Whether the user is in the segment now. */
  in: boolean;
  adds: number;
  removes: number;
  /** Adds received while already in. */
  duplicateAdds: number;
}

export interface SegmentPopulation {
  readonly segment_id: number | bigint;
  readonly memberCount: number;
  readonly adds: number;
  readonly removes: number;
  readonly duplicateAdds: number;
  readonly members?: string[];
}

export class SeedPopulation {
  private settings: PopulationSettings = PopulationSettingsSchema.parse({});
  /** Per segment, per user, in the order users were first seen. */
  private readonly bySegment = new Map<string, Map<string, Member>>();
  private calls = 0;

  constructor(private readonly ids: SegmentIds) {}

  readonly controlRoutes: readonly PartnerRoute[] = [
    {
      method: 'GET',
      path: '/__population',
      access: 'control',
      handle: ({ url }) =>
        json(200, {
          settings: this.settings,
          calls: this.calls,
          segments: this.state(url.searchParams.get('members') === 'true'),
        }),
    },
    {
      method: 'PUT',
      path: '/__population/settings',
      access: 'control',
      handle: ({ body }) => {
        const parsed = parseJson(body);
        const settings = parsed.ok ? PopulationSettingsSchema.safeParse(parsed.value) : undefined;
        if (!settings?.success) return seedError(400, 'settings: answer, badItems, rejectUserIds, maxItems');
        this.configure(settings.data);
        return json(200, { settings: this.settings });
      },
    },
  ];

  configure(settings: z.input<typeof PopulationSettingsSchema>): void {
    this.settings = PopulationSettingsSchema.parse(settings);
  }

  /** Users in a segment now, in the order they were first added. */
  members(segmentId: number | bigint | string): string[] {
    return [...(this.bySegment.get(String(segmentId)) ?? [])]
      .filter(([, member]) => member.in)
      .map(([user]) => user);
  }

  state(withMembers = false): SegmentPopulation[] {
    return [...this.bySegment].map(([segmentId, users]) => {
      let adds = 0;
      let removes = 0;
      let duplicateAdds = 0;
      for (const member of users.values()) {
        adds += member.adds;
        removes += member.removes;
        duplicateAdds += member.duplicateAdds;
      }
      const members = this.members(segmentId);
      return {
        segment_id: this.ids.value(segmentId),
        memberCount: members.length,
        adds,
        removes,
        duplicateAdds,
        ...(withMembers ? { members } : {}),
      };
    });
  }

  clear(): void {
    this.bySegment.clear();
    this.calls = 0;
    this.settings = PopulationSettingsSchema.parse({});
  }

  single({ query }: PartnerRequest, op: 'add' | 'remove'): PartnerResponse {
    this.calls++;
    const segmentId = this.ids.key(query.get('id') ?? '');
    const userId = query.get('userid') ?? '';
    if (segmentId === undefined || userId === '') return seedError(400, 'id and userid are required');
    if (!this.ids.exists(segmentId)) return seedError(404, 'unknown segment');
    if (this.refusesUser(userId)) return seedError(400, 'malformed userid');
    this.apply(segmentId, userId, op);
    return { status: 200 };
  }

  batch({ body }: PartnerRequest, op: 'add' | 'remove'): PartnerResponse {
    this.calls++;
    const parsed = parseJson(body);
    if (!parsed.ok || !Array.isArray(parsed.value)) return seedError(400, 'body must be a JSON array');
    if (parsed.value.length > this.settings.maxItems) {
      return seedError(413, `at most ${this.settings.maxItems} items per call`);
    }
    const errors: { index: number; error: string }[] = [];
    const good: { segmentId: string; userId: string }[] = [];
    parsed.value.forEach((item: unknown, index) => {
      const segment = isRecord(item) ? item['segment'] : undefined;
      const userId = isRecord(item) ? item['userid'] : undefined;
      // A segment id must be a JSON number (exact, bigints included), never a string.
      const segmentId = typeof segment === 'string' ? undefined : this.ids.key(segment);
      if (
        segmentId === undefined ||
        typeof userId !== 'string' ||
        userId === '' ||
        this.refusesUser(userId)
      ) {
        errors.push({ index, error: 'malformed item' });
      } else if (!this.ids.exists(segmentId)) {
        errors.push({ index, error: 'unknown segment' });
      } else {
        good.push({ segmentId, userId });
      }
    });
    if (errors.length > 0 && this.settings.badItems === 'rejectBatch') {
      return json(400, { status: 'ERROR', error: `${errors.length} bad item(s); nothing applied`, errors });
    }
    for (const { segmentId, userId } of good) this.apply(segmentId, userId, op);
    if (this.settings.answer === 'empty') return { status: 200 };
    return json(
      200,
      errors.length === 0
        ? { status: 'OK', processed: good.length }
        : { status: 'PARTIAL', processed: good.length, errors },
    );
  }

  private refusesUser(userId: string): boolean {
    const pattern = this.settings.rejectUserIds;
    return pattern !== undefined && new RegExp(pattern).test(userId);
  }

  /** Puts back a segment's members (a restart from `.local-data/`). */
  restore(segmentId: string, members: readonly string[]): void {
    for (const userId of members) this.apply(segmentId, userId, 'add');
  }

  private apply(segmentId: string, userId: string, op: 'add' | 'remove'): void {
    let users = this.bySegment.get(segmentId);
    if (!users) {
      users = new Map();
      this.bySegment.set(segmentId, users);
    }
    let member = users.get(userId);
    if (!member) {
      member = { in: false, adds: 0, removes: 0, duplicateAdds: 0 };
      users.set(userId, member);
    }
    if (op === 'add') {
      member.adds++;
      if (member.in) member.duplicateAdds++;
      member.in = true;
    } else {
      member.removes++;
      member.in = false;
    }
  }
}

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
 * The seed's segment API ("Segment Creation", "Segment Population"):
 *
 * - `POST /v1/segment?title=My%20segment[&kind=..][&external_id=..]` creates, answering
 *   `{"status":"OK","created":true,"segment_id":12345}`; the same title again answers
 *   `created:false` with the existing id; an `Idempotency-Key` header replays the first answer;
 * - `GET /v1/segments[?title=..]` looks up by exact title (all segments without one);
 * - `PUT /v1/segment/{id}?title=..` renames;
 * - `POST /v1/segment?id=12345&userid=abcdef123` adds one user (no batch: 200, empty body);
 * - `POST /v1/segment` with `[{"segment":12345,"userid":"abcdef123"},...]` adds a micro batch;
 * - `DELETE /v1/segment` (same two forms) removes.
 */

export const FIRST_SEGMENT_ID = 12345;

export interface SeedSegment {
  readonly segment_id: number;
  readonly title: string;
  readonly kind: string | null;
  readonly external_id: string | null;
}

interface StoredAnswer {
  readonly fingerprint: string;
  readonly response: PartnerResponse;
}

function fingerprint({ request, body }: PartnerRequest): string {
  return `${request.method} ${request.url}\n${body.toString('base64')}`;
}

export class SeedApi {
  private nextId = FIRST_SEGMENT_ID;
  private readonly byId = new Map<number, SeedSegment>();
  private readonly byTitle = new Map<string, number>();
  private readonly memberSets = new Map<number, Set<string>>();
  private readonly idempotencyKeys = new Map<string, StoredAnswer>();

  readonly routes: readonly PartnerRoute[] = [
    { method: 'POST', path: '/v1/segment', access: 'api', handle: (request) => this.post(request) },
    { method: 'DELETE', path: '/v1/segment', access: 'api', handle: (request) => this.remove(request) },
    { method: 'GET', path: '/v1/segments', access: 'api', handle: (request) => this.lookup(request) },
    {
      method: 'PUT',
      path: /^\/v1\/segment\/(?<id>[^/]+)$/,
      access: 'api',
      handle: (request) => this.rename(request),
    },
  ];

  segments(): SeedSegment[] {
    return [...this.byId.values()].map((segment) => ({ ...segment }));
  }

  members(segmentId: number): string[] {
    return [...(this.memberSets.get(segmentId) ?? [])];
  }

  clear(): void {
    this.nextId = FIRST_SEGMENT_ID;
    this.byId.clear();
    this.byTitle.clear();
    this.memberSets.clear();
    this.idempotencyKeys.clear();
  }

  private post(request: PartnerRequest): PartnerResponse {
    if (request.query.has('title')) return this.create(request);
    if (request.query.has('id') || request.query.has('userid')) return this.single(request, 'add');
    return this.batch(request, 'add');
  }

  private remove(request: PartnerRequest): PartnerResponse {
    if (request.query.has('id') || request.query.has('userid')) return this.single(request, 'remove');
    return this.batch(request, 'remove');
  }

  private create(request: PartnerRequest): PartnerResponse {
    const key = request.request.headers['idempotency-key'];
    const idempotencyKey = Array.isArray(key) ? key.join(', ') : key;
    if (idempotencyKey !== undefined) {
      const stored = this.idempotencyKeys.get(idempotencyKey);
      if (stored) {
        if (stored.fingerprint !== fingerprint(request)) {
          return seedError(422, 'idempotency key reused with a different request');
        }
        return { ...stored.response, headers: { ...stored.response.headers, 'idempotent-replayed': 'true' } };
      }
    }
    const response = this.createSegment(request);
    if (idempotencyKey !== undefined && response.status < 500) {
      this.idempotencyKeys.set(idempotencyKey, { fingerprint: fingerprint(request), response });
    }
    return response;
  }

  private createSegment({ query }: PartnerRequest): PartnerResponse {
    const title = query.get('title') ?? '';
    if (title.trim() === '') return seedError(400, 'missing title');
    const existing = this.byTitle.get(title);
    if (existing !== undefined) return json(200, { status: 'OK', created: false, segment_id: existing });
    const segment: SeedSegment = {
      segment_id: this.nextId++,
      title,
      kind: query.get('kind') || null,
      external_id: query.get('external_id') || null,
    };
    this.byId.set(segment.segment_id, segment);
    this.byTitle.set(title, segment.segment_id);
    this.memberSets.set(segment.segment_id, new Set());
    return json(200, { status: 'OK', created: true, segment_id: segment.segment_id });
  }

  private lookup({ query }: PartnerRequest): PartnerResponse {
    const title = query.get('title');
    const segments =
      title === undefined
        ? this.segments()
        : [this.byId.get(this.byTitle.get(title) ?? Number.NaN)].filter((segment) => segment !== undefined);
    return json(200, { segments });
  }

  private rename({ params, query }: PartnerRequest): PartnerResponse {
    const id = /^\d+$/.test(params['id'] ?? '') ? Number(params['id']) : Number.NaN;
    const segment = this.byId.get(id);
    if (!segment) return seedError(404, 'unknown segment');
    const title = query.get('title') ?? '';
    if (title.trim() === '') return seedError(400, 'missing title');
    const holder = this.byTitle.get(title);
    if (holder !== undefined && holder !== id) return seedError(409, 'title in use', { segment_id: holder });
    this.byTitle.delete(segment.title);
    this.byTitle.set(title, id);
    this.byId.set(id, { ...segment, title });
    return json(200, { status: 'OK', segment_id: id, title });
  }

  private single({ query }: PartnerRequest, op: 'add' | 'remove'): PartnerResponse {
    const rawId = query.get('id') ?? '';
    const userId = query.get('userid') ?? '';
    if (!/^\d+$/.test(rawId) || userId === '') return seedError(400, 'id and userid are required');
    const members = this.memberSets.get(Number(rawId));
    if (!members) return seedError(404, 'unknown segment');
    if (op === 'add') members.add(userId);
    else members.delete(userId);
    return { status: 200 };
  }

  private batch({ body }: PartnerRequest, op: 'add' | 'remove'): PartnerResponse {
    const parsed = parseJson(body);
    if (!parsed.ok || !Array.isArray(parsed.value)) return seedError(400, 'body must be a JSON array');
    const errors: { index: number; error: string }[] = [];
    let processed = 0;
    parsed.value.forEach((item: unknown, index) => {
      const segment = isRecord(item) ? item['segment'] : undefined;
      const userId = isRecord(item) ? item['userid'] : undefined;
      if (!Number.isSafeInteger(segment) || typeof userId !== 'string' || userId === '') {
        errors.push({ index, error: 'malformed item' });
        return;
      }
      const members = this.memberSets.get(segment as number);
      if (!members) {
        errors.push({ index, error: 'unknown segment' });
        return;
      }
      if (op === 'add') members.add(userId);
      else members.delete(userId);
      processed += 1;
    });
    return json(
      200,
      errors.length === 0 ? { status: 'OK', processed } : { status: 'PARTIAL', processed, errors },
    );
  }
}

import { json, type PartnerRequest, type PartnerResponse, type PartnerRoute, seedError } from './common.ts';
import { SeedPopulation } from './population.ts';

/**
 * The seed's segment API ("Segment Creation", "Segment Population"):
 *
 * - `POST /v1/segment?title=My%20segment[&kind=..][&external_id=..]` creates, answering
 *   `{"status":"OK","created":true,"segment_id":12345}`; the same title again answers
 *   `created:false` with the existing id; an `Idempotency-Key` header replays the first answer;
 * - `GET /v1/segments[?title=..]` looks up by exact title (all segments without one);
 * - `PUT /v1/segment/{id}?title=..` renames;
 * - population (`POST`/`DELETE /v1/segment` with `id`+`userid`, or a JSON array): population.ts.
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
  readonly population = new SeedPopulation((segmentId) => this.byId.has(segmentId));
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
    ...this.population.controlRoutes,
  ];

  segments(): SeedSegment[] {
    return [...this.byId.values()].map((segment) => ({ ...segment }));
  }

  members(segmentId: number): string[] {
    return this.population.members(segmentId);
  }

  clear(): void {
    this.nextId = FIRST_SEGMENT_ID;
    this.byId.clear();
    this.byTitle.clear();
    this.population.clear();
    this.idempotencyKeys.clear();
  }

  private post(request: PartnerRequest): PartnerResponse {
    if (request.query.has('title')) return this.create(request);
    if (request.query.has('id') || request.query.has('userid')) return this.population.single(request, 'add');
    return this.population.batch(request, 'add');
  }

  private remove(request: PartnerRequest): PartnerResponse {
    if (request.query.has('id') || request.query.has('userid'))
      return this.population.single(request, 'remove');
    return this.population.batch(request, 'remove');
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
}

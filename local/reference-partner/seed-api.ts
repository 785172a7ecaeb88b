import { json, type PartnerRequest, type PartnerResponse, type PartnerRoute, seedError } from './common.ts';
import { SeedPopulation } from './population.ts';

/**
 * The seed's segment API ("Segment Creation", "Segment Population"):
 *
 * - `POST /v1/segment?title=My%20segment[&kind=..][&external_id=..]` creates, answering
 *   `{"status":"OK","created":true,"segment_id":12345}`. Like most real platforms, the same title
 *   again creates a second segment (unless `dedupeTitles` is set: then it answers `created:false`
 *   with the existing id); an `Idempotency-Key` header replays the first answer. Ids are JSON
 *   numbers; the `bigId` fault makes them exceed 2^53 (a client reading them as doubles loses digits);
 * - `GET /v1/segments[?title=..]` looks up by exact title, oldest first (all segments without one);
 * - `PUT /v1/segment/{id}?title=..` renames;
 * - population (`POST`/`DELETE /v1/segment` with `id`+`userid`, or a JSON array): population.ts.
 */

export const FIRST_SEGMENT_ID = 12345;
/** Where ids given under the `bigId` fault start: above 2^53, as in issue reports of real partners. */
export const FIRST_BIG_SEGMENT_ID = 90071992547412345n;

export interface SeedSegment {
  /** A number, or a bigint when beyond 2^53 (written in JSON as a number of the same digits). */
  readonly segment_id: number | bigint;
  readonly title: string;
  readonly kind: string | null;
  readonly external_id: string | null;
}

/** Everything the seed API knows, as JSON-safe data (ids as decimal text): see snapshot(). */
export interface SeedState {
  readonly nextId: number;
  readonly nextBigId: string;
  readonly segments: readonly {
    readonly id: string;
    readonly title: string;
    readonly kind: string | null;
    readonly external_id: string | null;
    readonly members: readonly string[];
  }[];
  readonly idempotencyKeys: readonly { key: string; fingerprint: string; response: PartnerResponse }[];
}

/** An id as the JSON value the partner writes: a number while exact, else a bigint. */
function idValue(id: string): number | bigint {
  const big = BigInt(id);
  return big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
}

/** The decimal text of an id sent to us (query text, JSON number or bigint); undefined if not an id. */
function idKey(value: unknown): string | undefined {
  if (typeof value === 'string') return /^\d{1,30}$/.test(value) ? BigInt(value).toString() : undefined;
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? String(value) : undefined;
  if (typeof value === 'bigint') return value >= 0n ? value.toString() : undefined;
  return undefined;
}

export interface SeedApiOptions {
  /** Answer a repeated title with the existing segment (`created:false`); off by default. */
  dedupeTitles?: boolean;
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
  private nextBigId = FIRST_BIG_SEGMENT_ID;
  /** Keyed by the id's decimal text. */
  private readonly byId = new Map<string, SeedSegment>();
  readonly population = new SeedPopulation({
    key: idKey,
    value: idValue,
    exists: (id) => this.byId.has(id),
  });
  private readonly idempotencyKeys = new Map<string, StoredAnswer>();

  constructor(readonly options: SeedApiOptions = {}) {}

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

  members(segmentId: number | bigint | string): string[] {
    return this.population.members(segmentId);
  }

  clear(): void {
    this.nextId = FIRST_SEGMENT_ID;
    this.nextBigId = FIRST_BIG_SEGMENT_ID;
    this.byId.clear();
    this.population.clear();
    this.idempotencyKeys.clear();
  }

  /** The whole state, for keeping it across restarts (local/stack.ts, `.local-data/`). */
  snapshot(): SeedState {
    return {
      nextId: this.nextId,
      nextBigId: this.nextBigId.toString(),
      segments: [...this.byId.entries()].map(([id, segment]) => ({
        id,
        title: segment.title,
        kind: segment.kind,
        external_id: segment.external_id,
        members: this.members(id),
      })),
      idempotencyKeys: [...this.idempotencyKeys.entries()].map(([key, stored]) => ({ key, ...stored })),
    };
  }

  /** Replaces the state by a snapshot's. */
  restore(state: SeedState): void {
    this.clear();
    this.nextId = state.nextId;
    this.nextBigId = BigInt(state.nextBigId);
    for (const segment of state.segments) {
      const { id, members, ...fields } = segment;
      this.byId.set(id, { segment_id: idValue(id), ...fields });
      this.population.restore(id, members);
    }
    for (const { key, fingerprint, response } of state.idempotencyKeys) {
      this.idempotencyKeys.set(key, { fingerprint, response });
    }
  }

  /** Ids of the segments with this exact title, oldest first. */
  private withTitle(title: string): string[] {
    return [...this.byId.entries()].filter(([, segment]) => segment.title === title).map(([id]) => id);
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

  private createSegment({ query, fault }: PartnerRequest): PartnerResponse {
    const title = query.get('title') ?? '';
    if (title.trim() === '') return seedError(400, 'missing title');
    const existing = this.options.dedupeTitles ? this.withTitle(title)[0] : undefined;
    if (existing !== undefined)
      return json(200, { status: 'OK', created: false, segment_id: idValue(existing) });
    const id = fault?.bigId ? (this.nextBigId++).toString() : String(this.nextId++);
    const segment: SeedSegment = {
      segment_id: idValue(id),
      title,
      kind: query.get('kind') || null,
      external_id: query.get('external_id') || null,
    };
    this.byId.set(id, segment);
    return json(200, { status: 'OK', created: true, segment_id: segment.segment_id });
  }

  private lookup({ query }: PartnerRequest): PartnerResponse {
    const title = query.get('title');
    const segments =
      title === undefined
        ? this.segments()
        : this.withTitle(title).map((id) => ({ ...(this.byId.get(id) as SeedSegment) }));
    return json(200, { segments });
  }

  private rename({ params, query }: PartnerRequest): PartnerResponse {
    const id = idKey(params['id']);
    const segment = id === undefined ? undefined : this.byId.get(id);
    if (id === undefined || !segment) return seedError(404, 'unknown segment');
    const title = query.get('title') ?? '';
    if (title.trim() === '') return seedError(400, 'missing title');
    const holder = this.withTitle(title).find((other) => other !== id);
    if (holder !== undefined) return seedError(409, 'title in use', { segment_id: idValue(holder) });
    this.byId.set(id, { ...segment, title });
    return json(200, { status: 'OK', segment_id: segment.segment_id, title });
  }
}

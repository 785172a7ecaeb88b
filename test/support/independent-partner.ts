import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A second partner, written from the seed's text alone ("Segment Creation", "Segment Population")
 * and sharing no code with local/reference-partner: what the service must also work with.
 *
 * - `POST /v1/segment?title=<name>` creates a segment: `{"status":"OK","created":true,"segment_id":<n>}`,
 *   ids are JSON numbers counting up from 700001;
 * - no batch: `POST /v1/segment?id=<n>&userid=<u>` adds one user, `DELETE` with the same query
 *   removes it; 200 with no body ("typically these calls have no response but only a 200 OK");
 * - micro batch: `POST /v1/segment` with `[{"segment":<n>,"userid":"<u>"}, ...]` adds, `DELETE`
 *   with the same array removes; the answer is only the count of applied mutations
 *   (`{"mutations":<count>}`, "sometimes the amount of successful mutations is returned");
 * - it is strict: the segment must be a JSON number of a segment it created, the user id a
 *   non-empty string, or the whole call is refused with 400; basic authentication or 401;
 * - like most platforms it keeps no record of what it was sent before: an add of a member is
 *   applied (and counted) again;
 * - `failEvery: n`: every n-th population call is applied and then answered 500, the partner
 *   failure that makes delivery at-least-once; the users of those calls are recorded.
 */

export interface IndependentPartnerOptions {
  readonly username: string;
  readonly password: string;
  readonly failEvery?: number;
}

interface Mutation {
  readonly segment: number;
  readonly userid: string;
}

export class IndependentPartner {
  private server: Server | undefined;
  private nextSegment = 700_001;
  private readonly segments = new Map<number, { title: string; members: Set<string> }>();
  /** Adds received per `${segment}#${user}` (a repeat counts again). */
  private readonly addsReceived = new Map<string, number>();
  private readonly failedAfterWork = new Set<string>();
  private populationCalls = 0;
  /** Population calls received, by shape. */
  readonly calls = { single: 0, batch: 0, refused: 0 };

  constructor(private readonly options: IndependentPartnerOptions) {}

  async start(): Promise<string> {
    this.server = createServer((request, response) => {
      this.handle(request, response).catch(() => {
        if (!response.headersSent) response.writeHead(500).end();
      });
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  segmentIdOf(title: string): number | undefined {
    for (const [id, segment] of this.segments) if (segment.title === title) return id;
    return undefined;
  }

  members(segment: number): Set<string> {
    return new Set(this.segments.get(segment)?.members ?? []);
  }

  /** How many adds of this user the segment received (repeats included). */
  addsOf(segment: number, userid: string): number {
    return this.addsReceived.get(`${segment}#${userid}`) ?? 0;
  }

  /** Users of the segment that were sent more than one add. */
  repeatedAdds(segment: number): Set<string> {
    const out = new Set<string>();
    for (const [key, count] of this.addsReceived) {
      const [id, userid] = [key.slice(0, key.indexOf('#')), key.slice(key.indexOf('#') + 1)];
      if (Number(id) === segment && count > 1) out.add(userid);
    }
    return out;
  }

  /** Users (`${segment}#${user}`) of the calls answered 500 after they were applied. */
  usersOfFailedCalls(): Set<string> {
    return new Set(this.failedAfterWork);
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const body = await readAll(request);
    const url = new URL(request.url ?? '/', 'http://partner');
    if (!this.authorized(request.headers.authorization)) {
      response.writeHead(401, { 'www-authenticate': 'Basic realm="partner"' }).end();
      return;
    }
    if (url.pathname !== '/v1/segment') {
      response.writeHead(404).end();
      return;
    }
    const title = url.searchParams.get('title');
    if (request.method === 'POST' && title !== null) {
      const id = this.nextSegment++;
      this.segments.set(id, { title, members: new Set() });
      send(response, 200, { status: 'OK', created: true, segment_id: id });
      return;
    }
    if (request.method !== 'POST' && request.method !== 'DELETE') {
      response.writeHead(405).end();
      return;
    }
    const op = request.method === 'POST' ? 'add' : 'remove';
    const id = url.searchParams.get('id');
    const userid = url.searchParams.get('userid');
    let mutations: Mutation[];
    if (id !== null || userid !== null) {
      this.calls.single++;
      mutations = [{ segment: Number(id), userid: userid ?? '' }];
    } else {
      this.calls.batch++;
      let parsed: unknown;
      try {
        parsed = JSON.parse(body);
      } catch {
        this.refuse(response, 'the body is not JSON');
        return;
      }
      if (!Array.isArray(parsed) || parsed.length === 0) {
        this.refuse(response, 'expected a non-empty array of {segment, userid}');
        return;
      }
      mutations = parsed as Mutation[];
    }
    for (const mutation of mutations) {
      if (!Number.isSafeInteger(mutation?.segment) || !this.segments.has(mutation.segment)) {
        this.refuse(response, `unknown segment ${JSON.stringify(mutation?.segment)}`);
        return;
      }
      if (typeof mutation.userid !== 'string' || mutation.userid === '') {
        this.refuse(response, 'userid must be a non-empty string');
        return;
      }
    }
    for (const { segment, userid } of mutations) {
      const members = this.segments.get(segment)?.members as Set<string>;
      if (op === 'add') {
        members.add(userid);
        const key = `${segment}#${userid}`;
        this.addsReceived.set(key, (this.addsReceived.get(key) ?? 0) + 1);
      } else members.delete(userid);
    }
    this.populationCalls++;
    const failEvery = this.options.failEvery ?? 0;
    if (failEvery > 0 && this.populationCalls % failEvery === 0) {
      for (const { segment, userid } of mutations) this.failedAfterWork.add(`${segment}#${userid}`);
      response.writeHead(500).end();
      return;
    }
    if (id !== null || userid !== null) response.writeHead(200).end();
    else send(response, 200, { mutations: mutations.length });
  }

  private refuse(response: ServerResponse, error: string): void {
    this.calls.refused++;
    send(response, 400, { status: 'ERROR', error });
  }

  private authorized(header: string | undefined): boolean {
    const expected = Buffer.from(
      `Basic ${Buffer.from(`${this.options.username}:${this.options.password}`).toString('base64')}`,
    );
    const given = Buffer.from(header ?? '');
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}

function send(response: ServerResponse, status: number, value: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value));
}

async function readAll(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

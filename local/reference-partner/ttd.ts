import {
  isRecord,
  json,
  type PartnerRequest,
  type PartnerResponse,
  type PartnerRoute,
  parseJson,
} from './common.ts';

/**
 * A Trade-Desk-like first-party data API under `/ttd/`: `POST /ttd/data/advertiser` with
 * `{"AdvertiserId":"..","Items":[{"TDID":"..","Data":[{"Name":"<segment>","TTLInMinutes":43200}]}]}`.
 * A segment exists once something is uploaded to its name; `TTLInMinutes: 0` removes the user.
 * Bodies over 2.5 MB are refused with 413; malformed lines are reported, the others applied:
 * `{"FailedLines":[{"Index":i,"Message":".."}]}`.
 */

/** 2.5 MiB. */
export const TTD_MAX_BODY_BYTES = 2.5 * 1024 * 1024;
const ID_FIELDS = ['TDID', 'DAID', 'UID2'] as const;

export interface TtdSegment {
  readonly advertiserId: string;
  readonly name: string;
  /** Members whose TTL has not passed. */
  readonly members: number;
}

function ttdError(status: number, message: string): PartnerResponse {
  return json(status, { Message: message });
}

type Line = { readonly id: string; readonly data: readonly { name: string; ttlMinutes: number }[] } | string;

/** A valid line, or why it is not. */
function readLine(item: unknown): Line {
  if (!isRecord(item)) return 'Item must be an object';
  const field = ID_FIELDS.find((name) => item[name] !== undefined);
  const id = field === undefined ? undefined : item[field];
  if (typeof id !== 'string' || id.trim() === '') return 'Item needs a non-empty TDID, DAID or UID2';
  const data = item['Data'];
  if (!Array.isArray(data) || data.length === 0) return 'Data must be a non-empty array';
  const entries: { name: string; ttlMinutes: number }[] = [];
  for (const [index, entry] of data.entries()) {
    if (!isRecord(entry)) return `Data[${index}] must be an object`;
    const name = entry['Name'];
    const ttl = entry['TTLInMinutes'];
    if (typeof name !== 'string' || name.trim() === '')
      return `Data[${index}].Name must be a non-empty string`;
    if (!Number.isSafeInteger(ttl) || (ttl as number) < 0) {
      return `Data[${index}].TTLInMinutes must be a non-negative integer`;
    }
    entries.push({ name, ttlMinutes: ttl as number });
  }
  return { id, data: entries };
}

export class TtdApi {
  /** Advertiser -> segment name -> user id -> expiry (ms). */
  private readonly store = new Map<string, Map<string, Map<string, number>>>();

  constructor(
    private readonly now: () => number,
    private readonly maxBodyBytes = TTD_MAX_BODY_BYTES,
  ) {}

  readonly routes: readonly PartnerRoute[] = [
    {
      method: 'POST',
      path: '/ttd/data/advertiser',
      access: 'api',
      handle: (request) => this.upload(request),
    },
  ];

  segments(): TtdSegment[] {
    const now = this.now();
    return [...this.store].flatMap(([advertiserId, segments]) =>
      [...segments].map(([name, members]) => ({
        advertiserId,
        name,
        members: [...members.values()].filter((expiry) => expiry > now).length,
      })),
    );
  }

  members(advertiserId: string, name: string): string[] {
    const now = this.now();
    const members = this.store.get(advertiserId)?.get(name) ?? new Map<string, number>();
    return [...members].filter(([, expiry]) => expiry > now).map(([id]) => id);
  }

  clear(): void {
    this.store.clear();
  }

  private upload({ body }: PartnerRequest): PartnerResponse {
    if (body.length > this.maxBodyBytes) {
      return ttdError(
        413,
        `Request body of ${body.length} bytes exceeds the limit of ${this.maxBodyBytes} bytes`,
      );
    }
    const parsed = parseJson(body);
    if (!parsed.ok || !isRecord(parsed.value)) return ttdError(400, 'The request body must be a JSON object');
    const advertiserId = parsed.value['AdvertiserId'];
    if (typeof advertiserId !== 'string' || advertiserId.trim() === '') {
      return ttdError(400, 'AdvertiserId is required');
    }
    const items = parsed.value['Items'];
    if (!Array.isArray(items)) return ttdError(400, 'Items must be an array');

    const failed: { Index: number; Message: string }[] = [];
    const now = this.now();
    items.forEach((item: unknown, index) => {
      const line = readLine(item);
      if (typeof line === 'string') {
        failed.push({ Index: index, Message: line });
        return;
      }
      const segments = this.store.get(advertiserId) ?? new Map<string, Map<string, number>>();
      this.store.set(advertiserId, segments);
      for (const { name, ttlMinutes } of line.data) {
        const members = segments.get(name) ?? new Map<string, number>();
        segments.set(name, members);
        if (ttlMinutes === 0) members.delete(line.id);
        else members.set(line.id, now + ttlMinutes * 60_000);
      }
    });
    return json(200, { FailedLines: failed });
  }
}

import { randomBytes } from 'node:crypto';
import {
  isRecord,
  json,
  type PartnerRequest,
  type PartnerResponse,
  type PartnerRoute,
  parseFields,
} from './common.ts';

/**
 * A Meta-like custom audience API under `/meta/` (Graph API shapes; an optional version segment
 * such as `/meta/v21.0/...` is accepted):
 *
 * - `POST /meta/act_{adAccountId}/customaudiences` (JSON or form: `name`, `subtype`, `description`,
 *   `customer_file_source`) -> `{"id":"23850000000000001"}`; like Meta, the same name twice makes
 *   two audiences;
 * - `GET /meta/act_{adAccountId}/customaudiences[?name=..]` -> `{"data":[{"id","name"}]}`;
 * - `GET /meta/{audienceId}`, `POST /meta/{audienceId}` (`name`, `description`: update ->
 *   `{"success":true}`), `DELETE /meta/{audienceId}`;
 * - `POST|DELETE /meta/{audienceId}/users` with `{"payload":{"schema":"EXTERN_ID","data":[["id1"]]}}`
 *   (at most 10,000 rows) adds or removes members.
 */

export const META_FIRST_AUDIENCE_ID = 23850000000000001n;
export const META_MAX_ROWS = 10_000;

const VERSION = '(?:/v\\d+\\.\\d+)?';
const AUDIENCES = new RegExp(`^/meta${VERSION}/act_(?<account>\\d+)/customaudiences$`);
const AUDIENCE = new RegExp(`^/meta${VERSION}/(?<audience>\\d+)$`);
const USERS = new RegExp(`^/meta${VERSION}/(?<audience>\\d+)/users$`);

const SUBTYPES = new Set(['CUSTOM', 'WEBSITE', 'APP', 'OFFLINE_CONVERSION', 'LOOKALIKE', 'ENGAGEMENT']);
const FILE_SOURCES = new Set([
  'USER_PROVIDED_ONLY',
  'PARTNER_PROVIDED_ONLY',
  'BOTH_USER_AND_PARTNER_PROVIDED',
]);
/** Schemas whose values are SHA-256 hex of normalized identifiers. */
const HASHED_SCHEMAS = new Set([
  'EMAIL_SHA256',
  'PHONE_SHA256',
  'FN_SHA256',
  'LN_SHA256',
  'CT_SHA256',
  'ZIP_SHA256',
  'COUNTRY_SHA256',
  'GEN_SHA256',
  'DOBY_SHA256',
  'EMAIL',
  'PHONE',
]);
const PLAIN_SCHEMAS = new Set(['EXTERN_ID', 'MADID', 'PAGEUID']);

export interface MetaAudience {
  readonly id: string;
  readonly adAccountId: string;
  readonly name: string;
  readonly subtype: string;
  readonly description: string | null;
  readonly customer_file_source: string | null;
}

/** The Graph API's error envelope. */
export function metaError(
  status: number,
  message: string,
  extra: { type?: string; code?: number; error_subcode?: number } = {},
): PartnerResponse {
  return json(status, {
    error: {
      message,
      type: extra.type ?? 'OAuthException',
      code: extra.code ?? 100,
      ...(extra.error_subcode !== undefined ? { error_subcode: extra.error_subcode } : {}),
      fbtrace_id: randomBytes(8).toString('base64url'),
    },
  });
}

function noSuchObject(id: string): PartnerResponse {
  return metaError(
    400,
    `Unsupported request. Object with ID '${id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation.`,
    { type: 'GraphMethodException', code: 100, error_subcode: 33 },
  );
}

function optionalString(value: unknown): string | null | undefined {
  if (value === undefined || value === null) return null;
  return typeof value === 'string' ? value : undefined;
}

export class MetaApi {
  private nextId = META_FIRST_AUDIENCE_ID;
  private readonly audienceMap = new Map<string, MetaAudience>();
  private readonly memberSets = new Map<string, Set<string>>();

  constructor(private readonly maxRows = META_MAX_ROWS) {}

  readonly routes: readonly PartnerRoute[] = [
    { method: 'POST', path: AUDIENCES, access: 'api', handle: (request) => this.create(request) },
    { method: 'GET', path: AUDIENCES, access: 'api', handle: (request) => this.list(request) },
    { method: 'POST', path: USERS, access: 'api', handle: (request) => this.users(request, 'add') },
    { method: 'DELETE', path: USERS, access: 'api', handle: (request) => this.users(request, 'remove') },
    { method: 'GET', path: AUDIENCE, access: 'api', handle: (request) => this.read(request) },
    { method: 'POST', path: AUDIENCE, access: 'api', handle: (request) => this.update(request) },
    { method: 'DELETE', path: AUDIENCE, access: 'api', handle: (request) => this.delete(request) },
  ];

  audiences(): MetaAudience[] {
    return [...this.audienceMap.values()].map((audience) => ({ ...audience }));
  }

  members(audienceId: string): string[] {
    return [...(this.memberSets.get(audienceId) ?? [])];
  }

  clear(): void {
    this.nextId = META_FIRST_AUDIENCE_ID;
    this.audienceMap.clear();
    this.memberSets.clear();
  }

  private create({ request, body, params }: PartnerRequest): PartnerResponse {
    const fields = parseFields(request, body);
    if (!fields) return metaError(400, 'Invalid parameter: the body is neither JSON nor form fields');
    const name = fields['name'];
    if (typeof name !== 'string' || name.trim() === '') {
      return metaError(400, '(#100) The parameter name is required');
    }
    const subtype = fields['subtype'] ?? 'CUSTOM';
    if (typeof subtype !== 'string' || !SUBTYPES.has(subtype)) {
      return metaError(400, `(#100) Invalid subtype: ${JSON.stringify(subtype)}`);
    }
    const description = optionalString(fields['description']);
    const source = optionalString(fields['customer_file_source']);
    if (description === undefined) return metaError(400, '(#100) description must be a string');
    if (source === undefined || (source !== null && !FILE_SOURCES.has(source))) {
      return metaError(
        400,
        `(#100) Invalid customer_file_source: ${JSON.stringify(fields['customer_file_source'])}`,
      );
    }
    const id = String(this.nextId++);
    this.audienceMap.set(id, {
      id,
      adAccountId: params['account'] ?? '',
      name,
      subtype,
      description,
      customer_file_source: source,
    });
    this.memberSets.set(id, new Set());
    return json(200, { id });
  }

  private list({ params, query }: PartnerRequest): PartnerResponse {
    const name = query.get('name');
    const data = this.audiences()
      .filter((audience) => audience.adAccountId === params['account'])
      .filter((audience) => name === undefined || audience.name === name)
      .map((audience) => ({ id: audience.id, name: audience.name }));
    return json(200, { data });
  }

  private read({ params }: PartnerRequest): PartnerResponse {
    const id = params['audience'] ?? '';
    const audience = this.audienceMap.get(id);
    if (!audience) return noSuchObject(id);
    const { adAccountId: _account, ...fields } = audience;
    return json(200, { ...fields, approximate_count: this.memberSets.get(id)?.size ?? 0 });
  }

  private update({ request, body, params }: PartnerRequest): PartnerResponse {
    const id = params['audience'] ?? '';
    const audience = this.audienceMap.get(id);
    if (!audience) return noSuchObject(id);
    const fields = parseFields(request, body);
    if (!fields) return metaError(400, 'Invalid parameter: the body is neither JSON nor form fields');
    const name = fields['name'];
    if (name !== undefined && (typeof name !== 'string' || name.trim() === '')) {
      return metaError(400, '(#100) name must be a non-empty string');
    }
    const description =
      fields['description'] === undefined ? audience.description : optionalString(fields['description']);
    if (description === undefined) return metaError(400, '(#100) description must be a string');
    this.audienceMap.set(id, { ...audience, name: name ?? audience.name, description });
    return json(200, { success: true });
  }

  private delete({ params }: PartnerRequest): PartnerResponse {
    const id = params['audience'] ?? '';
    if (!this.audienceMap.delete(id)) return noSuchObject(id);
    this.memberSets.delete(id);
    return json(200, { success: true });
  }

  private users({ request, body, params }: PartnerRequest, op: 'add' | 'remove'): PartnerResponse {
    const id = params['audience'] ?? '';
    const members = this.memberSets.get(id);
    if (!members) return noSuchObject(id);
    const fields = parseFields(request, body);
    if (!fields) return metaError(400, 'Invalid parameter: the body is neither JSON nor form fields');
    let payload = fields['payload'];
    let session = fields['session'];
    try {
      // Form bodies carry payload and session as JSON text.
      if (typeof payload === 'string') payload = JSON.parse(payload) as unknown;
      if (typeof session === 'string') session = JSON.parse(session) as unknown;
    } catch {
      return metaError(400, '(#100) payload and session must be JSON');
    }
    if (!isRecord(payload)) return metaError(400, '(#100) The parameter payload is required');
    const schemaField = payload['schema'];
    const schema = Array.isArray(schemaField) && schemaField.length === 1 ? schemaField[0] : schemaField;
    if (typeof schema !== 'string' || !(PLAIN_SCHEMAS.has(schema) || HASHED_SCHEMAS.has(schema))) {
      return metaError(
        400,
        `(#100) Invalid schema: ${JSON.stringify(schemaField)} (one key schemas only here)`,
      );
    }
    const data = payload['data'];
    if (!Array.isArray(data) || data.length === 0)
      return metaError(400, '(#100) payload.data must be a non-empty array');
    if (data.length > this.maxRows) {
      return metaError(
        400,
        `(#100) Too many users in the payload: ${data.length}, the maximum is ${this.maxRows}`,
      );
    }
    if (session !== undefined && !isRecord(session))
      return metaError(400, '(#100) session must be an object');

    const hashed = HASHED_SCHEMAS.has(schema);
    const valid: string[] = [];
    let invalid = 0;
    for (const row of data) {
      const value: unknown = Array.isArray(row) && row.length === 1 ? row[0] : row;
      if (typeof value !== 'string' || value === '' || (hashed && !/^[0-9a-f]{64}$/.test(value)))
        invalid += 1;
      else valid.push(value);
    }
    for (const value of valid) {
      if (op === 'add') members.add(value);
      else members.delete(value);
    }
    const sessionId = isRecord(session) ? session['session_id'] : undefined;
    return json(200, {
      audience_id: id,
      ...(sessionId !== undefined ? { session_id: String(sessionId) } : {}),
      num_received: data.length,
      num_invalid_entries: invalid,
      ...(invalid > 0 ? { invalid_entry_samples: {} } : {}),
    });
  }
}

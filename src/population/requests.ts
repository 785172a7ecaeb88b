import type { Connector, RequestTemplate } from '../config/connector.ts';
import { stringifyJsonExact } from '../connectors/json.ts';
import {
  type RenderedRequest,
  renderJson,
  renderRequest,
  TemplateError,
  type TemplateValue,
} from '../connectors/templates.ts';
import type { Membership, Op } from './membership.ts';

/**
 * Partner requests for memberships, rendered from the connector's templates:
 *
 * - batch mode: one request per group of memberships that can share one (same op; same segment
 *   only when the request itself names the segment, as a path `/segments/{segmentId}/users`; same
 *   TTL only when the request names it), holding at most `batchSize` items and at most
 *   `maxRequestBytes` of body. A batch may mix segments, as the seed's example does.
 * - single mode: one request per membership.
 *
 * Placeholders: `{userId}` (the partner's user id), `{segmentId}`, `{segmentIdNumber}`,
 * `{ttlSeconds}`, `{ttlMinutes}`, `{op}`, `{platformId}`, `{environment}`, `{var.<key>}`, and
 * `{items}` (the rendered `item` template of each membership) in batch mode.
 */

export interface PlannedRequest<T extends Membership> {
  readonly request: RenderedRequest;
  readonly items: readonly T[];
}

export interface RequestPlan<T extends Membership> {
  readonly requests: PlannedRequest<T>[];
  /** Memberships that cannot be sent: the reason, and which. */
  readonly refused: {
    readonly item: T;
    readonly reason: 'item_too_large' | 'removal_unsupported' | 'template';
    readonly detail: string;
  }[];
}

export interface PlanContext {
  readonly connector: Connector;
  readonly environment: string;
}

/** The request template for an op, or undefined when the partner takes no such call. */
export function templateFor(connector: Connector, op: Op): RequestTemplate | undefined {
  const { population } = connector;
  const template =
    op === 'add'
      ? population.add
      : population.removal.via === 'call'
        ? population.removal.request
        : undefined;
  // In batch mode a request without a body template sends the items array itself (the seed's form).
  if (template && population.mode === 'batch' && template.body === undefined)
    return { ...template, body: '{items}' };
  return template;
}

function uses(template: unknown, ...names: string[]): boolean {
  const text = JSON.stringify(template) ?? '';
  return names.some((name) => text.includes(`{${name}}`));
}

/** Whether the partner receives a lifetime with each membership (then removals may expire). */
export function partnerTakesTtl(connector: Connector): boolean {
  const { add, item } = connector.population;
  return uses(add, 'ttlSeconds', 'ttlMinutes') || uses(item, 'ttlSeconds', 'ttlMinutes');
}

function baseValues(context: PlanContext): Record<string, TemplateValue> {
  const values: Record<string, TemplateValue> = {
    platformId: 0,
    environment: context.environment,
  };
  for (const [key, value] of Object.entries(context.connector.api.variables)) values[`var.${key}`] = value;
  return values;
}

export function membershipValues(
  membership: Membership,
  context: PlanContext,
): Record<string, TemplateValue> {
  const ttl = membership.ttlSeconds ?? context.connector.population.defaultTtlSeconds;
  const values: Record<string, TemplateValue> = {
    ...baseValues(context),
    platformId: membership.platformId,
    userId: membership.partnerUserId,
    segmentId: membership.segmentId,
    op: membership.op,
  };
  // Beyond 15 digits a double may not hold the id exactly: a bigint, written as the same digits.
  if (/^\d{1,15}$/.test(membership.segmentId)) values['segmentIdNumber'] = Number(membership.segmentId);
  else if (/^[1-9]\d*$/.test(membership.segmentId)) values['segmentIdNumber'] = BigInt(membership.segmentId);
  if (ttl !== undefined) {
    values['ttlSeconds'] = ttl;
    values['ttlMinutes'] = Math.max(1, Math.ceil(ttl / 60));
  }
  return values;
}

/** Values of a batch request: what every item of the group shares. */
function groupValues(first: Membership, context: PlanContext, template: RequestTemplate) {
  const item = membershipValues(first, context);
  const values: Record<string, TemplateValue> = {
    ...baseValues(context),
    platformId: first.platformId,
    op: first.op,
  };
  for (const name of ['segmentId', 'segmentIdNumber', 'ttlSeconds', 'ttlMinutes']) {
    if (uses(template, name) && item[name] !== undefined) values[name] = item[name] as TemplateValue;
  }
  return values;
}

function groupKey(membership: Membership, context: PlanContext, template: RequestTemplate): string {
  const parts: string[] = [membership.op];
  if (uses(template, 'segmentId', 'segmentIdNumber')) parts.push(membership.segmentId);
  if (uses(template, 'ttlSeconds', 'ttlMinutes')) {
    parts.push(String(membership.ttlSeconds ?? context.connector.population.defaultTtlSeconds ?? ''));
  }
  return parts.join('\u0000');
}

export function planRequests<T extends Membership>(
  memberships: readonly T[],
  context: PlanContext,
): RequestPlan<T> {
  const { population } = context.connector;
  const requests: PlannedRequest<T>[] = [];
  const refused: RequestPlan<T>['refused'][number][] = [];
  const groups = new Map<string, { template: RequestTemplate; items: T[] }>();
  for (const membership of memberships) {
    const template = templateFor(context.connector, membership.op);
    if (!template) {
      refused.push({
        item: membership,
        reason: 'removal_unsupported',
        detail: `the partner takes no removal call (removal via ${population.removal.via})`,
      });
      continue;
    }
    if (population.mode !== 'batch') {
      try {
        requests.push({
          request: renderRequest(template, membershipValues(membership, context)),
          items: [membership],
        });
      } catch (error) {
        if (!(error instanceof TemplateError)) throw error;
        refused.push({ item: membership, reason: 'template', detail: error.message });
      }
      continue;
    }
    const key = groupKey(membership, context, template);
    let group = groups.get(key);
    if (!group) {
      group = { template, items: [] };
      groups.set(key, group);
    }
    group.items.push(membership);
  }
  for (const { template, items } of groups.values()) {
    try {
      const planned = splitBatch(items, template, context);
      requests.push(...planned.requests);
      refused.push(...planned.refused);
    } catch (error) {
      if (!(error instanceof TemplateError)) throw error;
      for (const item of items) refused.push({ item, reason: 'template', detail: error.message });
    }
  }
  return { requests, refused };
}

/**
 * Splits one group into requests of at most `batchSize` items and `maxRequestBytes` of body. The
 * body's size is known without rendering it again: the template with no items, plus each item's
 * JSON and a comma.
 */
function splitBatch<T extends Membership>(
  items: readonly T[],
  template: RequestTemplate,
  context: PlanContext,
): RequestPlan<T> {
  const { batchSize, maxRequestBytes, item: itemTemplate } = context.connector.population;
  if (itemTemplate === undefined) throw new TemplateError('batch mode needs population.item');
  if (template.bodyFormat !== 'json' || !uses(template.body, 'items')) {
    throw new TemplateError('a batch request needs a JSON body with {items}');
  }
  const values = groupValues(items[0] as T, context, template);
  const emptyBytes = Buffer.byteLength(
    stringifyJsonExact(renderJson(template.body, { ...values, items: [] })),
    'utf8',
  );
  const requests: PlannedRequest<T>[] = [];
  const refused: RequestPlan<T>['refused'][number][] = [];
  let current: { members: T[]; rendered: unknown[]; bytes: number } = {
    members: [],
    rendered: [],
    bytes: emptyBytes,
  };
  const flush = () => {
    if (current.members.length === 0) return;
    const request = renderRequest(template, { ...values, items: current.rendered });
    requests.push({ request, items: current.members });
    current = { members: [], rendered: [], bytes: emptyBytes };
  };
  for (const membership of items) {
    const rendered = renderJson(itemTemplate, membershipValues(membership, context));
    const size = Buffer.byteLength(stringifyJsonExact(rendered), 'utf8');
    if (emptyBytes + size > maxRequestBytes) {
      refused.push({
        item: membership,
        reason: 'item_too_large',
        detail: `one item alone exceeds maxRequestBytes ${maxRequestBytes}`,
      });
      continue;
    }
    const added = size + (current.members.length > 0 ? 1 : 0);
    if (current.members.length >= batchSize || current.bytes + added > maxRequestBytes) flush();
    current.bytes += size + (current.members.length > 0 ? 1 : 0);
    current.members.push(membership);
    current.rendered.push(rendered);
  }
  flush();
  return { requests, refused };
}

/** A smaller request for part of a planned one (bisection), rendered the same way. */
export function replan<T extends Membership>(items: readonly T[], context: PlanContext): PlannedRequest<T>[] {
  return planRequests(items, context).requests;
}

import { randomUUID } from 'node:crypto';
import type { Connector } from '../config/connector.ts';
import type { PlatformConfig } from '../config/schema.ts';
import { PartnerCallError } from '../connectors/http/client.ts';
import { type RenderedRequest, readJsonPath, renderRequest, TemplateError } from '../connectors/templates.ts';
import {
  type Audience,
  asSegmentId,
  idempotencyKey,
  partnerSegmentName,
  type SegmentError,
  type SegmentRecord,
  segmentTemplateValues,
} from './segment.ts';
import type { DynamoSegmentStore } from './segment-store.ts';

/**
 * Obtains the partner segment of (platform, audience) exactly once, whoever asks and however many
 * ask at the same moment:
 *
 * 1. a ready record answers at once (and a changed audience name is passed on as a rename, or
 *    recorded as a difference where the connector cannot rename);
 * 2. otherwise one caller takes a lease by conditional write and calls the partner; the others
 *    wait, reading, until the winner settles the record (or its lease expires: it crashed);
 * 3. a lease taken over from a crashed holder, or after an answer that may have been processed
 *    (timeout, reset, 5xx), first looks the segment up by name where the connector can; else an
 *    idempotency key lets the partner deduplicate; else the new segment is flagged as a possible
 *    duplicate, visible in `dmp segments`;
 * 4. a 4xx is recorded with the partner's answer and not retried blindly; 429, 5xx and timeouts
 *    are retried by the partner client (backoff, jitter, Retry-After) and then left for the next
 *    caller.
 */

export interface PartnerAnswerLike {
  readonly status: number;
  json(): unknown;
}

export interface PartnerCaller {
  call(request: RenderedRequest, options?: { signal?: AbortSignal }): Promise<PartnerAnswerLike>;
}

function asPartnerFailure(error: unknown): PartnerCallError | undefined {
  return error instanceof PartnerCallError ? error : undefined;
}

export interface SegmentServiceDeps {
  readonly environment: string;
  readonly store: DynamoSegmentStore;
  /** A client for the platform's API with its credentials (cached by the caller). */
  readonly partnerFor: (platform: PlatformConfig & { connector: Connector }) => Promise<PartnerCaller>;
  /** Epoch milliseconds. */
  readonly now?: () => number;
  readonly sleep?: (ms: number) => Promise<void>;
  readonly random?: () => number;
}

export interface EnsureOptions {
  /** Try again a segment the partner refused (operator's decision). */
  readonly retryFailed?: boolean;
  /** How long to wait for another caller's lease before giving up (retry later). */
  readonly waitMs?: number;
  readonly signal?: AbortSignal;
}

export interface EnsureResult {
  readonly partnerSegmentId: string;
  /** True when this call obtained the id from the partner. */
  readonly obtainedNow: boolean;
  readonly record: SegmentRecord;
}

/** The partner refused to create the segment; its answer is in `lastError`. */
export class SegmentRefusedError extends Error {
  override readonly name = 'SegmentRefusedError';
  constructor(
    readonly record: SegmentRecord,
    message: string,
  ) {
    super(message);
  }
}

/** Not ready yet (another caller is creating it, or the partner is failing transiently): try later. */
export class SegmentNotReadyError extends Error {
  override readonly name = 'SegmentNotReadyError';
  constructor(
    message: string,
    readonly record?: SegmentRecord,
  ) {
    super(message);
  }
}

const DEFAULT_WAIT_MS = 20_000;
/** A failed rename is tried again on a later use, but not more often than this. */
const RENAME_RETRY_AFTER_MS = 10 * 60_000;
const SNIPPET_LIMIT = 1024;

type ConnectedPlatform = PlatformConfig & { connector: Connector };

export class SegmentService {
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly random: () => number;

  constructor(private readonly deps: SegmentServiceDeps) {
    this.now = deps.now ?? Date.now;
    this.sleep = deps.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.random = deps.random ?? Math.random;
  }

  async ensure(
    platform: PlatformConfig,
    audience: Audience,
    options: EnsureOptions = {},
  ): Promise<EnsureResult> {
    const connected = requireConnector(platform);
    const settings = connected.connector.segments;
    const context = {
      environment: this.deps.environment,
      platformId: platform.id,
      variables: connected.connector.api.variables,
    };
    if (settings.creation === 'implicit') {
      const existing = await this.deps.store.get(platform.id, audience.id);
      if (existing?.state === 'ready' && existing.partnerSegmentId)
        return this.ready(connected, audience, existing);
      const name = partnerSegmentName(settings, audience, context);
      await this.deps.store.putImplicit(platform.id, audience, this.now(), name);
      const record = await this.deps.store.get(platform.id, audience.id);
      if (!record?.partnerSegmentId) throw new SegmentNotReadyError('implicit segment was not recorded');
      return { partnerSegmentId: record.partnerSegmentId, obtainedNow: existing === undefined, record };
    }

    const owner = randomUUID();
    const deadline = this.now() + (options.waitMs ?? DEFAULT_WAIT_MS);
    const leaseMs = leaseDuration(connected.connector);
    for (let round = 0; ; round++) {
      const current = await this.deps.store.get(platform.id, audience.id);
      if (current?.state === 'ready' && current.partnerSegmentId)
        return this.ready(connected, audience, current);
      const nameChangedSinceFailure = current?.state === 'failed' && current.audienceName !== audience.name;
      if (current?.state === 'failed' && !options.retryFailed && !nameChangedSinceFailure) {
        throw new SegmentRefusedError(
          current,
          `the partner refused segment creation: ${describe(current.lastError)}`,
        );
      }
      const lease = await this.deps.store.acquireLease(
        platform.id,
        audience,
        owner,
        this.now(),
        leaseMs,
        options.retryFailed === true || nameChangedSinceFailure,
      );
      if (lease.acquired)
        return this.createWithLease(connected, audience, owner, lease.previous, options.signal);
      if (lease.current?.state === 'failed' || lease.current?.state === 'ready') continue;
      if (this.now() >= deadline) {
        throw new SegmentNotReadyError(
          'another caller is creating this segment; try again later',
          lease.current,
        );
      }
      // Waiters read with capped, jittered backoff until the lease holder settles.
      const delay = Math.min(1000, 50 * 2 ** Math.min(round, 5)) * (0.5 + this.random() / 2);
      await this.sleep(Math.min(delay, Math.max(0, deadline - this.now())));
    }
  }

  private async createWithLease(
    platform: ConnectedPlatform,
    audience: Audience,
    owner: string,
    previous: SegmentRecord | undefined,
    signal: AbortSignal | undefined,
  ): Promise<EnsureResult> {
    const settings = platform.connector.segments;
    if (settings.creation !== 'api') throw new Error('unreachable: implicit segments take no lease');
    const context = {
      environment: this.deps.environment,
      platformId: platform.id,
      variables: platform.connector.api.variables,
    };
    const values = segmentTemplateValues(settings, audience, context);
    const name = String(values['name']);
    // The previous holder crashed, or its last call may have been processed: the partner may hold a segment we never recorded.
    const uncertain =
      previous?.state === 'creating' || (previous?.state === 'retry' && previous.outcomeUnknown);
    let partner: PartnerCaller;
    try {
      partner = await this.deps.partnerFor(platform);
    } catch (error) {
      // No call was made (credentials missing or unusable): free the lease, carrying over what was known.
      return this.releaseAndThrow(platform.id, audience.id, owner, error, uncertain);
    }

    try {
      if (uncertain && settings.lookupByName) {
        const found = await this.lookup(partner, settings.lookupByName, values, signal);
        if (found)
          return this.settle(platform, audience, owner, {
            partnerSegmentId: found,
            nameAtPartner: name,
            source: 'lookup',
            possibleDuplicate: false,
          });
      }
      const request = renderRequest(settings.create, values);
      const headers = settings.idempotencyKeyHeader
        ? {
            ...request.headers,
            [settings.idempotencyKeyHeader.toLowerCase()]: idempotencyKey(
              this.deps.environment,
              platform.id,
              audience.id,
            ),
          }
        : request.headers;
      const answer = await partner.call({ ...request, headers }, signal ? { signal } : {});
      const body = answer.json();
      const partnerSegmentId = asSegmentId(readJsonPath(body, settings.idPath));
      if (partnerSegmentId === undefined) {
        // A 2xx without a readable id: the partner may well have created it.
        return this.retryLater(
          platform.id,
          audience,
          owner,
          { status: answer.status, message: `answer has no segment id at ${settings.idPath}` },
          true,
        );
      }
      const created = readJsonPath(body, 'created');
      return this.settle(platform, audience, owner, {
        partnerSegmentId,
        nameAtPartner: name,
        source: created === false ? 'existing' : 'created',
        possibleDuplicate: uncertain && !settings.lookupByName && !settings.idempotencyKeyHeader,
      });
    } catch (error) {
      if (error instanceof TemplateError) {
        return this.refuse(platform.id, audience, owner, { message: `connector template: ${error.message}` });
      }
      const failure = asPartnerFailure(error);
      // Not a partner answer (a bug, the store): the call may have gone out, so the outcome is unknown.
      if (!failure) return this.releaseAndThrow(platform.id, audience.id, owner, error, true);
      const answer = {
        status: failure.status,
        message: (failure.bodySnippet ?? failure.message).slice(0, SNIPPET_LIMIT),
      };
      if (failure.kind === 'permanent') {
        const exists = settings.alreadyExists;
        if (
          exists &&
          settings.lookupByName &&
          failure.status !== undefined &&
          exists.statuses.includes(failure.status) &&
          (exists.bodyContains === undefined || (failure.bodySnippet ?? '').includes(exists.bodyContains))
        ) {
          const found = await this.lookup(partner, settings.lookupByName, values, signal);
          if (found)
            return this.settle(platform, audience, owner, {
              partnerSegmentId: found,
              nameAtPartner: name,
              source: 'existing',
              possibleDuplicate: false,
            });
        }
        return this.refuse(platform.id, audience, owner, answer);
      }
      return this.retryLater(platform.id, audience, owner, answer, failure.outcomeUnknown);
    }
  }

  private async releaseAndThrow(
    platformId: number,
    audienceId: string,
    owner: string,
    error: unknown,
    outcomeUnknown: boolean,
  ): Promise<never> {
    const now = this.now();
    await this.deps.store.releaseForRetry(
      platformId,
      audienceId,
      owner,
      now,
      stamp({ message: errorText(error) }, now),
      outcomeUnknown,
    );
    throw error;
  }

  private async lookup(
    partner: PartnerCaller,
    template: NonNullable<Extract<Connector['segments'], { creation: 'api' }>['lookupByName']>,
    values: Parameters<typeof renderRequest>[1],
    signal: AbortSignal | undefined,
  ): Promise<string | undefined> {
    const answer = await partner.call(renderRequest(template, values), signal ? { signal } : {});
    return asSegmentId(readJsonPath(answer.json(), template.idPath));
  }

  private async settle(
    platform: ConnectedPlatform,
    audience: Audience,
    owner: string,
    settlement: Parameters<DynamoSegmentStore['settleReady']>[4],
  ): Promise<EnsureResult> {
    const settled = await this.deps.store.settleReady(
      platform.id,
      audience.id,
      owner,
      this.now(),
      settlement,
    );
    const record = await this.deps.store.get(platform.id, audience.id);
    if (!settled || !record?.partnerSegmentId) {
      throw new SegmentNotReadyError(
        'the creation lease expired before the partner answered; try again later',
        record,
      );
    }
    return { partnerSegmentId: record.partnerSegmentId, obtainedNow: true, record };
  }

  private async refuse(
    platformId: number,
    audience: Audience,
    owner: string,
    error: Omit<SegmentError, 'at'>,
  ): Promise<never> {
    await this.deps.store.settleFailed(platformId, audience.id, owner, this.now(), stamp(error, this.now()));
    const record = await this.deps.store.get(platformId, audience.id);
    throw new SegmentRefusedError(
      record as SegmentRecord,
      `the partner refused segment creation: ${describe(error)}`,
    );
  }

  private async retryLater(
    platformId: number,
    audience: Audience,
    owner: string,
    error: Omit<SegmentError, 'at'>,
    outcomeUnknown: boolean,
  ): Promise<never> {
    await this.deps.store.releaseForRetry(
      platformId,
      audience.id,
      owner,
      this.now(),
      stamp(error, this.now()),
      outcomeUnknown,
    );
    const record = await this.deps.store.get(platformId, audience.id);
    throw new SegmentNotReadyError(`segment creation failed for now: ${describe(error)}`, record);
  }

  /** A ready segment: passes a DMP rename on to the partner, or records the difference. */
  private async ready(
    platform: ConnectedPlatform,
    audience: Audience,
    record: SegmentRecord,
  ): Promise<EnsureResult> {
    const partnerSegmentId = record.partnerSegmentId as string;
    const settings = platform.connector.segments;
    if (settings.creation !== 'api') return { partnerSegmentId, obtainedNow: false, record };
    const context = {
      environment: this.deps.environment,
      platformId: platform.id,
      variables: platform.connector.api.variables,
    };
    const values = segmentTemplateValues(settings, audience, context, partnerSegmentId);
    const name = String(values['name']);
    // The partner's name is what matters: a rename that failed, or a changed nameTemplate, is retried.
    const renameDue =
      settings.rename !== undefined &&
      record.nameAtPartner !== name &&
      (record.renameError === undefined ||
        this.now() - Date.parse(record.renameError.at) >= RENAME_RETRY_AFTER_MS);
    if (!renameDue) {
      if (record.audienceName !== audience.name) {
        await this.deps.store.recordName(platform.id, audience.id, this.now(), {
          audienceName: audience.name,
        });
      } else {
        return { partnerSegmentId, obtainedNow: false, record };
      }
    } else {
      try {
        const partner = await this.deps.partnerFor(platform);
        await partner.call(renderRequest(settings.rename as NonNullable<typeof settings.rename>, values));
        await this.deps.store.recordName(platform.id, audience.id, this.now(), {
          audienceName: audience.name,
          nameAtPartner: name,
        });
      } catch (error) {
        const failure = asPartnerFailure(error);
        await this.deps.store.recordName(platform.id, audience.id, this.now(), {
          audienceName: audience.name,
          renameError: stamp(
            {
              status: failure?.status,
              message: (failure?.bodySnippet ?? errorText(error)).slice(0, SNIPPET_LIMIT),
            },
            this.now(),
          ),
        });
      }
    }
    const updated = (await this.deps.store.get(platform.id, audience.id)) ?? record;
    return { partnerSegmentId, obtainedNow: false, record: updated };
  }
}

function requireConnector(platform: PlatformConfig): ConnectedPlatform {
  if (!platform.connector) throw new Error(`platform ${platform.id} has no connector configured`);
  return platform as ConnectedPlatform;
}

/** Long enough for every retry the client may make; a holder that outlives it is presumed dead. */
function leaseDuration(connector: Connector): number {
  const { retry, timeoutMs } = connector.api;
  return retry.maxAttempts * (timeoutMs + retry.maxDelayMs) + 10_000;
}

function stamp(error: Omit<SegmentError, 'at'>, nowMs: number): SegmentError {
  return { ...error, at: new Date(nowMs).toISOString() };
}

function describe(error: Omit<SegmentError, 'at'> | undefined): string {
  if (!error) return 'no answer recorded';
  return error.status === undefined ? error.message : `HTTP ${error.status}: ${error.message}`;
}

function errorText(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : 'unknown error';
}

import { randomUUID } from 'node:crypto';
import type { Connector } from '../config/connector.ts';
import type { PlatformConfig } from '../config/schema.ts';
import { PartnerCallError } from '../connectors/http/client.ts';
import { stringifyJsonExact } from '../connectors/json.ts';
import { type RenderedRequest, readJsonPath, renderRequest, TemplateError } from '../connectors/templates.ts';
import {
  type Audience,
  asSegmentId,
  idempotencyKey,
  partnerSegmentName,
  type SegmentError,
  type SegmentRecord,
  type SegmentStep,
  segmentTemplateValues,
} from './segment.ts';
import type { DynamoSegmentStore } from './segment-store.ts';

/**
 * Obtains the partner segment of (platform, audience) exactly once, whoever asks and however many
 * ask at the same moment (docs/segments.md "Obtaining the partner segment, exactly once"):
 *
 * 1. a ready record answers at once (and a changed audience name is passed on as a rename, or
 *    recorded as a difference where the connector cannot rename);
 * 2. otherwise one caller takes a lease by conditional write and calls the partner; the others
 *    wait, reading, until the winner settles the record (or its lease expires: it crashed). The
 *    holder renews the lease before each partner call, and bounds each call by what is left of it;
 * 3. a create whose outcome is unknown (a 5xx, a timeout or a reset after it was sent, a 2xx
 *    without a readable id, a holder that vanished) is never repeated blindly: the segment is
 *    looked up by name where the connector can; repeated where the partner makes a repeat
 *    harmless (idempotency key, `createDeduplicates`); else the record becomes `unresolved`, flagged
 *    `possibleDuplicate`, and waits for an operator (`dmp segments resolve`);
 * 4. a 4xx is recorded with the partner's answer and not retried blindly; a 429 or 503 records
 *    when the partner may be called again (`retryAt`), and callers before then are told so
 *    without a call;
 * 5. an id is recorded for one audience only (a claim per partner segment id), and an id obtained
 *    after the lease was lost is still stored, or kept as an orphan that `dmp segments` shows.
 */

export interface PartnerAnswerLike {
  readonly status: number;
  json(): unknown;
}

export interface PartnerCaller {
  call(
    request: RenderedRequest & { readonly idempotent?: boolean },
    options?: { signal?: AbortSignal },
  ): Promise<PartnerAnswerLike>;
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
  /**
   * Create again an `unresolved` segment: the operator checked that the partner holds no segment
   * of this audience (`dmp segments resolve --create`).
   */
  readonly confirmCreate?: boolean;
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

/** The partner refused (its answer is in the record's `lastError`), or the id belongs to another audience. */
export class SegmentRefusedError extends Error {
  override readonly name = 'SegmentRefusedError';
  constructor(
    readonly record: SegmentRecord,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Why a segment is not ready, and what a caller does about it:
 *
 * - `inProgress`: another caller holds the creation lease: try again soon;
 * - `throttled`: the partner asked us to wait: try again at `retryAt`, not before (no call is
 *   made until then);
 * - `transient`: the partner failed transiently (5xx, timeout, network): try again later;
 * - `leaseLost`: this caller's lease ran out and another caller took over: try again soon;
 * - `possibleDuplicate`: the record is `unresolved`: a create may have been carried out and
 *   nothing can tell; retrying does not help until an operator runs `dmp segments resolve`.
 */
export type NotReadyReason = 'inProgress' | 'throttled' | 'transient' | 'leaseLost' | 'possibleDuplicate';

/** Not ready yet: see `reason` and `retryAt`. The record, when there is one, says more. */
export class SegmentNotReadyError extends Error {
  override readonly name = 'SegmentNotReadyError';
  readonly reason: NotReadyReason;
  /** Epoch ms before which a retry is pointless (the partner's Retry-After), when known. */
  readonly retryAt: number | undefined;
  constructor(
    message: string,
    readonly record?: SegmentRecord,
    details: { reason?: NotReadyReason; retryAt?: number | undefined } = {},
  ) {
    super(message);
    this.reason = details.reason ?? 'transient';
    this.retryAt = details.retryAt;
  }
}

const DEFAULT_WAIT_MS = 20_000;
/** A failed rename is tried again on a later use, but not more often than this. */
const RENAME_RETRY_AFTER_MS = 10 * 60_000;
const SNIPPET_LIMIT = 1024;

type ConnectedPlatform = PlatformConfig & { connector: Connector };
type ApiSegments = Extract<Connector['segments'], { creation: 'api' }>;

/** What an unknown outcome leaves us with: the error to record. */
type Failure = Omit<SegmentError, 'at'>;

/** One creation lease, renewed before each partner call. */
class Lease {
  private expiresAt: number;
  constructor(
    private readonly store: DynamoSegmentStore,
    private readonly platformId: number,
    private readonly audienceId: string,
    readonly owner: string,
    private readonly leaseMs: number,
    private readonly now: () => number,
  ) {
    this.expiresAt = now() + leaseMs;
  }

  /**
   * Renews the lease (counting a create call in `attempts` when one follows); throws
   * SegmentNotReadyError (`leaseLost`) when it is not ours any more.
   */
  async renew(beforeCreate = false): Promise<void> {
    const now = this.now();
    const { store, platformId, audienceId, owner, leaseMs } = this;
    if (!(await store.renewLease(platformId, audienceId, owner, now, leaseMs, beforeCreate))) {
      throw new SegmentNotReadyError(
        'the creation lease was lost to another caller before the next partner call; try again later',
        await this.store.get(this.platformId, this.audienceId),
        { reason: 'leaseLost' },
      );
    }
    this.expiresAt = now + this.leaseMs;
  }

  /** Aborts a call before the lease runs out, so that its holder can still record the outcome. */
  signal(caller: AbortSignal | undefined): AbortSignal {
    const margin = Math.min(5000, this.leaseMs / 4);
    const deadline = AbortSignal.timeout(Math.max(1, this.expiresAt - margin - this.now()));
    return caller ? AbortSignal.any([caller, deadline]) : deadline;
  }
}

export class SegmentService {
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly random: () => number;

  constructor(private readonly deps: SegmentServiceDeps) {
    this.now = deps.now ?? Date.now;
    this.sleep = deps.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.random = deps.random ?? Math.random;
  }

  /**
   * The partner segment id of (platform, audience), created once at the partner if need be.
   * Throws SegmentRefusedError (`failed`: not retried without the operator) or
   * SegmentNotReadyError (see its `reason` and `retryAt`).
   */
  async ensure(
    platform: PlatformConfig,
    audience: Audience,
    options: EnsureOptions = {},
  ): Promise<EnsureResult> {
    const connected = requireConnector(platform);
    const settings = connected.connector.segments;
    if (settings.creation === 'implicit') return this.ensureImplicit(connected, audience);

    const owner = randomUUID();
    const deadline = this.now() + (options.waitMs ?? DEFAULT_WAIT_MS);
    const leaseMs = leaseDuration(connected.connector);
    for (let round = 0; ; round++) {
      const current = await this.deps.store.get(platform.id, audience.id);
      if (current?.state === 'ready' && current.partnerSegmentId)
        return this.ready(connected, audience, current, options);
      const nameChangedSinceFailure = current?.state === 'failed' && current.audienceName !== audience.name;
      if (current?.state === 'failed' && !options.retryFailed && !nameChangedSinceFailure) {
        throw new SegmentRefusedError(current, refusal(current.lastError));
      }
      if (current?.state === 'unresolved' && !options.confirmCreate)
        throw unresolvedError(current, settings.lookupByName !== undefined);
      if (current?.state === 'retry' && current.retryAt !== undefined && current.retryAt > this.now()) {
        throw new SegmentNotReadyError(
          `the partner asked us to wait until ${new Date(current.retryAt).toISOString()} (${describe(current.lastError)})`,
          current,
          { reason: 'throttled', retryAt: current.retryAt },
        );
      }
      const lease = await this.deps.store.acquireLease(platform.id, audience, owner, this.now(), leaseMs, {
        retryFailed: options.retryFailed === true || nameChangedSinceFailure,
        confirmCreate: options.confirmCreate === true,
      });
      if (lease.acquired) {
        const held = new Lease(this.deps.store, platform.id, audience.id, owner, leaseMs, this.now);
        return this.createWithLease(connected, audience, held, lease.previous, options);
      }
      const state = lease.current?.state;
      if (state === 'failed' || state === 'ready' || state === 'unresolved' || state === 'retry') continue;
      if (this.now() >= deadline) {
        throw new SegmentNotReadyError(
          'another caller is creating this segment; try again later',
          lease.current,
          {
            reason: 'inProgress',
          },
        );
      }
      // Waiters read with capped, jittered backoff until the lease holder settles.
      const delay = Math.min(1000, 50 * 2 ** Math.min(round, 5)) * (0.5 + this.random() / 2);
      await this.sleep(Math.min(delay, Math.max(0, deadline - this.now())));
    }
  }

  /**
   * The partner answered 404 for a stored segment id (on a rename, an upload, a removal): it no
   * longer knows it. The record goes back to `retry` (the reason in `lastError`), so the next
   * `ensure` obtains a new segment instead of delivering into one that is gone. False when the
   * record no longer holds that id (someone handled it already).
   */
  async reportUnknownAtPartner(
    platformId: number,
    audienceId: string,
    partnerSegmentId: string,
    detail: { readonly status?: number; readonly message: string; readonly step?: SegmentError['step'] },
  ): Promise<boolean> {
    const now = this.now();
    const error = stamp(
      {
        ...detail,
        message: `the partner no longer knows segment ${partnerSegmentId}: ${detail.message}`.slice(
          0,
          SNIPPET_LIMIT,
        ),
      },
      now,
    );
    const marked = await this.deps.store.markUnknownAtPartner(
      platformId,
      audienceId,
      partnerSegmentId,
      now,
      error,
    );
    if (marked) await this.deps.store.releasePartnerSegment(platformId, partnerSegmentId, audienceId);
    return marked;
  }

  private async ensureImplicit(platform: ConnectedPlatform, audience: Audience): Promise<EnsureResult> {
    const settings = platform.connector.segments;
    const existing = await this.deps.store.get(platform.id, audience.id);
    if (existing?.state === 'ready' && existing.partnerSegmentId)
      return this.ready(platform, audience, existing, {});
    const name = partnerSegmentName(settings, audience, this.context(platform));
    const holder = await this.deps.store.claimPartnerSegment(platform.id, name, audience.id, this.now());
    if (holder !== undefined) {
      const now = new Date(this.now()).toISOString();
      const error = { step: 'claim' as const, message: claimConflict(name, holder), at: now };
      throw new SegmentRefusedError(
        {
          platformId: platform.id,
          audienceId: audience.id,
          audienceName: audience.name,
          kind: audience.kind,
          state: 'failed',
          attempts: 0,
          outcomeUnknown: false,
          possibleDuplicate: false,
          lastError: error,
          createdAt: now,
          updatedAt: now,
        },
        refusal(error),
      );
    }
    await this.deps.store.putImplicit(platform.id, audience, this.now(), name);
    const record = await this.deps.store.get(platform.id, audience.id);
    if (!record?.partnerSegmentId) throw new SegmentNotReadyError('implicit segment was not recorded');
    return { partnerSegmentId: record.partnerSegmentId, obtainedNow: existing === undefined, record };
  }

  private context(platform: ConnectedPlatform) {
    return {
      environment: this.deps.environment,
      platformId: platform.id,
      variables: platform.connector.api.variables,
    };
  }

  private async createWithLease(
    platform: ConnectedPlatform,
    audience: Audience,
    lease: Lease,
    previous: SegmentRecord | undefined,
    options: EnsureOptions,
  ): Promise<EnsureResult> {
    const settings = platform.connector.segments;
    if (settings.creation !== 'api') throw new Error('unreachable: implicit segments take no lease');
    const values = segmentTemplateValues(settings, audience, this.context(platform));
    const name = String(values['name']);
    const target = { platform, audience, lease, name };
    // The previous holder vanished mid-call, or an earlier create may have been carried out.
    let uncertain: Failure | undefined =
      previous?.state === 'creating' || previous?.outcomeUnknown === true
        ? (previous.lastError ?? { message: 'a previous creation lease expired before it was settled' })
        : undefined;
    // The operator checked the partner and asked for a new create.
    if (options.confirmCreate && previous?.state === 'unresolved') uncertain = undefined;
    // Repeating the create cannot make a second segment.
    const repeatable = settings.idempotencyKeyHeader !== undefined || settings.createDeduplicates;

    let partner: PartnerCaller;
    try {
      partner = await this.deps.partnerFor(platform);
    } catch (error) {
      // No call was made (credentials missing or unusable): free the lease, carrying over what was known.
      return this.release(
        target,
        { step: 'credentials', message: errorText(error) },
        uncertain !== undefined,
        error,
      );
    }

    const maxRounds = platform.connector.api.retry.maxAttempts;
    /** The partner answered "already exists": its id is read by a lookup (next round). */
    let existsAnswer: Failure | undefined;
    for (let round = 1; ; round++) {
      /** The call under way, for the error's step. */
      let calling: 'lookup' | 'create' = 'create';
      try {
        if (existsAnswer || (uncertain && !repeatable)) {
          if (!settings.lookupByName) return this.unresolved(target, uncertain ?? (existsAnswer as Failure));
          calling = 'lookup';
          const found = await this.lookup(partner, settings.lookupByName, values, lease, options.signal);
          if (found !== undefined) return this.obtained(target, found, existsAnswer ? 'existing' : 'lookup');
          // "Already exists", yet not found by name: the partner's answer stands as a refusal.
          if (existsAnswer) return this.refuse(target, existsAnswer, uncertain !== undefined);
        }
        calling = 'create';
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
        await lease.renew(true);
        const answer = await partner.call(
          { ...request, headers, idempotent: repeatable },
          { signal: lease.signal(options.signal) },
        );
        const body = answer.json();
        const raw = readJsonPath(body, settings.idPath);
        const partnerSegmentId = asSegmentId(raw);
        if (partnerSegmentId === undefined) {
          // A 2xx without a usable id: the partner may well have created it.
          const what =
            raw === undefined ? 'no segment id' : `an unusable segment id (${String(raw).slice(0, 64)})`;
          uncertain = {
            step: 'create',
            status: answer.status,
            message: `the answer has ${what} at ${settings.idPath}: ${snippetOf(body)}`,
          };
          // Looked up next round, or asked again where a repeat is harmless (a replay of the answer).
          if ((settings.lookupByName || repeatable) && round < maxRounds) continue;
          return this.unresolved(target, uncertain);
        }
        const created = readJsonPath(body, 'created');
        return this.obtained(target, partnerSegmentId, created === false ? 'existing' : 'created');
      } catch (error) {
        if (error instanceof SegmentNotReadyError || error instanceof SegmentRefusedError) throw error;
        if (error instanceof TemplateError) {
          return this.refuse(
            target,
            { step: 'create', message: `connector template: ${error.message}` },
            false,
          );
        }
        const failure = asPartnerFailure(error);
        // Not a partner answer (a bug, the store): the call may have gone out, so the outcome is unknown.
        if (!failure) return this.release(target, { message: errorText(error) }, true, error);
        const step: SegmentStep = failure.step === 'token' ? 'token' : calling;
        const answer: Failure = {
          step,
          status: failure.status,
          message: (failure.bodySnippet ?? failure.message).slice(0, SNIPPET_LIMIT),
        };
        const mayHaveCreated = failure.outcomeUnknown && step === 'create';
        const unknown = mayHaveCreated || uncertain !== undefined;
        if (failure.kind === 'permanent') {
          if (step === 'create' && !existsAnswer && this.isAlreadyExists(settings, failure)) {
            existsAnswer = answer;
            continue;
          }
          return this.refuse(target, answer, unknown);
        }
        if (options.signal?.aborted) return this.release(target, answer, unknown, error);
        if (mayHaveCreated) {
          uncertain = answer;
          // Look it up (next round) before any repeat; a partner that de-duplicates had its chances in the client.
          if (settings.lookupByName && !repeatable && round < maxRounds) {
            await this.sleep(backoff(round, platform.connector.api.retry, this.random));
            continue;
          }
          if (!settings.lookupByName && !repeatable) return this.unresolved(target, answer);
        }
        const retryAt = failure.retryAfterMs === undefined ? undefined : this.now() + failure.retryAfterMs;
        return this.retryLater(target, answer, unknown, retryAt);
      }
    }
  }

  private isAlreadyExists(settings: ApiSegments, failure: PartnerCallError): boolean {
    const exists = settings.alreadyExists;
    return (
      exists !== undefined &&
      settings.lookupByName !== undefined &&
      failure.status !== undefined &&
      exists.statuses.includes(failure.status) &&
      (exists.bodyContains === undefined || (failure.bodySnippet ?? '').includes(exists.bodyContains))
    );
  }

  private async lookup(
    partner: PartnerCaller,
    template: NonNullable<ApiSegments['lookupByName']>,
    values: Parameters<typeof renderRequest>[1],
    lease: Lease,
    signal: AbortSignal | undefined,
  ): Promise<string | undefined> {
    await lease.renew();
    const answer = await partner.call(renderRequest(template, values), { signal: lease.signal(signal) });
    return asSegmentId(readJsonPath(answer.json(), template.idPath));
  }

  /**
   * Records an id the partner gave (or that a lookup found): claimed for this audience first,
   * then stored, with or without the lease; never dropped.
   */
  private async obtained(
    target: CreationTarget,
    partnerSegmentId: string,
    source: 'created' | 'existing' | 'lookup',
  ): Promise<EnsureResult> {
    const { platform, audience, lease, name } = target;
    const store = this.deps.store;
    const holder = await store.claimPartnerSegment(platform.id, partnerSegmentId, audience.id, this.now());
    if (holder !== undefined) {
      const conflict = claimConflict(partnerSegmentId, holder);
      // A lookup by name found another audience's segment: whether ours exists is still unknown.
      if (source === 'lookup') return this.unresolved(target, { step: 'lookup', message: conflict });
      return this.refuse(target, { step: 'claim', message: conflict }, source === 'existing');
    }
    const settlement = { partnerSegmentId, nameAtPartner: name, source, possibleDuplicate: false };
    let settled: boolean;
    try {
      settled = await store.settleReady(platform.id, audience.id, lease.owner, this.now(), settlement);
      // The lease ran out while the partner answered: store the id anyway, unless a newer holder did.
      if (!settled)
        settled = await store.settleReadyWithoutLease(platform.id, audience.id, this.now(), settlement);
    } catch (error) {
      // The id must not vanish with the error: it goes into the message (and so into lastError).
      throw new Error(
        `partner segment ${partnerSegmentId} was obtained (${source}) but could not be recorded: ${errorText(error)}`,
        { cause: error },
      );
    }
    const record = await store.get(platform.id, audience.id);
    if (!record?.partnerSegmentId) {
      throw new Error(`unreachable: partner segment ${partnerSegmentId} was stored but is not in the record`);
    }
    if (!settled && record.partnerSegmentId !== partnerSegmentId) {
      await store.addOrphan(platform.id, audience.id, this.now(), {
        partnerSegmentId,
        reason: `obtained (${source}) after the creation lease was lost; the audience uses ${record.partnerSegmentId}`,
        at: new Date(this.now()).toISOString(),
      });
      const flagged = (await store.get(platform.id, audience.id)) ?? record;
      return { partnerSegmentId: record.partnerSegmentId, obtainedNow: false, record: flagged };
    }
    return { partnerSegmentId: record.partnerSegmentId, obtainedNow: settled, record };
  }

  private async release(
    target: CreationTarget,
    error: Failure,
    outcomeUnknown: boolean,
    cause: unknown,
  ): Promise<never> {
    const now = this.now();
    const { platform, audience, lease } = target;
    await this.deps.store.releaseForRetry(
      platform.id,
      audience.id,
      lease.owner,
      now,
      stamp(error, now),
      outcomeUnknown,
    );
    throw cause;
  }

  private async refuse(target: CreationTarget, error: Failure, outcomeUnknown: boolean): Promise<never> {
    const { platform, audience, lease } = target;
    const now = this.now();
    await this.deps.store.settleFailed(
      platform.id,
      audience.id,
      lease.owner,
      now,
      stamp(error, now),
      outcomeUnknown,
    );
    const record = await this.deps.store.get(platform.id, audience.id);
    throw new SegmentRefusedError(record as SegmentRecord, refusal(error));
  }

  private async unresolved(target: CreationTarget, error: Failure): Promise<never> {
    const { platform, audience, lease } = target;
    const now = this.now();
    await this.deps.store.settleUnresolved(platform.id, audience.id, lease.owner, now, stamp(error, now));
    const record = await this.deps.store.get(platform.id, audience.id);
    const settings = platform.connector.segments;
    throw unresolvedError(
      record as SegmentRecord,
      settings.creation === 'api' && settings.lookupByName !== undefined,
    );
  }

  private async retryLater(
    target: CreationTarget,
    error: Failure,
    outcomeUnknown: boolean,
    retryAt: number | undefined,
  ): Promise<never> {
    const { platform, audience, lease } = target;
    const now = this.now();
    await this.deps.store.releaseForRetry(
      platform.id,
      audience.id,
      lease.owner,
      now,
      stamp(error, now),
      outcomeUnknown,
      retryAt,
    );
    const record = await this.deps.store.get(platform.id, audience.id);
    const when =
      retryAt === undefined ? '' : `; the partner asked us to wait until ${new Date(retryAt).toISOString()}`;
    throw new SegmentNotReadyError(`segment creation failed for now: ${describe(error)}${when}`, record, {
      reason: retryAt === undefined ? 'transient' : 'throttled',
      retryAt,
    });
  }

  /** A ready segment: passes a DMP rename on to the partner, or records the difference. */
  private async ready(
    platform: ConnectedPlatform,
    audience: Audience,
    record: SegmentRecord,
    options: EnsureOptions,
  ): Promise<EnsureResult> {
    const partnerSegmentId = record.partnerSegmentId as string;
    const settings = platform.connector.segments;
    if (settings.creation !== 'api') return { partnerSegmentId, obtainedNow: false, record };
    const values = segmentTemplateValues(settings, audience, this.context(platform), partnerSegmentId);
    const name = String(values['name']);
    // The partner's name is what matters: a rename that failed, or a changed nameTemplate, is retried.
    const renameDue =
      settings.rename !== undefined &&
      record.nameAtPartner !== name &&
      (record.renameError === undefined ||
        this.now() - Date.parse(record.renameError.at) >= RENAME_RETRY_AFTER_MS);
    if (!renameDue) {
      if (record.audienceName === audience.name) return { partnerSegmentId, obtainedNow: false, record };
      await this.deps.store.recordName(platform.id, audience.id, this.now(), { audienceName: audience.name });
    } else {
      // Only the partner's verdict on the rename is a rename error; a store error or a bug propagates.
      const partner = await this.deps.partnerFor(platform);
      let renameError: SegmentError | undefined;
      try {
        await partner.call(renderRequest(settings.rename as NonNullable<typeof settings.rename>, values), {
          ...(options.signal ? { signal: options.signal } : {}),
        });
      } catch (error) {
        const failure = asPartnerFailure(error);
        if (!failure && !(error instanceof TemplateError)) throw error;
        const message = (failure?.bodySnippet ?? failure?.message ?? errorText(error)).slice(
          0,
          SNIPPET_LIMIT,
        );
        if (failure?.status === 404 && failure.step === 'request') {
          await this.reportUnknownAtPartner(platform.id, audience.id, partnerSegmentId, {
            status: 404,
            step: 'rename',
            message,
          });
          return this.ensure(platform, audience, options);
        }
        renameError = stamp(
          { step: failure?.step === 'token' ? 'token' : 'rename', status: failure?.status, message },
          this.now(),
        );
      }
      await this.deps.store.recordName(platform.id, audience.id, this.now(), {
        audienceName: audience.name,
        ...(renameError ? { renameError } : { nameAtPartner: name }),
      });
    }
    const updated = (await this.deps.store.get(platform.id, audience.id)) ?? record;
    return { partnerSegmentId, obtainedNow: false, record: updated };
  }
}

export type AdoptResult =
  | { readonly adopted: true; readonly record: SegmentRecord }
  | { readonly adopted: false; readonly reason: 'noRecord' | 'leaseHeld' }
  | { readonly adopted: false; readonly reason: 'claimed'; readonly holder: string };

/**
 * The operator's answer to an unresolved or flagged segment (`dmp segments resolve --adopt`):
 * `partnerSegmentId`, found at the partner, is the audience's segment. Claimed for the audience
 * first (never two audiences on one segment); refused while a caller holds a live lease.
 */
export async function adoptPartnerSegment(
  store: DynamoSegmentStore,
  platformId: number,
  audienceId: string,
  partnerSegmentId: string,
  nowMs: number,
): Promise<AdoptResult> {
  const record = await store.get(platformId, audienceId);
  if (!record) return { adopted: false, reason: 'noRecord' };
  const holder = await store.claimPartnerSegment(platformId, partnerSegmentId, audienceId, nowMs);
  if (holder !== undefined) return { adopted: false, reason: 'claimed', holder };
  if (!(await store.adopt(platformId, audienceId, partnerSegmentId, undefined, nowMs))) {
    const known =
      record.partnerSegmentId === partnerSegmentId ||
      (record.orphans ?? []).some((orphan) => orphan.partnerSegmentId === partnerSegmentId);
    if (!known) await store.releasePartnerSegment(platformId, partnerSegmentId, audienceId);
    return { adopted: false, reason: 'leaseHeld' };
  }
  return { adopted: true, record: (await store.get(platformId, audienceId)) as SegmentRecord };
}

interface CreationTarget {
  readonly platform: ConnectedPlatform;
  readonly audience: Audience;
  readonly lease: Lease;
  /** The partner segment name (the rendered nameTemplate). */
  readonly name: string;
}

function requireConnector(platform: PlatformConfig): ConnectedPlatform {
  if (!platform.connector) throw new Error(`platform ${platform.id} has no connector configured`);
  return platform as ConnectedPlatform;
}

/** Long enough for every retry the client may make in one call; renewed before each call. */
function leaseDuration(connector: Connector): number {
  const { retry, timeoutMs } = connector.api;
  return retry.maxAttempts * (timeoutMs + retry.maxDelayMs) + 10_000;
}

function backoff(round: number, retry: Connector['api']['retry'], random: () => number): number {
  return random() * Math.min(retry.maxDelayMs, retry.baseDelayMs * 2 ** (round - 1));
}

function stamp(error: Failure, nowMs: number): SegmentError {
  return { ...error, at: new Date(nowMs).toISOString() };
}

const STEP_NAMES: Record<SegmentStep, string> = {
  credentials: 'reading the platform credentials',
  token: "the partner's OAuth2 token endpoint",
  lookup: 'the lookup by name',
  create: 'the create call',
  rename: 'the rename call',
  claim: 'the partner segment id check',
};

/** `the create call: HTTP 500: ...`: the step (when known), the status, the partner's answer. */
export function describe(error: Omit<SegmentError, 'at'> | undefined): string {
  if (!error) return 'no answer recorded';
  const answer = error.status === undefined ? error.message : `HTTP ${error.status}: ${error.message}`;
  return error.step ? `${STEP_NAMES[error.step]}: ${answer}` : answer;
}

function refusal(error: Omit<SegmentError, 'at'> | undefined): string {
  const answer =
    error?.status === undefined
      ? (error?.message ?? 'no answer recorded')
      : `HTTP ${error.status}: ${error.message}`;
  switch (error?.step) {
    case 'token':
      return `the partner's OAuth2 token endpoint refused: ${answer} (the segment API was not called)`;
    case 'lookup':
      return `the partner refused the lookup by name: ${answer}`;
    case 'claim':
      return `segment not recorded: ${answer}`;
    default:
      return `the partner refused segment creation: ${answer}`;
  }
}

function claimConflict(partnerSegmentId: string, holder: string): string {
  return (
    `partner segment ${partnerSegmentId} already belongs to audience ${holder} ` +
    '(same name at the partner?); two audiences never share a partner segment: give this audience a ' +
    'distinct name, or put {audienceId} in the connector nameTemplate'
  );
}

/** `canLookUp`: the connector has `lookupByName`, which ran and did not settle it. */
function unresolvedError(record: SegmentRecord, canLookUp: boolean): SegmentNotReadyError {
  const why = canLookUp
    ? 'looking it up by name did not settle it (no segment of that name found, or one another audience holds) and the create cannot be repeated safely'
    : 'the connector cannot look it up or repeat the create safely';
  return new SegmentNotReadyError(
    `possible duplicate: the partner may have created this segment (${describe(record.lastError)}) and ` +
      `${why}; check the partner for a segment ` +
      `named "${record.nameAtPartner ?? record.audienceName}", then run: dmp segments resolve --platform ${record.platformId} ` +
      `--audience ${record.audienceId} --adopt <partner segment id>, or --create if there is none`,
    record,
    { reason: 'possibleDuplicate' },
  );
}

function snippetOf(body: unknown): string {
  try {
    return stringifyJsonExact(body ?? null).slice(0, 256);
  } catch {
    return String(body).slice(0, 256);
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : 'unknown error';
}

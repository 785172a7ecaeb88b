import { STATUS_CODES } from 'node:http';
import { z } from 'zod';
import { type AppliedFault, json, type PartnerResponse } from './common.ts';

/**
 * Fault switches: ways the partner misbehaves on purpose, for the next `count` matching API
 * requests (or until cleared). The first active switch that matches a request applies to it.
 *
 * - `status`: answer with this status instead (429, 500, 503, ...), optionally `retryAfter`
 *   (seconds or an HTTP date) and a `body`; the request is not processed unless `process: true`;
 * - `reset`: destroy the connection without an answer (the client sees ECONNRESET); not processed
 *   unless `process: true`;
 * - `malformed`: process the request, then answer 200 with the real body cut short (not JSON);
 * - `hold`: process the request, then keep the answer until `releaseHeld()`;
 * - `delayMs`: process the request, then answer after this long (or at `releaseHeld()`, if sooner);
 * - `bigId`: a segment this request creates (seed API) gets an id above 2^53, sent as a JSON
 *   number: a client that reads it into a double loses its last digits.
 *
 * `pathPrefix` and `method` narrow which requests a switch applies to. `/sync` and the control
 * routes never take faults; `/oauth/token` only from a switch whose `pathPrefix` starts with `/oauth`.
 */

export const FaultSpecSchema = z
  .object({
    pathPrefix: z.string().startsWith('/').max(512).optional(),
    method: z
      .string()
      .regex(/^[A-Za-z]{1,16}$/)
      .transform((method) => method.toUpperCase())
      .optional(),
    /**
     * Apply to this share of the matching requests, spread evenly and deterministically (0.3: the
     * 4th, 7th, 10th... of every ten); absent: to every one. `count` counts the applied ones.
     */
    ratio: z.number().gt(0).max(1).optional(),
    /** Apply to the next `count` matching requests; absent: until cleared. */
    count: z.number().int().min(1).max(1_000_000).optional(),
    status: z.number().int().min(200).max(599).optional(),
    retryAfter: z
      .union([
        z
          .number()
          .int()
          .min(0)
          .max(7 * 86_400),
        z.string().min(1).max(64),
      ])
      .optional(),
    body: z
      .string()
      .max(64 * 1024)
      .optional(),
    headers: z.record(z.string().regex(/^[A-Za-z0-9-]{1,64}$/), z.string().max(1024)).optional(),
    reset: z.boolean().optional(),
    malformed: z.boolean().optional(),
    delayMs: z.number().int().min(0).max(600_000).optional(),
    hold: z.boolean().optional(),
    bigId: z.boolean().optional(),
    /** Whether the request still reaches its handler; default: no for `status`/`reset`, yes otherwise. */
    process: z.boolean().optional(),
  })
  .strict()
  .refine(
    (spec) =>
      spec.status !== undefined ||
      spec.reset === true ||
      spec.malformed === true ||
      spec.delayMs !== undefined ||
      spec.hold === true ||
      spec.bigId === true,
    { message: 'a fault needs one of status, reset, malformed, delayMs, hold, bigId' },
  )
  .refine((spec) => !(spec.reset && (spec.status !== undefined || spec.malformed)), {
    message: 'reset answers nothing: it cannot be combined with status or malformed',
  });

export type FaultSpec = z.input<typeof FaultSpecSchema>;
type ParsedFaultSpec = z.output<typeof FaultSpecSchema>;

export interface ActiveFault extends ParsedFaultSpec {
  readonly id: number;
  /** Requests it still applies to; `null`: until cleared. */
  remaining: number | null;
  /** Requests it was applied to so far. */
  applied: number;
  /** Matching requests seen so far (for `ratio`). */
  seen: number;
}

export class FaultSpecError extends Error {
  override readonly name = 'FaultSpecError';
}

interface HeldAnswer {
  release(): void;
}

export class FaultSwitches {
  private nextId = 1;
  private readonly active: ActiveFault[] = [];
  private readonly held = new Set<HeldAnswer>();
  private heldWaiters: { count: number; resolve: () => void }[] = [];

  add(spec: FaultSpec): ActiveFault {
    const parsed = FaultSpecSchema.safeParse(spec);
    if (!parsed.success) throw new FaultSpecError(z.prettifyError(parsed.error));
    const fault: ActiveFault = {
      ...parsed.data,
      id: this.nextId++,
      remaining: parsed.data.count ?? null,
      applied: 0,
      seen: 0,
    };
    this.active.push(fault);
    return fault;
  }

  list(): readonly ActiveFault[] {
    return this.active.map((fault) => ({ ...fault }));
  }

  /** Removes one switch, or all; returns how many were removed. */
  clear(id?: number): number {
    if (id === undefined) return this.active.splice(0).length;
    const index = this.active.findIndex((fault) => fault.id === id);
    return index === -1 ? 0 : this.active.splice(index, 1).length;
  }

  /** The switch that applies to this request, counted as used; `undefined` if none. */
  take(method: string, path: string, targetedOnly: boolean): ActiveFault | undefined {
    const fault = this.active.find((candidate) => {
      const matches =
        (candidate.method === undefined || candidate.method === method) &&
        (candidate.pathPrefix === undefined || path.startsWith(candidate.pathPrefix)) &&
        (!targetedOnly || (candidate.pathPrefix?.startsWith('/oauth') ?? false));
      if (!matches || candidate.ratio === undefined) return matches;
      const seen = candidate.seen++;
      return Math.floor((seen + 1) * candidate.ratio) > Math.floor(seen * candidate.ratio);
    });
    if (!fault) return undefined;
    fault.applied += 1;
    if (fault.remaining !== null) {
      fault.remaining -= 1;
      if (fault.remaining === 0) this.active.splice(this.active.indexOf(fault), 1);
    }
    return { ...fault };
  }

  /** Whether a switch replaces the handler (the request is not processed). */
  static preempts(fault: ActiveFault): boolean {
    return !(fault.process ?? !(fault.status !== undefined || fault.reset === true));
  }

  static describe(fault: ActiveFault, processed: boolean): AppliedFault {
    const kinds = [
      ...(fault.status !== undefined ? ['status'] : []),
      ...(fault.reset ? ['reset'] : []),
      ...(fault.malformed ? ['malformed'] : []),
      ...(fault.delayMs !== undefined ? ['delay'] : []),
      ...(fault.hold ? ['hold'] : []),
      ...(fault.bigId ? ['bigId'] : []),
    ];
    return {
      id: fault.id,
      kinds,
      ...(fault.status !== undefined ? { status: fault.status } : {}),
      ...(fault.delayMs !== undefined ? { delayMs: fault.delayMs } : {}),
      processed,
    };
  }

  /** The answer a `status` switch gives. */
  static statusAnswer(fault: ActiveFault & { status: number }): PartnerResponse {
    const headers: Record<string, string> = { ...fault.headers };
    if (fault.retryAfter !== undefined) headers['retry-after'] = String(fault.retryAfter);
    if (fault.body !== undefined) {
      return {
        status: fault.status,
        headers: { 'content-type': 'application/json', ...headers },
        body: fault.body,
      };
    }
    if (fault.status < 400) return { status: fault.status, headers };
    const error = (STATUS_CODES[fault.status] ?? 'error').toLowerCase();
    return json(fault.status, { status: 'ERROR', error }, headers);
  }

  /** A `malformed` switch's answer: 200 (or its `status`) with the real body cut short. */
  static malformedAnswer(fault: ActiveFault, real: PartnerResponse): PartnerResponse {
    const body =
      real.body && real.body.length >= 2
        ? real.body.slice(0, Math.ceil(real.body.length / 2))
        : '{"status":"OK"';
    return { status: fault.status ?? 200, headers: { 'content-type': 'application/json' }, body };
  }

  /** Keeps an answer until `releaseHeld()`, or until `delayMs` has passed when given. */
  hold(delayMs?: number): Promise<void> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const entry: HeldAnswer = {
        release: () => {
          if (timer) clearTimeout(timer);
          this.held.delete(entry);
          resolve();
        },
      };
      this.held.add(entry);
      if (delayMs !== undefined) timer = setTimeout(entry.release, delayMs);
      this.heldWaiters = this.heldWaiters.filter((waiter) => {
        if (this.held.size < waiter.count) return true;
        waiter.resolve();
        return false;
      });
    });
  }

  get heldCount(): number {
    return this.held.size;
  }

  /** Sends every held answer now; returns how many. */
  releaseHeld(): number {
    const entries = [...this.held];
    for (const entry of entries) entry.release();
    return entries.length;
  }

  /** Resolves once at least `count` answers are held. */
  waitForHeld(count = 1): Promise<void> {
    if (this.held.size >= count) return Promise.resolve();
    return new Promise((resolve) => this.heldWaiters.push({ count, resolve }));
  }
}

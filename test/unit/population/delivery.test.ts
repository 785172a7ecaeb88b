import { describe, expect, it } from 'vitest';
import { PartnerCallError } from '../../../src/connectors/http/client.ts';
import type { RenderedRequest } from '../../../src/connectors/templates.ts';
import { retryDelaySeconds } from '../../../src/infra/population.ts';
import {
  type CallGate,
  DeadlineError,
  deliverMemberships,
  interpretAnswer,
  PARTNER_DOWN_AFTER,
} from '../../../src/population/delivery.ts';
import { membership, seedConnector } from './support.ts';

type Item = { segment: number; userid: string };

/** A partner that answers each call by a rule over the items it was sent. */
function partner(answer: (items: Item[], request: RenderedRequest) => { status: number; body?: unknown }) {
  const calls: Item[][] = [];
  return {
    calls,
    async call(request: RenderedRequest) {
      const items = request.body ? (JSON.parse(request.body.toString()) as Item[]) : [];
      calls.push(items);
      const { status, body } = answer(items, request);
      if (status >= 400) {
        throw new PartnerCallError(`answered ${status}`, {
          kind: status === 429 || status >= 500 ? 'retries_exhausted' : 'permanent',
          status,
          bodySnippet: JSON.stringify(body ?? {}),
          attempts: 1,
          outcomeUnknown: status >= 500,
          ...(status === 429 ? { retryAfterMs: 30_000 } : {}),
        });
      }
      return { status, json: () => body };
    },
  };
}

const deps = (p: ReturnType<typeof partner>, responses: Record<string, unknown> = {}, extra = {}) => ({
  connector: seedConnector({}, responses),
  environment: 'test',
  partner: p,
  concurrency: 4,
  deadline: Date.now() + 60_000,
  ...extra,
});

const users = (n: number) => Array.from({ length: n }, (_, i) => membership(i));

describe('deliverMemberships', () => {
  it('delivers 2500 users in 3 calls', async () => {
    const p = partner(() => ({ status: 200 }));
    const outcome = await deliverMemberships(users(2500), deps(p));
    expect(outcome.delivered).toHaveLength(2500);
    expect(outcome.calls).toBe(3);
  });

  it('bisects a whole-batch 400 so one bad user does not sink the others', async () => {
    const p = partner((items) =>
      items.some((i) => i.userid === 'partner613')
        ? { status: 400, body: { error: 'bad id' } }
        : { status: 200 },
    );
    const outcome = await deliverMemberships(users(1000), deps(p));
    expect(outcome.delivered).toHaveLength(999);
    expect(outcome.rejected).toMatchObject([
      { reason: 'partner_refused', item: { partnerUserId: 'partner613' } },
    ]);
    expect(outcome.failed).toEqual([]);
    expect(p.calls.length).toBeLessThanOrEqual(1 + 2 * Math.ceil(Math.log2(1000)));
  });

  it('takes a short mutation count as a partial failure and finds the item', async () => {
    const p = partner((items) => ({
      status: 200,
      body: { processed: items.filter((i) => i.userid !== 'partner7').length },
    }));
    const outcome = await deliverMemberships(users(16), deps(p, { countPath: 'processed' }));
    expect(outcome.delivered).toHaveLength(15);
    expect(outcome.rejected.map((r) => r.item.partnerUserId)).toEqual(['partner7']);
  });

  it('reads per-item errors by index', async () => {
    const p = partner(() => ({
      status: 200,
      body: { status: 'PARTIAL', errors: [{ index: 2, error: 'unknown segment' }] },
    }));
    const outcome = await deliverMemberships(
      users(5),
      deps(p, { perItem: { path: 'errors', errorField: 'error', indexField: 'index' } }),
    );
    expect(outcome.delivered).toHaveLength(4);
    expect(outcome.rejected).toMatchObject([
      { item: { partnerUserId: 'partner2' }, detail: 'unknown segment' },
    ]);
    expect(p.calls).toHaveLength(1);
  });

  it('hands 429 and 5xx back for a later try, with the Retry-After', async () => {
    const p = partner(() => ({ status: 429 }));
    const outcome = await deliverMemberships(users(10), deps(p));
    expect(outcome.delivered).toEqual([]);
    expect(outcome.failed).toHaveLength(10);
    expect(outcome.failed[0]?.retryAfterMs).toBe(30_000);
    const down = await deliverMemberships(users(10), deps(partner(() => ({ status: 503 }))));
    expect(down.failed).toHaveLength(10);
    expect(down.rejected).toEqual([]);
  });

  it('treats 401/403 as retryable trouble, not as the users fault', async () => {
    const outcome = await deliverMemberships(users(4), deps(partner(() => ({ status: 403 }))));
    expect(outcome.failed).toHaveLength(4);
    expect(outcome.rejected).toEqual([]);
  });

  it('starts no call past the deadline', async () => {
    const p = partner(() => ({ status: 200 }));
    const gate: CallGate = {
      acquire: async () => {
        throw new DeadlineError(5000);
      },
      observe: () => {},
    };
    const outcome = await deliverMemberships(users(3), deps(p, {}, { gate }));
    expect(p.calls).toHaveLength(0);
    expect(outcome.failed).toHaveLength(3);
  });

  it('bounds concurrent calls in single mode', async () => {
    let running = 0;
    let peak = 0;
    const p = {
      async call() {
        running++;
        peak = Math.max(peak, running);
        await new Promise((resolve) => setImmediate(resolve));
        running--;
        return { status: 200, json: () => undefined };
      },
    };
    const outcome = await deliverMemberships(users(200), {
      connector: seedConnector({
        mode: 'single',
        add: { path: '/v1/segment?id={segmentId}&userid={userId}' },
      }),
      environment: 'test',
      partner: p,
      concurrency: 7,
      deadline: Date.now() + 60_000,
    });
    expect(outcome.delivered).toHaveLength(200);
    expect(peak).toBe(7);
  });
});

describe('interpretAnswer', () => {
  const responses = seedConnector().responses;
  it('takes a 2xx without a body as success for every item', () => {
    expect(interpretAnswer(undefined, 3, responses)).toEqual([{ ok: true }, { ok: true }, { ok: true }]);
  });
  it('reads aligned per-item results', () => {
    const verdicts = interpretAnswer({ results: [{}, { error: 'x' }] }, 2, {
      ...responses,
      perItem: { path: 'results', errorField: 'error' },
    });
    expect(verdicts).toEqual([{ ok: true }, { ok: false, detail: 'x' }]);
  });
  it('a full count is success, a short one is not', () => {
    const counted = { ...responses, countPath: 'processed' };
    expect(interpretAnswer({ processed: 3 }, 3, counted)).toHaveLength(3);
    expect(interpretAnswer({ processed: 2 }, 3, counted)).toBe('short');
  });
});

describe('a partner that is down', () => {
  it('is not called again after 3 calls in a row fail; the rest come back through the queue', async () => {
    const p = partner(() => ({ status: 503 }));
    const outcome = await deliverMemberships(users(10), {
      ...deps(p),
      connector: seedConnector({
        mode: 'single',
        add: { path: '/v1/segment?id={segmentId}&userid={userId}' },
      }),
      concurrency: 1,
    });
    expect(p.calls).toHaveLength(PARTNER_DOWN_AFTER);
    expect(outcome.failed).toHaveLength(10);
    expect(outcome.rejected).toEqual([]);
  });
});

describe('retry delays', () => {
  it('double per receive from the base, honour a longer Retry-After, and stay within SQS limits', () => {
    expect([1, 2, 3, 4].map((n) => retryDelaySeconds(n, undefined, 10))).toEqual([10, 20, 40, 80]);
    expect(retryDelaySeconds(50, undefined, 10)).toBe(15 * 60);
    expect(retryDelaySeconds(1, 120_500, 10)).toBe(121);
    expect(retryDelaySeconds(1, 86_400_000 * 2, 10)).toBe(43_200);
  });
});

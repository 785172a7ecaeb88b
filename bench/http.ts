/// <reference path="../local/types/dynalite.d.ts" />
// (the local stack's type declarations, which tsconfig.json includes through local/ but a check of bench/*.ts alone does not)
import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';
import { DMP_USER, SEED_QUERY } from './fixtures.ts';
import type { BenchModule } from './registry.ts';
import { median, quantile } from './runner.ts';

/**
 * Benchmark 3: requests per second of the seed's `/uid` callback through the local stack (local
 * HTTP API -> the real handler -> dynalite), relative to `GET /no-such-route` on the same API: the
 * local API Gateway answers that 404 itself, so the baseline is the cost of HTTP on loopback plus
 * the adapter's routing, and the ratio is what the function adds on top.
 */

export interface HttpOptions {
  /** Requests per path, over all measured rounds. */
  readonly requests: number;
  readonly rounds: number;
  readonly concurrency: number;
  /** Requests per path before measuring (the first `/uid` stores the mapping). */
  readonly warmup: number;
}

export interface HttpResult {
  /** Median over rounds of rps(/uid) / rps(404). */
  readonly rpsRatio: number;
  readonly rpsRatioQ1: number;
  readonly rpsRatioQ3: number;
  readonly uidRps: number;
  readonly baselineRps: number;
  readonly outcome: string;
  readonly uidStatus: number;
}

interface Target {
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly expectedStatus: number;
}

function get(agent: Agent, origin: URL, target: Target): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        agent,
        host: origin.hostname,
        port: origin.port,
        path: target.path,
        method: 'GET',
        headers: target.headers,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** `count` requests, `concurrency` at a time; returns the elapsed milliseconds. */
async function load(
  agent: Agent,
  origin: URL,
  target: Target,
  count: number,
  concurrency: number,
): Promise<number> {
  let next = 0;
  let unexpected = 0;
  let lastStatus = 0;
  const worker = async () => {
    while (next < count) {
      next++;
      const { status } = await get(agent, origin, target);
      if (status !== target.expectedStatus) {
        unexpected++;
        lastStatus = status;
      }
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = performance.now() - started;
  if (unexpected > 0) {
    throw new Error(
      `${target.path}: ${unexpected} of ${count} answers were ${lastStatus}, not ${target.expectedStatus}`,
    );
  }
  return elapsed;
}

/** Sets variables for the duration of `body`, then restores them (unset ones are unset again). */
async function withEnv<T>(values: Record<string, string>, body: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(values).map((name) => [name, process.env[name]]));
  Object.assign(process.env, values);
  try {
    return await body();
  } finally {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
}

export async function runHttp(options: HttpOptions): Promise<HttpResult> {
  return withEnv({ POWERTOOLS_LOG_LEVEL: 'SILENT', POWERTOOLS_METRICS_DISABLED: 'true' }, async () => {
    // Loaded here, not at the top: the stand-ins (dynalite, fauxqs) stay out of the other benchmarks.
    const { startLocalStack } = await import('../local/stack.ts');
    const stack = await startLocalStack({ quiet: true });
    const agent = new Agent({ keepAlive: true, maxSockets: options.concurrency });
    try {
      const origin = new URL(stack.apiUrl);
      if (origin.hostname !== '127.0.0.1') throw new Error(`local API is not on loopback: ${stack.apiUrl}`);
      const cookie = { cookie: `dmp_uid=${DMP_USER}` };
      // The chain goes on from the callback to the next due platform (88888): a 302.
      const uid: Target = { path: `/uid?${SEED_QUERY}`, headers: cookie, expectedStatus: 302 };
      const notFound: Target = { path: '/no-such-route', headers: cookie, expectedStatus: 404 };

      const first = await get(agent, origin, { ...uid, path: `/uid?${SEED_QUERY}&debug=1` });
      const stored = JSON.parse(first.body) as { outcome?: string };
      if (stored.outcome !== 'stored' && stored.outcome !== 'unchanged') {
        throw new Error(`first /uid did not store the mapping: ${first.status} ${first.body}`);
      }
      await load(agent, origin, uid, options.warmup, options.concurrency);
      await load(agent, origin, notFound, options.warmup, options.concurrency);
      const probe = await get(agent, origin, { ...uid, path: `/uid?${SEED_QUERY}&debug=1` });
      const outcome = (JSON.parse(probe.body) as { outcome?: string }).outcome ?? '?';
      if (outcome !== 'unchanged') throw new Error(`/uid is not on the read-only path: ${probe.body}`);

      const perRound = Math.max(1, Math.round(options.requests / options.rounds));
      const ratios: number[] = [];
      const uidRps: number[] = [];
      const baselineRps: number[] = [];
      for (let round = 0; round < options.rounds; round++) {
        let uidMs: number;
        let baseMs: number;
        if (round % 2 === 0) {
          baseMs = await load(agent, origin, notFound, perRound, options.concurrency);
          uidMs = await load(agent, origin, uid, perRound, options.concurrency);
        } else {
          uidMs = await load(agent, origin, uid, perRound, options.concurrency);
          baseMs = await load(agent, origin, notFound, perRound, options.concurrency);
        }
        const u = (perRound * 1000) / uidMs;
        const b = (perRound * 1000) / baseMs;
        uidRps.push(u);
        baselineRps.push(b);
        ratios.push(u / b);
      }
      return {
        rpsRatio: median(ratios),
        rpsRatioQ1: quantile(ratios, 0.25),
        rpsRatioQ3: quantile(ratios, 0.75),
        uidRps: median(uidRps),
        baselineRps: median(baselineRps),
        outcome,
        uidStatus: uid.expectedStatus,
      };
    } finally {
      agent.destroy();
      await stack.stop();
    }
  });
}

/** Section 3 of `npm run bench`: /uid through the local stack against the API's own 404. */
export const httpBench: BenchModule = {
  id: 'http',
  describe: 'local stack over HTTP: /uid requests/s against the local API Gateway 404',
  async run({ quick }) {
    const result = await runHttp(
      quick
        ? { requests: 500, rounds: 5, concurrency: 8, warmup: 100 }
        : { requests: 2000, rounds: 8, concurrency: 8, warmup: 200 },
    );
    return {
      id: 'http',
      title:
        '3. local stack over HTTP (loopback, keep-alive, concurrency 8; baseline: GET /no-such-route, a 404)',
      figures: [
        {
          name: `3  GET /uid seed callback (${result.outcome}, ${result.uidStatus}), rps`,
          value: result.uidRps,
          unit: 'req/s',
          baseline: result.baselineRps,
          ratio: result.rpsRatio,
          spread: [result.rpsRatioQ1, result.rpsRatioQ3],
        },
      ],
      notes: [`a callback costs ${(1 / result.rpsRatio).toFixed(0)} times the 404's time per request`],
    };
  },
};

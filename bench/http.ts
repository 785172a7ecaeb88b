/// <reference path="../local/types/dynalite.d.ts" />
// (the local stack's type declarations, which tsconfig.json includes through local/ but a check of bench/*.ts alone does not)
import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';
import { PutItemCommand } from '@aws-sdk/client-dynamodb';
import type { FunctionKey } from '../src/infra/resources.ts';
import { FUNCTIONS, MAPPING_TABLE } from '../src/infra/resources.ts';
import { DMP_USER, SEED_QUERY } from './fixtures.ts';
import type { BenchModule } from './registry.ts';
import { median, quantile } from './runner.ts';

/**
 * Benchmark 3: requests per second of the seed's `/uid` callback through the local stack (local
 * HTTP API -> the real handler -> dynalite), relative to a floor: a minimal handler behind the same
 * local HTTP API (one server, in the same process, routed like /uid) that does one raw `PutItem`
 * per request with the same SDK client (`dynamoDbClient()`) and answers the pixel. The ratio is
 * what the handler costs beyond the one store write every callback needs; the target is >= 0.8.
 * Each timed `/uid` is the common callback: a browser with its `dmp_uid` and no mapping for 99999
 * yet (a new cookie per request), answered by one conditional write and a 302 to the next partner.
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
  /** Median over rounds of rps(/uid) / rps(floor). */
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
  /** Per request (a new browser cookie each time, for /uid). */
  readonly headers: () => Record<string, string>;
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
        headers: target.headers(),
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

let browsers = 0;
/** A browser that is a DMP user without a mapping for 99999: its own `dmp_uid` per request. */
const newBrowser = () => ({ cookie: `dmp_uid=${DMP_USER}-${(browsers++).toString(36).padStart(8, '0')}` });

export async function runHttp(options: HttpOptions): Promise<HttpResult> {
  return withEnv({ POWERTOOLS_LOG_LEVEL: 'SILENT', POWERTOOLS_METRICS_DISABLED: 'true' }, async () => {
    // Loaded here, not at the top: the stand-ins (dynalite, fauxqs) stay out of the other benchmarks.
    const { startLocalStack } = await import('../local/stack.ts');
    const { startHttpApi } = await import('../local/http-api.ts');
    const { entryLoader, LocalFunction } = await import('../local/lambda.ts');
    const { REPO_ROOT } = await import('../local/endpoints.ts');
    const { dynamoDbClient } = await import('../src/aws/clients.ts');
    const { pixel } = await import('../src/sync/http.ts');
    // No event sources: in AWS the mapping stream's consumer (release-pending) runs in its own
    // containers, not in the user-sync function's; here it would share this process's CPU with
    // /uid only (the floor's items are not mappings), and the stream emulation's proxy would stand
    // between both and dynalite. Measured is the handler's own cost beyond one write.
    const stack = await startLocalStack({ quiet: true, eventSources: [] });
    const tableName = stack.tableNames['MappingTable'] ?? MAPPING_TABLE.localName;

    // One local HTTP API serving both: the real /uid (the module the stack loaded, same process)
    // and the floor, whose handler does nothing but one raw PutItem with the same client.
    const definition = FUNCTIONS.userSync;
    const userSync = new LocalFunction(
      'userSync',
      definition,
      await entryLoader(REPO_ROOT)('userSync', definition),
      {
        functionName: 'bench-user-sync',
        region: stack.region,
      },
    );
    const client = dynamoDbClient();
    let floorWrites = 0;
    const floorKey = 'floor' as FunctionKey;
    const floor = new LocalFunction(
      floorKey,
      { ...definition, id: 'FloorFunction', entry: 'bench/http.ts' },
      async () => {
        await client.send(
          new PutItemCommand({
            TableName: tableName,
            Item: {
              pk: { S: `bench#${(floorWrites++).toString(36)}` },
              sk: { S: 'platform#99999' },
              partnerUserId: { S: 'abcdef123' },
            },
          }),
        );
        return pixel(200);
      },
      { functionName: 'bench-floor', region: stack.region },
    );
    const api = await startHttpApi({
      routes: [
        { method: 'GET', path: '/uid', function: 'userSync' },
        { method: 'GET', path: '/floor', function: floorKey },
      ],
      functions: new Map([
        ['userSync', userSync],
        [floorKey, floor],
      ]),
    });
    const agent = new Agent({ keepAlive: true, maxSockets: options.concurrency });
    try {
      const origin = new URL(api.url);
      if (origin.hostname !== '127.0.0.1') throw new Error(`local API is not on loopback: ${api.url}`);
      // The chain goes on from the callback to the next due platform (88888): a 302.
      const uid: Target = { path: `/uid?${SEED_QUERY}`, headers: newBrowser, expectedStatus: 302 };
      const baseline: Target = { path: '/floor', headers: newBrowser, expectedStatus: 200 };

      const probe = await get(agent, origin, { ...uid, path: `/uid?${SEED_QUERY}&debug=1` });
      const outcome = (JSON.parse(probe.body) as { outcome?: string }).outcome ?? '?';
      if (outcome !== 'stored') throw new Error(`/uid is not the common callback: ${probe.body}`);
      await load(agent, origin, uid, options.warmup, options.concurrency);
      await load(agent, origin, baseline, options.warmup, options.concurrency);

      const perRound = Math.max(1, Math.round(options.requests / options.rounds));
      const ratios: number[] = [];
      const uidRps: number[] = [];
      const baselineRps: number[] = [];
      for (let round = 0; round < options.rounds; round++) {
        let uidMs: number;
        let baseMs: number;
        if (round % 2 === 0) {
          baseMs = await load(agent, origin, baseline, perRound, options.concurrency);
          uidMs = await load(agent, origin, uid, perRound, options.concurrency);
        } else {
          uidMs = await load(agent, origin, uid, perRound, options.concurrency);
          baseMs = await load(agent, origin, baseline, perRound, options.concurrency);
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
      await api.stop();
      await stack.stop();
    }
  });
}

/** Section 3 of `npm run bench`: /uid through the local stack against the API's own 404. */
export const httpBench: BenchModule = {
  id: 'http',
  describe: 'local stack over HTTP: /uid requests/s against a one-PutItem floor behind the same API',
  async run({ quick }) {
    const result = await runHttp(
      quick
        ? { requests: 500, rounds: 5, concurrency: 8, warmup: 100 }
        : { requests: 2000, rounds: 8, concurrency: 8, warmup: 200 },
    );
    return {
      id: 'http',
      title:
        '3. local stack over HTTP (loopback, keep-alive, concurrency 8; baseline: a handler doing one raw PutItem)',
      figures: [
        {
          name: `3  GET /uid seed callback (${result.outcome}, ${result.uidStatus}), rps`,
          value: result.uidRps,
          unit: 'req/s',
          baseline: result.baselineRps,
          ratio: result.rpsRatio,
          spread: [result.rpsRatioQ1, result.rpsRatioQ3],
          target: { on: 'ratio', atLeast: 0.8 },
        },
      ],
      notes: [
        'floor: GET /floor on the same local HTTP API, one PutItem with the same DynamoDB client, the pixel',
        'measured without the mapping stream consumer (release-pending): in AWS it runs in its own containers; in one local process it shares the CPU and puts the stream proxy before dynalite, and /uid measured that way was 0.63-0.65x (docs/performance.md)',
      ],
    };
  },
};

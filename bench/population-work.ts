import { fileURLToPath } from 'node:url';
import type { SQSClient } from '@aws-sdk/client-sqs';
import { MAPPING_TABLE } from '../src/infra/resources.ts';
import { REPO_ROOT } from './fixtures.ts';
import { benchUsers, type PopulationBenchStack, startPopulationBench } from './population.ts';
import { runCaptured } from './runner.ts';
import { countDynamoWork, countLogBytes } from './sync-work.ts';

/**
 * The work of delivering memberships, counted through the local stack (the real route and deliver
 * handlers behind the SQS event-source emulation, dynalite, fauxqs, the reference partner) with the
 * deployed functions' log settings (Powertools at INFO, EMF metrics on): what the cost model
 * (bench/cost/) prices per membership instead of design figures.
 *
 * Counted: DynamoDB calls and the capacity units DynamoDB reports for them, by table (a middleware
 * on the shared client of src/aws/clients.ts, `ReturnConsumedCapacity: TOTAL`; a refused
 * conditional write counted as AWS bills it); SQS calls the functions make and their payload bytes
 * (a middleware on the shared SQS client); the audience messages a producer sends and their bytes;
 * Lambda invocations, records and wall-clock milliseconds of the route and deliver handlers; partner
 * calls and their body bytes (the reference partner's request log); the bytes the functions log.
 * Not countable here: the receives and deletes of Lambda's SQS pollers (the cost model derives them
 * from the messages and their sizes), and durations as they would be in AWS (dynalite and the
 * partner share this machine's CPUs).
 */

export interface HandlerWork {
  readonly invocations: number;
  readonly records: number;
  readonly ms: number;
}

export interface MembershipWorkMeasured {
  readonly memberships: number;
  readonly audienceMessages: number;
  readonly audienceBytes: number;
  /** Billed producer requests (a SendMessageBatch is one per 64 KB of payload). */
  readonly producerSqsRequests: number;
  /** SQS calls of the functions by command, their billed requests and the delivery messages sent. */
  readonly sqsCalls: Readonly<Record<string, number>>;
  readonly functionSqsRequests: number;
  readonly deliveryMessages: number;
  readonly deliveryBytes: number;
  readonly route: HandlerWork;
  readonly deliver: HandlerWork;
  readonly partnerCalls: number;
  readonly partnerBodyBytes: number;
  readonly dynamoCalls: Readonly<Record<string, number>>;
  /** Capacity units by table. */
  readonly dynamoByTable: Readonly<Record<string, { read: number; write: number }>>;
  readonly mappingReadUnits: number;
  /** Every other table's units (population state, progress, tallies, rate slots, segments). */
  readonly stateReadUnits: number;
  readonly stateWriteUnits: number;
  readonly logBytes: number;
}

const SQS_CHUNK_BYTES = 64 * 1024;

/** Counts the SQS calls of `client` and their payload (message bodies), until `detach()`. */
function countSqsWork(client: SQSClient) {
  let calls: Record<string, number> = {};
  let billed = 0;
  let messages = 0;
  let bytes = 0;
  const name = 'benchSqsCounter';
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const command = context.commandName ?? 'unknown';
      calls[command] = (calls[command] ?? 0) + 1;
      const input = args.input as { Entries?: { MessageBody?: string }[]; MessageBody?: string };
      const bodies = input.Entries
        ? input.Entries.flatMap((entry) => (entry.MessageBody === undefined ? [] : [entry.MessageBody]))
        : input.MessageBody === undefined
          ? []
          : [input.MessageBody];
      const payload = bodies.reduce((sum, body) => sum + Buffer.byteLength(body), 0);
      billed += Math.max(1, Math.ceil(payload / SQS_CHUNK_BYTES));
      if (command.startsWith('SendMessage')) {
        messages += bodies.length;
        bytes += payload;
      }
      return next(args);
    },
    { step: 'initialize', name },
  );
  return {
    take() {
      const taken = { calls, billed, messages, bytes };
      calls = {};
      billed = 0;
      messages = 0;
      bytes = 0;
      return taken;
    },
    detach: () => client.middlewareStack.remove(name),
  };
}

/** Delivers `users` memberships (1000 per audience message) and counts the work it took. */
export async function measureMembershipWork(users: number): Promise<MembershipWorkMeasured> {
  const { dynamoDbClient, sqsClient } = await import('../src/aws/clients.ts');
  const handlers: Record<'route' | 'deliver', { invocations: number; records: number; ms: number }> = {
    route: { invocations: 0, records: 0, ms: 0 },
    deliver: { invocations: 0, records: 0, ms: 0 },
  };
  const log = countLogBytes();
  let bench: PopulationBenchStack | undefined;
  const dynamo = countDynamoWork(dynamoDbClient());
  const sqs = countSqsWork(sqsClient());
  try {
    bench = await startPopulationBench({
      windowMs: 1000,
      wrap: (key, handler) =>
        key !== 'route' && key !== 'deliver'
          ? handler
          : async (event, context) => {
              const counted = handlers[key];
              counted.invocations += 1;
              counted.records += (event as { Records?: unknown[] }).Records?.length ?? 0;
              const started = performance.now();
              try {
                return await handler(event, context);
              } finally {
                counted.ms += performance.now() - started;
              }
            },
    });
    const ids = benchUsers('work', users);
    await bench.syncAll(ids);
    bench.stack.partner.reset();
    for (const counted of Object.values(handlers))
      Object.assign(counted, { invocations: 0, records: 0, ms: 0 });
    dynamo.take();
    sqs.take();
    log.take();

    const sent = await bench.send('bench-real', ids);
    await bench.stack.whenIdle();

    const db = dynamo.take();
    const queues = sqs.take();
    const logged = log.take();
    const calls = bench.populationCalls();
    const held = bench.stack.partner.members(bench.stack.partner.segments()[0]?.segment_id ?? 0);
    if (held.length < users)
      throw new Error(`membership work: the partner holds ${held.length} of ${users} users after the run`);
    const mapping = db.byTable[MAPPING_TABLE.localName] ?? { read: 0, write: 0 };
    const others = Object.entries(db.byTable).filter(([table]) => table !== MAPPING_TABLE.localName);
    return {
      memberships: users,
      audienceMessages: sent.messages,
      audienceBytes: sent.bytes,
      producerSqsRequests: sent.calls.reduce(
        (sum, bytes) => sum + Math.max(1, Math.ceil(bytes / SQS_CHUNK_BYTES)),
        0,
      ),
      sqsCalls: queues.calls,
      functionSqsRequests: queues.billed,
      deliveryMessages: queues.messages,
      deliveryBytes: queues.bytes,
      route: { ...handlers.route },
      deliver: { ...handlers.deliver },
      partnerCalls: calls.length,
      partnerBodyBytes: calls.reduce((sum, call) => sum + (call.bodyBytes ?? 0), 0),
      dynamoCalls: db.calls,
      dynamoByTable: db.byTable,
      mappingReadUnits: mapping.read,
      stateReadUnits: others.reduce((sum, [, units]) => sum + units.read, 0),
      stateWriteUnits: others.reduce((sum, [, units]) => sum + units.write, 0) + mapping.write,
      logBytes: logged.bytes,
    };
  } finally {
    dynamo.detach();
    sqs.detach();
    await bench?.stop();
    log.restore();
  }
}

/** DynamoDB units per pending membership, by step, and the calls that spent them. */
export interface PendingWorkMeasured {
  readonly memberships: number;
  /** The route keeping unsynced users pending (its pending writes, tallies and re-check). */
  readonly route: {
    readonly byTable: Record<string, { read: number; write: number }>;
    readonly calls: Record<string, number>;
  };
  /** Their syncs: the release (stream) and the deliver step, less the sync's own mapping writes. */
  readonly release: {
    readonly byTable: Record<string, { read: number; write: number }>;
    readonly calls: Record<string, number>;
  };
}

/**
 * What a pending user costs on top of a synced one (docs/population.md section 6): `users` unsynced
 * memberships routed, then their syncs stored (the stream releases them and the deliver step
 * delivers them); DynamoDB units counted per phase, per membership.
 */
export async function measurePendingWork(users: number): Promise<PendingWorkMeasured> {
  const { dynamoDbClient } = await import('../src/aws/clients.ts');
  let bench: PopulationBenchStack | undefined;
  const dynamo = countDynamoWork(dynamoDbClient());
  const perMembership = (db: ReturnType<typeof dynamo.take>) => ({
    byTable: Object.fromEntries(
      Object.entries(db.byTable).map(([table, units]) => [
        table,
        { read: units.read / users, write: units.write / users },
      ]),
    ),
    calls: db.calls,
  });
  try {
    bench = await startPopulationBench({ windowMs: 1000 });
    const ids = benchUsers('pending-work', users);
    dynamo.take();
    await bench.send('bench-pending', ids);
    await bench.stack.whenIdle();
    const route = perMembership(dynamo.take());
    await bench.syncAll(ids);
    await bench.stack.whenIdle();
    const release = perMembership(dynamo.take());
    const segment = bench.stack.partner.segments().find((s) => s.title.includes('bench-pending'));
    const held = segment ? bench.stack.partner.members(segment.segment_id).length : users;
    if (held < users)
      throw new Error(`pending work: the partner holds ${held} of ${users} users after the run`);
    return { memberships: users, route, release };
  } finally {
    dynamo.detach();
    await bench?.stop();
  }
}

const RESULT_MARKER = 'BENCH_MEMBERSHIP_WORK ';

/** Runs measureMembershipWork in a fresh process with the deployed functions' log settings. */
export async function measureMembershipWorkInChild(users: number): Promise<MembershipWorkMeasured> {
  const { code, out, err } = await runCaptured(
    process.execPath,
    ['--import', 'tsx', fileURLToPath(import.meta.url), String(users)],
    {
      cwd: REPO_ROOT,
      env: { ...process.env, POWERTOOLS_LOG_LEVEL: 'INFO', POWERTOOLS_METRICS_DISABLED: 'false' },
    },
  );
  const line = out.split('\n').find((candidate) => candidate.startsWith(RESULT_MARKER));
  if (code !== 0 || !line)
    throw new Error(
      `membership work measurement failed (exit ${code}): ${err.trim().slice(-2000) || out.trim().slice(-2000)}`,
    );
  return JSON.parse(line.slice(RESULT_MARKER.length)) as MembershipWorkMeasured;
}

const measured = new Map<number, Promise<MembershipWorkMeasured>>();

/** The membership work of this bench run (measured once per process and size). */
export function membershipWorkOfThisRun(users: number): Promise<MembershipWorkMeasured> {
  let work = measured.get(users);
  if (!work) {
    work = measureMembershipWorkInChild(users);
    measured.set(users, work);
  }
  return work;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  // `node --import tsx bench/population-work.ts <users> [pending]`
  const users = Number(process.argv[2] ?? 10_000);
  (process.argv[3] === 'pending' ? measurePendingWork(users) : measureMembershipWork(users)).then(
    (work) => {
      process.stdout.write(`${RESULT_MARKER}${JSON.stringify(work)}\n`);
      process.exit(0);
    },
    (error: unknown) => {
      process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exit(1);
    },
  );
}

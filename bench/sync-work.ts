/// <reference path="../local/types/dynalite.d.ts" />
import { fileURLToPath } from 'node:url';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { signSyncCallback } from '../src/sync/signature.ts';
import {
  REPO_ROOT,
  SIGNED_PLATFORM,
  SIGNING_KID,
  SIGNING_SECRET,
  STATIC_PLATFORM,
  STATIC_SIGNING_SECRET,
  STATIC_TOKEN,
} from './fixtures.ts';
import type { BenchModule, Figure } from './registry.ts';
import { runCaptured } from './runner.ts';
import { type CountedWork, type StreamConsumerWork, streamConsumerMeter } from './stream-work.ts';

/**
 * The work one sync request costs, counted through the local stack with the deployed function's
 * logging (Powertools at INFO; its funnel metrics ride on that line, FUNCTIONS.userSync.runtime):
 * DynamoDB calls and the capacity units DynamoDB
 * reports for them (`ReturnConsumedCapacity: TOTAL`, added to every call by a middleware on the
 * handler's own client), the bytes the function writes to its log, and the bytes of the answer.
 * One request per kind of mapping write: new, unchanged, changed (from a browser whose `dmp_ss`
 * names the stored id by its digest: the change is the first and only call), refreshed (the clock
 * moved past the refresh interval), a signed callback with the token `/sync` minted (bound to the
 * browser: no replay guard), a signed callback with the static token (bound to no browser: its
 * replay guard is one more write, the price of replay protection), and the pixel's `/sync` entry.
 * These counts are exact, not timings: the cost model (bench/cost/) prices them.
 *
 * It runs in a child process: the handler's logger and metrics read their settings when the
 * module is first imported, and the HTTP benchmark imports it silenced in the parent.
 */

export const SYNC_KINDS = [
  'new',
  'unchanged',
  'changed',
  'refreshed',
  'signed-new',
  'signed-static-new',
  'pixel',
] as const;
export type SyncKind = (typeof SYNC_KINDS)[number];

export interface RequestWork extends CountedWork {
  readonly kind: SyncKind;
  /** What the handler logged as the request's outcome (checked against the intended one). */
  readonly outcome: string;
  readonly status: number;
  /** Of which EMF metric records (lines with `_aws`). */
  readonly emfBytes: number;
  readonly logLines: number;
  readonly responseBytes: number;
  /** What the mapping table's stream consumer (release-pending) did for it (bench/stream-work.ts). */
  readonly stream: StreamConsumerWork;
}

const EXPECTED_OUTCOME: Record<SyncKind, string> = {
  new: 'stored',
  unchanged: 'unchanged',
  changed: 'changed',
  refreshed: 'refreshed',
  'signed-new': 'stored',
  'signed-static-new': 'stored',
  pixel: 'redirected',
};

const READ_COMMANDS = new Set(['GetItemCommand', 'QueryCommand', 'BatchGetItemCommand', 'ScanCommand']);
const WRITE_COMMANDS = new Set([
  'PutItemCommand',
  'UpdateItemCommand',
  'DeleteItemCommand',
  'BatchWriteItemCommand',
  'TransactWriteItemsCommand',
]);

interface Capacity {
  readonly CapacityUnits?: number;
  readonly TableName?: string;
}

/**
 * Counts every call of `client` and the capacity DynamoDB reports for it (in total, by command and
 * by table, reads and writes apart), until `detach()`.
 */
export function countDynamoWork(client: DynamoDBClient) {
  let calls: Record<string, number> = {};
  let unitsByCommand: Record<string, number> = {};
  let readUnits = 0;
  let writeUnits = 0;
  let byTable: Record<string, { read: number; write: number }> = {};
  const addTable = (table: string | undefined, units: number, write: boolean) => {
    const entry = byTable[table ?? 'unknown'] ?? { read: 0, write: 0 };
    if (write) entry.write += units;
    else entry.read += units;
    byTable[table ?? 'unknown'] = entry;
  };
  const name = 'benchWorkCounter';
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const command = context.commandName ?? 'unknown';
      if (READ_COMMANDS.has(command) || WRITE_COMMANDS.has(command)) {
        (args.input as { ReturnConsumedCapacity?: string }).ReturnConsumedCapacity = 'TOTAL';
      }
      calls[command] = (calls[command] ?? 0) + 1;
      let result: Awaited<ReturnType<typeof next>>;
      try {
        result = await next(args);
      } catch (error) {
        // DynamoDB bills a write whose condition failed (1 write unit for an item under 1 KB);
        // dynalite reports nothing for it. Count it as AWS charges it.
        if ((error as Error).name === 'ConditionalCheckFailedException' && WRITE_COMMANDS.has(command)) {
          unitsByCommand[command] = (unitsByCommand[command] ?? 0) + 1;
          writeUnits += 1;
          addTable((args.input as { TableName?: string }).TableName, 1, true);
        }
        throw error;
      }
      const reported = (result.output as { ConsumedCapacity?: Capacity | Capacity[] }).ConsumedCapacity;
      const capacities = Array.isArray(reported) ? reported : reported ? [reported] : [];
      for (const capacity of capacities)
        addTable(capacity.TableName, capacity.CapacityUnits ?? 0, WRITE_COMMANDS.has(command));
      let units = capacities.reduce((sum, capacity) => sum + (capacity.CapacityUnits ?? 0), 0);
      // DynamoDB bills a Query or Scan that finds nothing its minimum read (1 unit strongly
      // consistent, 0.5 eventually); dynalite reports 0 for it. Count it as AWS charges it.
      if (units === 0 && (command === 'QueryCommand' || command === 'ScanCommand')) {
        const input = args.input as { ConsistentRead?: boolean; TableName?: string };
        units = input.ConsistentRead ? 1 : 0.5;
        addTable(input.TableName, units, false);
      }
      unitsByCommand[command] = (unitsByCommand[command] ?? 0) + units;
      if (WRITE_COMMANDS.has(command)) writeUnits += units;
      else readUnits += units;
      return result;
    },
    { step: 'initialize', name },
  );
  return {
    take() {
      const taken = { calls, unitsByCommand, readUnits, writeUnits, byTable };
      calls = {};
      unitsByCommand = {};
      readUnits = 0;
      writeUnits = 0;
      byTable = {};
      return taken;
    },
    detach: () => client.middlewareStack.remove(name),
  };
}

/** Counts (and swallows) what the process writes to stdout/stderr: the handler's log. */
export function countLogBytes() {
  const originals = { stdout: process.stdout.write, stderr: process.stderr.write };
  let bytes = 0;
  let text = '';
  for (const stream of [process.stdout, process.stderr]) {
    stream.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      const piece = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      bytes += Buffer.byteLength(piece);
      text += piece;
      (rest.find((arg) => typeof arg === 'function') as (() => void) | undefined)?.();
      return true;
    }) as typeof stream.write;
  }
  return {
    take() {
      const lines = text.split('\n').filter(Boolean);
      const taken = { bytes, lines };
      bytes = 0;
      text = '';
      return taken;
    },
    restore() {
      process.stdout.write = originals.stdout;
      process.stderr.write = originals.stderr;
    },
  };
}

/** The outcome the handler's "sync request" log line names, if `line` is that line. */
function loggedOutcome(line: string): string | undefined {
  try {
    const entry = JSON.parse(line) as { message?: unknown; outcome?: unknown };
    return entry.message === 'sync request' && typeof entry.outcome === 'string' ? entry.outcome : undefined;
  } catch {
    return undefined;
  }
}

/** Bytes of the answer as it travels: status line, headers (each Set-Cookie its own), body. */
function responseBytes(response: Response, body: ArrayBuffer): number {
  let bytes = `HTTP/1.1 ${response.status} ${response.statusText}\r\n`.length + 2;
  for (const [name, value] of response.headers) {
    if (name === 'set-cookie') continue;
    bytes += Buffer.byteLength(`${name}: ${value}\r\n`);
  }
  for (const cookie of response.headers.getSetCookie())
    bytes += Buffer.byteLength(`set-cookie: ${cookie}\r\n`);
  return bytes + body.byteLength;
}

/** Measures each kind of request once, on a fresh browser each time where it matters. */
export async function measureSyncWork(): Promise<RequestWork[]> {
  const { startLocalStack } = await import('../local/stack.ts');
  const { entryLoader } = await import('../local/lambda.ts');
  const { dynamoDbClient } = await import('../src/aws/clients.ts');
  const meter = streamConsumerMeter();
  const load = entryLoader(REPO_ROOT);
  const log = countLogBytes();
  const realNow = Date.now;
  let stack: Awaited<ReturnType<typeof startLocalStack>> | undefined;
  let dynamo: ReturnType<typeof countDynamoWork> | undefined;
  try {
    // Of the event sources, the mapping stream's consumer only (release-pending, its own function
    // in AWS): held until each answer is counted, then counted apart (bench/stream-work.ts).
    stack = await startLocalStack({
      quiet: true,
      ttlSweepIntervalMs: 0,
      eventSources: meter.eventSources,
      loadFunction: async (key, definition) => meter.wrap(key, await load(key, definition)),
    });
    dynamo = countDynamoWork(dynamoDbClient());
    const api = stack.apiUrl;
    const results: RequestWork[] = [];

    const get = async (path: string, cookie: string | undefined) => {
      const response = await fetch(`${api}${path}`, {
        redirect: 'manual',
        headers: cookie ? { cookie } : {},
      });
      const body = await response.arrayBuffer();
      return { response, bytes: responseBytes(response, body) };
    };
    /** One request whose work is counted; the handler's log line says which outcome it had. */
    const measure = async (kind: SyncKind, path: string, cookie: string | undefined) => {
      dynamo?.take();
      log.take();
      meter.hold();
      const { response, bytes } = await get(path, cookie);
      const work = dynamo!.take();
      const logged = log.take();
      const local = stack!;
      const stream = await meter.settle(() => local.whenIdle(), { dynamo: dynamo!, log });
      const outcome = logged.lines.map(loggedOutcome).find((value) => value !== undefined) ?? '?';
      if (outcome !== EXPECTED_OUTCOME[kind]) {
        throw new Error(
          `sync work, ${kind}: the handler logged outcome ${outcome} (status ${response.status})`,
        );
      }
      results.push({
        kind,
        outcome,
        status: response.status,
        calls: work.calls,
        unitsByCommand: work.unitsByCommand,
        dynamoCalls: Object.values(work.calls).reduce((sum, count) => sum + count, 0),
        readUnits: work.readUnits,
        writeUnits: work.writeUnits,
        logBytes: logged.bytes,
        emfBytes: logged.lines
          .filter((line) => line.includes('"_aws"'))
          .reduce((sum, line) => sum + Buffer.byteLength(line) + 1, 0),
        logLines: logged.lines.length,
        responseBytes: bytes,
        stream,
      });
      return response;
    };

    /** A DMP user minted by our pixel (gdpr=1 without a consent string stores nothing, sends nowhere). */
    const newBrowser = async () => {
      const minted = await get(`/sync?pl=${STATIC_PLATFORM}&gdpr=1`, undefined);
      const uid = /dmp_uid=([^;]+)/.exec(minted.response.headers.getSetCookie().join('\n'))?.[1];
      if (!uid) throw new Error('sync work: /sync did not mint a dmp_uid cookie');
      return uid;
    };
    const dmpUid = await newBrowser();
    // The browser keeps what the callbacks set in `dmp_ss` (which platforms it has mappings for):
    // the next callback's first write is chosen by it.
    let synced = '';
    const cookie = () => `dmp_uid=${dmpUid}${synced ? `; ${synced}` : ''}`;
    const keepSynced = (response: Response) => {
      const set = response.headers.getSetCookie().find((line) => line.startsWith('dmp_ss='));
      if (set) synced = set.split(';')[0] ?? '';
    };
    const callback = (userid: string) => `/uid?userid=${userid}&pl=${STATIC_PLATFORM}&plsec=${STATIC_TOKEN}`;

    keepSynced(await measure('new', callback('bench-partner-1'), cookie()));
    keepSynced(await measure('unchanged', callback('bench-partner-1'), cookie()));
    // The browser's cookie names the stored id by its digest: another id is tried as a change first.
    if (!new RegExp(`^dmp_ss=${STATIC_PLATFORM}:[0-9a-z]+:[A-Za-z0-9_-]{4}$`).test(synced))
      throw new Error(`sync work: the callbacks left no partner id digest in dmp_ss (${synced})`);
    // A day and an hour on: a static-token callback may change an id once a day.
    Date.now = () => realNow() + 25 * 3_600_000;
    keepSynced(await measure('changed', callback('bench-partner-2'), cookie()));
    // Eight days on from there, past the refresh interval (7 days less the jitter) of the same id.
    const offsetMs = (8 * 24 + 25) * 3_600_000;
    Date.now = () => realNow() + offsetMs;
    await measure('refreshed', callback('bench-partner-2'), cookie());
    Date.now = realNow;

    // A signed platform: the token minted by /sync, the partner's signature, then the callback.
    const other = await get(`/sync?pl=${SIGNED_PLATFORM}`, undefined);
    const otherUid = /dmp_uid=([^;]+)/.exec(other.response.headers.getSetCookie().join('\n'))?.[1];
    const location = other.response.headers.get('location');
    const out = location ? new URL(location).searchParams.get('out') : null;
    if (!otherUid || !out)
      throw new Error(`sync work: /sync?pl=${SIGNED_PLATFORM} did not redirect to the partner`);
    const filled = new URL(out.split('[[USERID]]').join('bench-signed-1'));
    const ts = String(Math.floor(Date.now() / 1000));
    const sig = signSyncCallback(
      {
        pl: filled.searchParams.get('pl') ?? '',
        userid: 'bench-signed-1',
        plsec: filled.searchParams.get('plsec') ?? '',
        ts,
        kid: SIGNING_KID,
      },
      SIGNING_SECRET,
      'sha1',
    );
    await measure(
      'signed-new',
      `${filled.pathname}${filled.search}&ts=${ts}&kid=${SIGNING_KID}&sig=${encodeURIComponent(sig)}`,
      `dmp_uid=${otherUid}`,
    );

    // A partner-initiated callback signed over the static token: the signature is claimed once.
    const signedStaticUid = await newBrowser();
    const staticTs = String(Math.floor(Date.now() / 1000));
    const staticSig = signSyncCallback(
      {
        pl: String(STATIC_PLATFORM),
        userid: 'bench-signed-static-1',
        plsec: STATIC_TOKEN,
        ts: staticTs,
        kid: SIGNING_KID,
      },
      STATIC_SIGNING_SECRET,
      'sha1',
    );
    await measure(
      'signed-static-new',
      `${callback('bench-signed-static-1')}&ts=${staticTs}&kid=${SIGNING_KID}&sig=${staticSig}`,
      `dmp_uid=${signedStaticUid}`,
    );

    // The pixel's entry for a known browser with one platform due: the browser's mappings, a 302.
    await measure('pixel', '/sync', cookie());
    return results;
  } finally {
    Date.now = realNow;
    dynamo?.detach();
    await stack?.stop();
    log.restore();
  }
}

const RESULT_MARKER = 'BENCH_SYNC_WORK ';

/** Runs measureSyncWork in a fresh process with the deployed function's log settings. */
export async function measureSyncWorkInChild(): Promise<RequestWork[]> {
  const { code, out, err } = await runCaptured(
    process.execPath,
    ['--import', 'tsx', fileURLToPath(import.meta.url)],
    {
      cwd: REPO_ROOT,
      env: { ...process.env, POWERTOOLS_LOG_LEVEL: 'INFO', POWERTOOLS_METRICS_DISABLED: 'false' },
    },
  );
  const line = out.split('\n').find((candidate) => candidate.startsWith(RESULT_MARKER));
  if (code !== 0 || !line)
    throw new Error(`sync work measurement failed (exit ${code}): ${err.trim() || out.trim()}`);
  return JSON.parse(line.slice(RESULT_MARKER.length)) as RequestWork[];
}

let measured: Promise<RequestWork[]> | undefined;

/** The run's sync work, measured once (the cost model and this section share it). */
export function syncWorkOfThisRun(): Promise<RequestWork[]> {
  measured ??= measureSyncWorkInChild();
  return measured;
}

/** What the mapping stream's consumer did for a request, for the section's notes. */
function streamNote(stream: StreamConsumerWork): string {
  const calls = Object.entries(stream.calls)
    .map(([command, count]) => `${count} ${command.replace(/Command$/, '')}`)
    .join(' + ');
  return `mapping stream: ${stream.records} record(s), ${stream.delivered} to release-pending${
    stream.delivered > 0
      ? ` (${calls || 'no DynamoDB call'}; ${stream.readUnits} RRU, ${stream.writeUnits} WRU)`
      : ''
  }`;
}

/** Section "sync work" of `npm run bench`: exact counts per request, not timings. */
export const syncWorkBench: BenchModule = {
  id: 'syncwork',
  describe:
    'work per sync request through the local stack: DynamoDB calls and capacity units, log and response bytes',
  async run() {
    const work = await syncWorkOfThisRun();
    const figures: Figure[] = work.flatMap((request) => [
      { name: `5  ${request.kind}: DynamoDB calls`, value: request.dynamoCalls, unit: 'calls' },
      {
        name: `5  ${request.kind}: read / write units`,
        value: request.readUnits + request.writeUnits,
        unit: 'units',
        note: `${request.readUnits} RRU + ${request.writeUnits} WRU`,
      },
      { name: `5  ${request.kind}: log bytes`, value: request.logBytes, unit: 'B' },
    ]);
    return {
      id: 'syncwork',
      title: '5. work per sync request (local stack, deployed log settings; exact counts)',
      figures,
      notes: work.map(
        (request) =>
          `${request.kind} (${request.outcome}, ${request.status}): ${
            Object.entries(request.calls)
              .map(([command, count]) => `${count} ${command.replace(/Command$/, '')}`)
              .join(' + ') || 'no DynamoDB call'
          }; ${request.readUnits} RRU, ${request.writeUnits} WRU; ${request.logLines} log lines, ${request.logBytes} B (EMF ${request.emfBytes} B); answer ${request.responseBytes} B; ${streamNote(request.stream)}`,
      ),
    };
  },
};

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  measureSyncWork().then(
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

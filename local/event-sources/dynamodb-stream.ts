import { randomBytes } from 'node:crypto';
import {
  Agent,
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type Server,
} from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';
import { type AttributeValue, DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import type { DynamoDBRecord, DynamoDBStreamEvent } from 'aws-lambda';
import { type FilterPattern, passesFilters, validateFilterPattern } from '../../src/infra/event-filters.ts';
import { SQS_EVENT_SOURCE_LIMITS } from '../../src/infra/queues.ts';
import type { StreamViewType, TableDefinition } from '../../src/infra/resources.ts';
import { startDynalite } from '../dynamodb.ts';
import { LOCAL_CREDENTIALS } from '../endpoints.ts';
import { close, listen, originOf, readBody } from '../http-util.ts';
import { LOCAL_ACCOUNT_ID } from '../lambda.ts';
import { type LocalEventSource, readBatchResponse, StateSignal, waitUntil } from './common.ts';

/**
 * DynamoDB Streams for the local stack, which dynalite lacks.
 *
 * An HTTP proxy stands in front of dynalite and every local client (the handlers, the CLI, the TTL
 * sweep) talks to it. Requests to tables without a stream pass through untouched. A write to a
 * table whose definition sets `stream` (PutItem, UpdateItem, DeleteItem, BatchWriteItem) is
 * serialised with the other writes to that table, and the proxy reads each item it touches just
 * before and just after it (strongly consistent reads straight from dynalite): if the item changed,
 * it appends a change record shaped like DynamoDB's (INSERT, MODIFY or REMOVE, Keys, NewImage and
 * OldImage as the view type says, a sequence number, the creation time) before the writer gets its
 * answer. A write that changes nothing (the same item put again, a failed condition, a delete of a
 * missing item) makes no record, as in DynamoDB. Deletes by the local TTL sweep carry DynamoDB's
 * service identity (`userIdentity`), as TTL deletions do.
 *
 * `startDynamoDbStreamEventSource` delivers a table's records to a function as Lambda's stream event
 * source does: only those passing its filter patterns (Lambda event filtering), in order (one shard: order holds per key and across keys), in batches of up to
 * `batchSize` gathered for up to `maxBatchingWindowMs`, a failed batch retried (with
 * ReportBatchItemFailures, from the first failed record on), nothing later delivered before it.
 *
 * Differences from AWS: the stream lives in memory (records written while no consumer runs, or not
 * yet delivered at stop, are gone; AWS keeps them 24 h); one shard per table; no
 * bisectBatchOnFunctionError, no on-failure destination (a discarded batch is logged).
 */

/** Requests from a client marked with this header are TTL deletions (see `markAsTtlSweeper`). */
export const TTL_SWEEP_HEADER = 'x-dmp-local-ttl-sweep';

/** The identity DynamoDB puts on the stream records of TTL deletions. */
const TTL_IDENTITY = { type: 'Service', principalId: 'dynamodb.amazonaws.com' } as const;

/** Marks every request of this client as a TTL deletion (the local stack's TTL sweep). */
export function markAsTtlSweeper(client: DynamoDBClient): void {
  client.middlewareStack.add(
    (next) => async (args) => {
      const request = args.request as { headers?: Record<string, string> };
      if (request.headers) request.headers[TTL_SWEEP_HEADER] = '1';
      return next(args);
    },
    { step: 'build', name: 'dmpLocalTtlSweepMarker' },
  );
}

type Item = Record<string, AttributeValue>;

/** The change records of one table, for its consumers. */
export interface TableStream {
  readonly tableName: string;
  readonly streamArn: string;
  readonly viewType: StreamViewType;
  /** Calls `listener` with every later record, in order; returns the unsubscribe. */
  subscribe(listener: (record: DynamoDBRecord) => void): () => void;
  /** Writes to the table under way (their records are not out yet). */
  readonly writesInFlight: number;
}

export interface DynamoDbStreams {
  /** The DynamoDB endpoint every local client uses (the proxy). */
  readonly url: string;
  readonly port: number;
  /** The stream of a table whose definition sets `stream`; throws for any other table. */
  streamOf(tableName: string): TableStream;
  stop(): Promise<void>;
}

export interface DynamoDbStreamsOptions {
  /** dynalite's own endpoint. */
  readonly dynamodbUrl: string;
  /** A client that talks to dynalite directly (not through the proxy): the before/after reads. */
  readonly directClient: DynamoDBClient;
  readonly tables: readonly TableDefinition[];
  readonly region: string;
  /** The proxy's port; 0 (default) picks a free one. */
  readonly port?: number;
}

/** Largest request the proxy reads (DynamoDB's own limit is 16 MB for a BatchWriteItem). */
const MAX_REQUEST_BYTES = 20 * 1024 * 1024;

interface TouchedItem {
  readonly table: StreamedTable;
  readonly key: Item;
}

class StreamedTable implements TableStream {
  readonly tableName: string;
  readonly streamArn: string;
  readonly viewType: StreamViewType;
  writesInFlight = 0;
  private readonly listeners = new Set<(record: DynamoDBRecord) => void>();
  private sequence = 0n;
  /** Writes to this table run one after the other, so before/after reads see only their own change. */
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    readonly definition: TableDefinition,
    private readonly region: string,
  ) {
    this.tableName = definition.localName;
    this.viewType = definition.stream!;
    const label = new Date().toISOString().replace('Z', '');
    this.streamArn = `arn:aws:dynamodb:${region}:${LOCAL_ACCOUNT_ID}:table/${this.tableName}/stream/${label}`;
  }

  subscribe(listener: (record: DynamoDBRecord) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  keyOf(item: Item | undefined): Item | undefined {
    if (!item) return undefined;
    const names = [this.definition.partitionKey.name, this.definition.sortKey?.name].filter(
      (name): name is string => name !== undefined,
    );
    if (!names.every((name) => item[name] !== undefined)) return undefined;
    return Object.fromEntries(names.map((name) => [name, item[name]!]));
  }

  /** Runs `write` after the table's previous writes. */
  serialise<T>(write: () => Promise<T>): Promise<T> {
    this.writesInFlight += 1;
    const result = this.tail.then(write);
    this.tail = result.catch(() => {});
    return result.finally(() => {
      this.writesInFlight -= 1;
    });
  }

  /** Appends a record if the item changed; returns whether it did. */
  record(key: Item, before: Item | undefined, after: Item | undefined, byTtl: boolean): boolean {
    if (canonical(before) === canonical(after)) return false;
    this.sequence += 1n;
    const eventName = !before ? 'INSERT' : !after ? 'REMOVE' : 'MODIFY';
    const withNew = this.viewType === 'NEW_IMAGE' || this.viewType === 'NEW_AND_OLD_IMAGES';
    const withOld = this.viewType === 'OLD_IMAGE' || this.viewType === 'NEW_AND_OLD_IMAGES';
    const images = {
      ...(withNew && after ? { NewImage: after } : {}),
      ...(withOld && before ? { OldImage: before } : {}),
    };
    const record = {
      eventID: randomBytes(16).toString('hex'),
      eventName,
      eventVersion: '1.1',
      eventSource: 'aws:dynamodb',
      awsRegion: this.region,
      dynamodb: {
        ApproximateCreationDateTime: Math.floor(Date.now() / 1000),
        Keys: key,
        ...images,
        SequenceNumber: this.sequence.toString().padStart(21, '0'),
        SizeBytes: Buffer.byteLength(JSON.stringify({ Keys: key, ...images })),
        StreamViewType: this.viewType,
      },
      eventSourceARN: this.streamArn,
      ...(byTtl && eventName === 'REMOVE' ? { userIdentity: TTL_IDENTITY } : {}),
    } as DynamoDBRecord;
    for (const listener of this.listeners) listener(structuredClone(record));
    return true;
  }
}

/** Stable JSON of an item: map keys and set members sorted, so equal items compare equal. */
function canonical(value: unknown): string {
  const normalise = (v: unknown, parentKey?: string): unknown => {
    if (Array.isArray(v)) {
      const items = v.map((element) => normalise(element));
      return parentKey === 'SS' || parentKey === 'NS' || parentKey === 'BS'
        ? items.map((item) => JSON.stringify(item)).sort()
        : items;
    }
    if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
    if (v && typeof v === 'object') {
      return Object.fromEntries(
        Object.keys(v)
          .sort()
          .map((key) => [key, normalise((v as Record<string, unknown>)[key], key)]),
      );
    }
    return v;
  };
  return value === undefined ? '' : JSON.stringify(normalise(value));
}

interface UpstreamResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

export async function startDynamoDbStreams(options: DynamoDbStreamsOptions): Promise<DynamoDbStreams> {
  const streamed = new Map<string, StreamedTable>();
  for (const table of options.tables) {
    if (table.stream) streamed.set(table.localName, new StreamedTable(table, options.region));
  }
  const upstream = new URL(options.dynamodbUrl);
  const agent = new Agent({ keepAlive: true });

  const forward = (method: string, path: string, headers: IncomingHttpHeaders, body: Buffer) =>
    new Promise<UpstreamResponse>((resolve, reject) => {
      const outgoing = httpRequest(
        {
          host: upstream.hostname,
          port: upstream.port,
          method,
          path,
          headers: { ...headers, host: upstream.host },
          agent,
        },
        (incoming) => {
          const chunks: Buffer[] = [];
          incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
          incoming.on('end', () =>
            resolve({
              status: incoming.statusCode ?? 500,
              headers: incoming.headers,
              body: Buffer.concat(chunks),
            }),
          );
          incoming.on('error', reject);
        },
      );
      outgoing.on('error', reject);
      outgoing.end(body);
    });

  const tableNamed = (name: unknown): StreamedTable | undefined =>
    typeof name === 'string'
      ? streamed.get(name.replace(/^arn:aws:dynamodb:[^:]*:[^:]*:table\//, ''))
      : undefined;

  /** The streamed items a write touches, or none (then it is passed through). */
  const touchedBy = (operation: string, body: Record<string, unknown>): TouchedItem[] => {
    const touched: TouchedItem[] = [];
    const add = (table: StreamedTable | undefined, key: Item | undefined) => {
      if (table && key) touched.push({ table, key });
    };
    switch (operation) {
      case 'PutItem': {
        const table = tableNamed(body['TableName']);
        add(table, table?.keyOf(body['Item'] as Item | undefined));
        break;
      }
      case 'UpdateItem':
      case 'DeleteItem': {
        const table = tableNamed(body['TableName']);
        add(table, table?.keyOf(body['Key'] as Item | undefined));
        break;
      }
      case 'BatchWriteItem': {
        const requests = (body['RequestItems'] ?? {}) as Record<string, unknown>;
        for (const [name, writes] of Object.entries(requests)) {
          const table = tableNamed(name);
          if (!table || !Array.isArray(writes)) continue;
          for (const write of writes as { PutRequest?: { Item?: Item }; DeleteRequest?: { Key?: Item } }[]) {
            add(table, table.keyOf(write.PutRequest?.Item ?? write.DeleteRequest?.Key));
          }
        }
        break;
      }
    }
    const seen = new Set<string>();
    return touched.filter(({ table, key }) => {
      const id = `${table.tableName} ${canonical(key)}`;
      if (seen.has(id)) return false;
      seen.add(id);
      return true;
    });
  };

  const read = async ({ table, key }: TouchedItem): Promise<Item | undefined> =>
    (
      await options.directClient.send(
        new GetItemCommand({ TableName: table.tableName, Key: key, ConsistentRead: true }),
      )
    ).Item;

  /** Runs `write` holding the write turn of every table in `tables` (taken in name order). */
  const inTurn = <T>(tables: readonly StreamedTable[], write: () => Promise<T>): Promise<T> => {
    const [first, ...rest] = tables;
    return first ? first.serialise(() => inTurn(rest, write)) : write();
  };

  const handle = async (
    method: string,
    path: string,
    headers: IncomingHttpHeaders,
    body: Buffer,
  ): Promise<UpstreamResponse> => {
    const operation = String(headers['x-amz-target'] ?? '').split('.')[1] ?? '';
    let parsed: Record<string, unknown> | undefined;
    if (['PutItem', 'UpdateItem', 'DeleteItem', 'BatchWriteItem'].includes(operation)) {
      try {
        parsed = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
      } catch {
        // Not JSON: dynalite answers with the error DynamoDB would.
      }
    }
    const touched = parsed ? touchedBy(operation, parsed) : [];
    if (touched.length === 0) return forward(method, path, headers, body);
    const tables = [...new Set(touched.map((item) => item.table))].sort((a, b) =>
      a.tableName.localeCompare(b.tableName),
    );
    const byTtl = headers[TTL_SWEEP_HEADER] === '1';
    return inTurn(tables, async () => {
      const before = await Promise.all(touched.map(read));
      const response = await forward(method, path, headers, body);
      if (response.status === 200) {
        const after = await Promise.all(touched.map(read));
        touched.forEach((item, index) => {
          item.table.record(item.key, before[index], after[index], byTtl);
        });
      }
      return response;
    });
  };

  const server: Server = createServer((request, response) => {
    readBody(request, MAX_REQUEST_BYTES)
      .then((body) => handle(request.method ?? 'POST', request.url ?? '/', request.headers, body))
      .then(
        (upstreamResponse) => {
          const headers = { ...upstreamResponse.headers };
          delete headers['transfer-encoding'];
          delete headers['connection'];
          delete headers['keep-alive'];
          response.writeHead(upstreamResponse.status, {
            ...headers,
            'content-length': String(upstreamResponse.body.length),
          });
          response.end(upstreamResponse.body);
        },
        (error: unknown) => {
          response.writeHead(500, { 'content-type': 'application/x-amz-json-1.0' });
          response.end(
            JSON.stringify({
              __type: 'com.amazonaws.dynamodb.v20120810#InternalServerError',
              message: `local DynamoDB proxy: ${(error as Error).message}`,
            }),
          );
        },
      );
  });
  const port = await listen(server, options.port ?? 0);

  return {
    url: originOf(port),
    port,
    streamOf(tableName) {
      const table = streamed.get(tableName);
      if (!table) throw new Error(`table ${tableName} has no stream (its definition sets no \`stream\`)`);
      return table;
    },
    async stop() {
      await close(server);
      agent.destroy();
    },
  };
}

// ---------------------------------------------------------------------------------------------

export interface DynamoDbStreamEventSourceOptions {
  readonly stream: TableStream;
  /** Normally `LocalFunction.invoke` (local/lambda.ts). */
  readonly invoke: (event: DynamoDBStreamEvent) => Promise<unknown>;
  /** Records per invocation (Lambda: 1-10,000, default 100). */
  readonly batchSize?: number;
  /** How long records are gathered before invoking (Lambda: up to 300 s, default 0). */
  readonly maxBatchingWindowMs?: number;
  /** Retries of a failing batch before it is discarded; -1 (default, as Lambda's) retries forever. */
  readonly maxRetryAttempts?: number;
  /** Pause before the first retry, doubled on each next one up to 5 s (default 100 ms). */
  readonly retryDelayMs?: number;
  /** Where failures and discarded batches are reported (default: nowhere). */
  readonly log?: (line: string) => void;
  /**
   * Lambda event filtering: a record matching none of these patterns is dropped before batching,
   * as Lambda's poller drops it (src/infra/event-filters.ts); none: every record is delivered.
   */
  readonly filters?: readonly FilterPattern[];
}

interface PendingRecord {
  readonly record: DynamoDBRecord;
  readonly bytes: number;
  readonly arrivedAt: number;
}

export function startDynamoDbStreamEventSource(options: DynamoDbStreamEventSourceOptions): LocalEventSource {
  const batchSize = options.batchSize ?? 100;
  const windowMs = options.maxBatchingWindowMs ?? 0;
  const maxRetryAttempts = options.maxRetryAttempts ?? -1;
  const retryDelayMs = options.retryDelayMs ?? 100;
  const log = options.log ?? (() => {});
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000) {
    throw new Error(`stream of ${options.stream.tableName}: batchSize must be 1-10000, not ${batchSize}`);
  }
  if (!(windowMs >= 0 && windowMs <= 300_000)) {
    throw new Error(
      `stream of ${options.stream.tableName}: maxBatchingWindowMs must be 0-300000, not ${windowMs}`,
    );
  }
  const name = options.stream.tableName;
  const signal = new StateSignal();
  const pending: PendingRecord[] = [];
  let invoking = false;
  let stopped = false;
  for (const pattern of options.filters ?? []) validateFilterPattern(pattern);
  const unsubscribe = options.stream.subscribe((record) => {
    if (!passesFilters(options.filters, record)) return;
    pending.push({ record, bytes: Buffer.byteLength(JSON.stringify(record)) + 1, arrivedAt: Date.now() });
    signal.notify();
  });

  /** Records of the next batch, from the head of the stream. */
  const nextBatch = (): DynamoDBRecord[] => {
    const batch: DynamoDBRecord[] = [];
    let bytes = 14;
    for (const { record, bytes: size } of pending) {
      if (batch.length === batchSize) break;
      if (batch.length > 0 && bytes + size > SQS_EVENT_SOURCE_LIMITS.maxBatchPayloadBytes) break;
      batch.push(record);
      bytes += size;
    }
    return batch;
  };

  /** How many records from the head are done after this invocation, or -1 if the batch failed. */
  const invoke = async (batch: DynamoDBRecord[]): Promise<number> => {
    try {
      const result = await options.invoke({ Records: batch });
      const outcome = readBatchResponse(
        result,
        new Set(batch.map((record) => record.dynamodb!.SequenceNumber!)),
      );
      if (outcome.kind === 'success') return batch.length;
      if (outcome.kind === 'failure') {
        log(`stream ${name}: batch of ${batch.length} failed: ${outcome.reason}`);
        return -1;
      }
      // Lambda resumes from the lowest failed sequence number: everything before it is done.
      const firstFailed = batch.findIndex((record) => outcome.failed.has(record.dynamodb!.SequenceNumber!));
      return firstFailed;
    } catch (error) {
      log(
        `stream ${name}: invocation failed, batch of ${batch.length} will be retried: ${(error as Error).message}`,
      );
      return -1;
    }
  };

  const run = async () => {
    let attempts = 0;
    while (!stopped) {
      const head = pending[0];
      if (!head) {
        await signal.next(1000);
        continue;
      }
      const closesAt = head.arrivedAt + windowMs;
      if (pending.length < batchSize && Date.now() < closesAt) {
        await signal.next(closesAt - Date.now());
        continue;
      }
      const batch = nextBatch();
      invoking = true;
      const done = await invoke(batch);
      invoking = false;
      if (done === batch.length) {
        pending.splice(0, batch.length);
        attempts = 0;
      } else {
        if (done > 0) {
          pending.splice(0, done);
          attempts = 0;
        }
        attempts += 1;
        if (maxRetryAttempts >= 0 && attempts > maxRetryAttempts) {
          const discarded = pending.splice(0, batch.length - Math.max(done, 0));
          log(
            `stream ${name}: discarded ${discarded.length} record(s) after ${maxRetryAttempts} retries ` +
              `(sequence numbers ${discarded[0]?.record.dynamodb?.SequenceNumber}-${discarded.at(-1)?.record.dynamodb?.SequenceNumber})`,
          );
          attempts = 0;
        } else if (!stopped) {
          await delay(Math.min(5000, retryDelayMs * 2 ** (attempts - 1)));
        }
      }
      signal.notify();
    }
  };
  const running = run();

  return {
    async stop() {
      stopped = true;
      unsubscribe();
      signal.notify();
      await running;
    },
    whenIdle: () =>
      waitUntil(
        signal,
        () => pending.length === 0 && !invoking && options.stream.writesInFlight === 0,
        () => stopped,
        `stream event source of ${name}`,
      ),
  };
}

// ---------------------------------------------------------------------------------------------

export interface LocalDynamoDbEndpoint {
  /** What every local client uses: the streams proxy when a table is streamed, else dynalite. */
  readonly url: string;
  readonly streams: DynamoDbStreams | undefined;
  stop(): Promise<void>;
}

/**
 * dynalite, fronted by the streams proxy when any of `streamedTables` exists (then `port` is the
 * proxy's, the one clients use); dynalite alone otherwise.
 */
export async function startDynamoDbEndpoint(options: {
  readonly path?: string;
  readonly port?: number;
  readonly region: string;
  readonly streamedTables: readonly TableDefinition[];
}): Promise<LocalDynamoDbEndpoint> {
  const streamed = options.streamedTables.length > 0;
  const dynamo = await startDynalite({
    ...(options.path ? { path: options.path } : {}),
    port: streamed ? 0 : (options.port ?? 0),
  });
  if (!streamed) return { url: dynamo.url, streams: undefined, stop: () => dynamo.stop() };
  const directClient = new DynamoDBClient({
    region: options.region,
    endpoint: dynamo.url,
    credentials: LOCAL_CREDENTIALS,
  });
  let streams: DynamoDbStreams;
  try {
    streams = await startDynamoDbStreams({
      dynamodbUrl: dynamo.url,
      directClient,
      tables: options.streamedTables,
      region: options.region,
      port: options.port ?? 0,
    });
  } catch (error) {
    directClient.destroy();
    await dynamo.stop();
    throw error;
  }
  return {
    url: streams.url,
    streams,
    async stop() {
      await streams.stop();
      directClient.destroy();
      await dynamo.stop();
    },
  };
}

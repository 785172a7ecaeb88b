import {
  BatchWriteItemCommand,
  ConditionalCheckFailedException,
  DeleteItemCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import type { DynamoDBRecord, DynamoDBStreamEvent } from 'aws-lambda';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  ensureTable,
  type LocalDynamoDb,
  startDynalite,
  sweepExpiredItems,
} from '../../../local/dynamodb.ts';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from '../../../local/endpoints.ts';
import type { LocalEventSource } from '../../../local/event-sources/common.ts';
import {
  type DynamoDbStreamEventSourceOptions,
  type DynamoDbStreams,
  markAsTtlSweeper,
  startDynamoDbStreamEventSource,
  startDynamoDbStreams,
} from '../../../local/event-sources/dynamodb-stream.ts';
import type { TableDefinition } from '../../../src/infra/resources.ts';

/** The DynamoDB Streams emulation: the proxy's change records, and their delivery to a function. */

const STREAMED: TableDefinition = {
  id: 'StreamedTable',
  localName: 'test-streamed',
  partitionKey: { name: 'pk', type: 'S' },
  sortKey: { name: 'sk', type: 'S' },
  timeToLiveAttribute: 'expiresAt',
  envVar: 'STREAMED_TABLE_NAME',
  stream: 'NEW_AND_OLD_IMAGES',
};
const KEYS_ONLY: TableDefinition = {
  id: 'KeysOnlyTable',
  localName: 'test-keys-only',
  partitionKey: { name: 'id', type: 'S' },
  envVar: 'KEYS_ONLY_TABLE_NAME',
  stream: 'KEYS_ONLY',
};
const PLAIN: TableDefinition = {
  id: 'PlainTable',
  localName: 'test-plain',
  partitionKey: { name: 'id', type: 'S' },
  envVar: 'PLAIN_TABLE_NAME',
};

let dynalite: LocalDynamoDb;
let direct: DynamoDBClient;
let streams: DynamoDbStreams;
let client: DynamoDBClient;
const sources: LocalEventSource[] = [];
const unsubscribes: (() => void)[] = [];

beforeAll(async () => {
  dynalite = await startDynalite({});
  direct = new DynamoDBClient({
    region: LOCAL_REGION,
    endpoint: dynalite.url,
    credentials: LOCAL_CREDENTIALS,
  });
  streams = await startDynamoDbStreams({
    dynamodbUrl: dynalite.url,
    directClient: direct,
    tables: [STREAMED, KEYS_ONLY, PLAIN],
    region: LOCAL_REGION,
  });
  client = new DynamoDBClient({
    region: LOCAL_REGION,
    endpoint: streams.url,
    credentials: LOCAL_CREDENTIALS,
  });
  for (const table of [STREAMED, KEYS_ONLY, PLAIN]) await ensureTable(client, table);
});

afterEach(async () => {
  for (const unsubscribe of unsubscribes.splice(0)) unsubscribe();
  await Promise.all(sources.splice(0).map((source) => source.stop()));
});

afterAll(async () => {
  client?.destroy();
  direct?.destroy();
  await streams?.stop();
  await dynalite?.stop();
});

let keyCounter = 0;
const freshPk = () => `user#${++keyCounter}`;

/** Every record the table's stream emits from now on. */
function capture(table: TableDefinition): DynamoDBRecord[] {
  const records: DynamoDBRecord[] = [];
  unsubscribes.push(streams.streamOf(table.localName).subscribe((record) => records.push(record)));
  return records;
}

function consume(
  table: TableDefinition,
  invoke: (event: DynamoDBStreamEvent) => Promise<unknown>,
  options: Partial<DynamoDbStreamEventSourceOptions> = {},
): LocalEventSource {
  const source = startDynamoDbStreamEventSource({
    stream: streams.streamOf(table.localName),
    invoke,
    retryDelayMs: 1,
    ...options,
  });
  sources.push(source);
  return source;
}

const put = (pk: string, sk: string, extra: Record<string, unknown> = {}) =>
  client.send(
    new PutItemCommand({
      TableName: STREAMED.localName,
      Item: { pk: { S: pk }, sk: { S: sk }, ...(extra as Record<string, never>) },
    }),
  );

const seqOf = (record: DynamoDBRecord) => record.dynamodb!.SequenceNumber!;

describe('DynamoDB stream records', () => {
  it('records an insert, a modification and a removal with keys, images and the stream identity', async () => {
    const records = capture(STREAMED);
    const pk = freshPk();
    const before = Math.floor(Date.now() / 1000);
    await put(pk, 'platform#1', { partnerUserId: { S: 'abc' } });
    await client.send(
      new UpdateItemCommand({
        TableName: STREAMED.localName,
        Key: { pk: { S: pk }, sk: { S: 'platform#1' } },
        UpdateExpression: 'SET partnerUserId = :p',
        ExpressionAttributeValues: { ':p': { S: 'def' } },
      }),
    );
    await client.send(
      new DeleteItemCommand({
        TableName: STREAMED.localName,
        Key: { pk: { S: pk }, sk: { S: 'platform#1' } },
      }),
    );
    const keys = { pk: { S: pk }, sk: { S: 'platform#1' } };
    expect(records.map((r) => r.eventName)).toEqual(['INSERT', 'MODIFY', 'REMOVE']);
    const [insert, modify, remove] = records as [DynamoDBRecord, DynamoDBRecord, DynamoDBRecord];
    const streamArn = streams.streamOf(STREAMED.localName).streamArn;
    expect(streamArn).toMatch(
      /^arn:aws:dynamodb:eu-west-1:000000000000:table\/test-streamed\/stream\/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}$/,
    );
    expect(insert).toMatchObject({
      eventID: expect.stringMatching(/^[0-9a-f]{32}$/),
      eventVersion: '1.1',
      eventSource: 'aws:dynamodb',
      awsRegion: LOCAL_REGION,
      eventSourceARN: streamArn,
      dynamodb: {
        Keys: keys,
        NewImage: { ...keys, partnerUserId: { S: 'abc' } },
        StreamViewType: 'NEW_AND_OLD_IMAGES',
        SizeBytes: expect.any(Number),
      },
    });
    expect(insert.dynamodb!.OldImage).toBeUndefined();
    expect(insert.dynamodb!.ApproximateCreationDateTime).toBeGreaterThanOrEqual(before);
    expect(modify.dynamodb).toMatchObject({
      OldImage: { ...keys, partnerUserId: { S: 'abc' } },
      NewImage: { ...keys, partnerUserId: { S: 'def' } },
    });
    expect(remove.dynamodb).toMatchObject({ Keys: keys, OldImage: { ...keys, partnerUserId: { S: 'def' } } });
    expect(remove.dynamodb!.NewImage).toBeUndefined();
    expect(remove.userIdentity).toBeUndefined();
    expect([seqOf(insert), seqOf(modify), seqOf(remove)]).toEqual(
      [seqOf(insert), seqOf(modify), seqOf(remove)].sort(),
    );
    expect(new Set(records.map(seqOf)).size).toBe(3);
  });

  it('records nothing for a write that changes nothing', async () => {
    const pk = freshPk();
    const key = { pk: { S: pk }, sk: { S: 's' } };
    await put(pk, 's', { n: { N: '1' }, tags: { SS: ['a', 'b'] } });
    const records = capture(STREAMED);
    await put(pk, 's', { tags: { SS: ['b', 'a'] }, n: { N: '1' } });
    await client.send(
      new UpdateItemCommand({
        TableName: STREAMED.localName,
        Key: key,
        UpdateExpression: 'SET n = :one',
        ExpressionAttributeValues: { ':one': { N: '1' } },
      }),
    );
    await expect(
      client.send(
        new UpdateItemCommand({
          TableName: STREAMED.localName,
          Key: key,
          UpdateExpression: 'SET n = :two',
          ConditionExpression: 'n = :zero',
          ExpressionAttributeValues: { ':two': { N: '2' }, ':zero': { N: '0' } },
        }),
      ),
    ).rejects.toBeInstanceOf(ConditionalCheckFailedException);
    await client.send(
      new DeleteItemCommand({ TableName: STREAMED.localName, Key: { pk: { S: freshPk() }, sk: { S: 's' } } }),
    );
    expect(records).toEqual([]);
    // The proxy passes the writer's answers through unchanged.
    const { Item } = await client.send(new GetItemCommand({ TableName: STREAMED.localName, Key: key }));
    expect(Item?.['n']).toEqual({ N: '1' });
  });

  it('records each item of a BatchWriteItem', async () => {
    const records = capture(STREAMED);
    const [a, b] = [freshPk(), freshPk()];
    await put(b, 's');
    await client.send(
      new BatchWriteItemCommand({
        RequestItems: {
          [STREAMED.localName]: [
            { PutRequest: { Item: { pk: { S: a }, sk: { S: 's' } } } },
            { DeleteRequest: { Key: { pk: { S: b }, sk: { S: 's' } } } },
          ],
          [PLAIN.localName]: [{ PutRequest: { Item: { id: { S: 'x' } } } }],
        },
      }),
    );
    expect(records.map((r) => [r.eventName, r.dynamodb!.Keys!['pk']!.S])).toEqual([
      ['INSERT', b],
      ['INSERT', a],
      ['REMOVE', b],
    ]);
  });

  it('carries only the keys for a KEYS_ONLY stream', async () => {
    const records = capture(KEYS_ONLY);
    await client.send(
      new PutItemCommand({ TableName: KEYS_ONLY.localName, Item: { id: { S: 'k1' }, v: { S: 'x' } } }),
    );
    expect(records).toHaveLength(1);
    expect(records[0]!.dynamodb).toMatchObject({ Keys: { id: { S: 'k1' } }, StreamViewType: 'KEYS_ONLY' });
    expect(records[0]!.dynamodb!.NewImage).toBeUndefined();
    expect(records[0]!.dynamodb!.OldImage).toBeUndefined();
  });

  it('has no stream for a table whose definition sets none, and passes its requests through', async () => {
    expect(() => streams.streamOf(PLAIN.localName)).toThrow(/has no stream/);
    await client.send(new PutItemCommand({ TableName: PLAIN.localName, Item: { id: { S: 'p1' } } }));
    const { Item } = await client.send(
      new GetItemCommand({ TableName: PLAIN.localName, Key: { id: { S: 'p1' } } }),
    );
    expect(Item).toEqual({ id: { S: 'p1' } });
  });

  it('keeps concurrent writes to one item in order: each old image is the previous new image', async () => {
    const records = capture(STREAMED);
    const key = { pk: { S: freshPk() }, sk: { S: 'counter' } };
    await Promise.all(
      Array.from({ length: 40 }, () =>
        client.send(
          new UpdateItemCommand({
            TableName: STREAMED.localName,
            Key: key,
            UpdateExpression: 'ADD n :one',
            ExpressionAttributeValues: { ':one': { N: '1' } },
          }),
        ),
      ),
    );
    expect(records.map((r) => r.dynamodb!.NewImage!['n']!.N)).toEqual(
      Array.from({ length: 40 }, (_, i) => String(i + 1)),
    );
    expect(records.map((r) => r.dynamodb!.OldImage?.['n']?.N)).toEqual([
      undefined,
      ...Array.from({ length: 39 }, (_, i) => String(i + 1)),
    ]);
  });

  it("records TTL deletions with DynamoDB's service identity", async () => {
    const pk = freshPk();
    await put(pk, 'expired', { expiresAt: { N: '1000' } });
    const records = capture(STREAMED);
    const sweeper = new DynamoDBClient({
      region: LOCAL_REGION,
      endpoint: streams.url,
      credentials: LOCAL_CREDENTIALS,
    });
    markAsTtlSweeper(sweeper);
    try {
      expect(await sweepExpiredItems(sweeper, STREAMED)).toBeGreaterThanOrEqual(1);
    } finally {
      sweeper.destroy();
    }
    const removal = records.find((r) => r.dynamodb!.Keys!['pk']!.S === pk);
    expect(removal).toMatchObject({
      eventName: 'REMOVE',
      userIdentity: { type: 'Service', principalId: 'dynamodb.amazonaws.com' },
    });
  });
});

describe('DynamoDB stream event source', () => {
  it('closes a batch at batchSize, however long the window', async () => {
    const batches: string[][] = [];
    const source = consume(
      STREAMED,
      async (event) => {
        batches.push(event.Records.map((r) => r.dynamodb!.Keys!['sk']!.S!));
      },
      { batchSize: 3, maxBatchingWindowMs: 300_000 },
    );
    const pk = freshPk();
    for (const sk of ['a', 'b', 'c', 'd', 'e', 'f']) await put(pk, sk);
    await source.whenIdle();
    expect(batches).toEqual([
      ['a', 'b', 'c'],
      ['d', 'e', 'f'],
    ]);
  });

  it('delivers only the records that pass its filter patterns, as Lambda event filtering does', async () => {
    const delivered: string[] = [];
    const source = consume(
      STREAMED,
      async (event) => {
        delivered.push(...event.Records.map((r) => `${r.eventName} ${r.dynamodb!.Keys!['sk']!.S}`));
      },
      {
        filters: [{ eventName: ['INSERT'], dynamodb: { NewImage: { kind: { S: ['wanted'] } } } }],
        batchSize: 2,
      },
    );
    const pk = freshPk();
    await put(pk, 'a', { kind: { S: 'wanted' } });
    await put(pk, 'b', { kind: { S: 'other' } });
    await put(pk, 'c');
    await put(pk, 'a', { kind: { S: 'wanted' }, more: { N: '1' } });
    await client.send(
      new DeleteItemCommand({ TableName: STREAMED.localName, Key: { pk: { S: pk }, sk: { S: 'c' } } }),
    );
    await put(pk, 'd', { kind: { S: 'wanted' } });
    await source.whenIdle();
    expect(delivered).toEqual(['INSERT a', 'INSERT d']);
    expect(() =>
      consume(STREAMED, async () => {}, { filters: [{ eventName: [{ suffix: 'T' } as never] }] }),
    ).toThrow(/not a condition this project uses/);
  });

  it('invokes with what it has when the window closes', async () => {
    const batches: number[] = [];
    const source = consume(
      STREAMED,
      async (event) => {
        batches.push(event.Records.length);
      },
      { batchSize: 100, maxBatchingWindowMs: 50 },
    );
    await put(freshPk(), 'only');
    await source.whenIdle();
    expect(batches).toEqual([1]);
  });

  it('delivers a Lambda DynamoDBStreamEvent, in sequence order', async () => {
    const delivered: DynamoDBRecord[] = [];
    const source = consume(STREAMED, async (event) => {
      delivered.push(...event.Records);
    });
    const records = capture(STREAMED);
    const pk = freshPk();
    for (let i = 0; i < 20; i += 1) await put(pk, `s${i % 3}`, { i: { N: String(i) } });
    await source.whenIdle();
    expect(delivered).toEqual(records);
  });

  it('retries a batch whose invocation failed, and delivers nothing later before it', async () => {
    const calls: string[][] = [];
    const source = consume(
      STREAMED,
      async (event) => {
        calls.push(event.Records.map((r) => r.dynamodb!.Keys!['sk']!.S!));
        if (calls.length <= 2) throw new Error('handler crashed');
      },
      { batchSize: 2, maxBatchingWindowMs: 300_000 },
    );
    const pk = freshPk();
    for (const sk of ['a', 'b', 'c', 'd']) await put(pk, sk);
    await source.whenIdle();
    expect(calls).toEqual([
      ['a', 'b'],
      ['a', 'b'],
      ['a', 'b'],
      ['c', 'd'],
    ]);
  });

  it('resumes from the first reported failure (ReportBatchItemFailures)', async () => {
    const calls: string[][] = [];
    const source = consume(
      STREAMED,
      async (event) => {
        calls.push(event.Records.map((r) => r.dynamodb!.Keys!['sk']!.S!));
        const b = event.Records.find((r) => r.dynamodb!.Keys!['sk']!.S === 'b');
        return calls.length === 1 && b ? { batchItemFailures: [{ itemIdentifier: seqOf(b) }] } : {};
      },
      { batchSize: 3, maxBatchingWindowMs: 300_000 },
    );
    const pk = freshPk();
    for (const sk of ['a', 'b', 'c', 'd']) await put(pk, sk);
    await source.whenIdle();
    expect(calls[0]).toEqual(['a', 'b', 'c']);
    // 'a' is done; the retry starts at 'b' and may take later records.
    expect(calls.slice(1).flat()).toEqual(['b', 'c', 'd']);
  });

  it('fails the whole batch on an unknown item identifier', async () => {
    const calls: number[] = [];
    const source = consume(STREAMED, async (event) => {
      calls.push(event.Records.length);
      return calls.length === 1 ? { batchItemFailures: [{ itemIdentifier: '999' }] } : null;
    });
    const writer = client.send(
      new BatchWriteItemCommand({
        RequestItems: {
          [STREAMED.localName]: [
            { PutRequest: { Item: { pk: { S: freshPk() }, sk: { S: 'x' } } } },
            { PutRequest: { Item: { pk: { S: freshPk() }, sk: { S: 'y' } } } },
          ],
        },
      }),
    );
    await writer;
    await source.whenIdle();
    expect(calls).toEqual([2, 2]);
  });

  it('discards a batch after maxRetryAttempts retries and goes on', async () => {
    const calls: string[][] = [];
    const lines: string[] = [];
    const source = consume(
      STREAMED,
      async (event) => {
        const sks = event.Records.map((r) => r.dynamodb!.Keys!['sk']!.S!);
        calls.push(sks);
        if (sks.includes('poison')) throw new Error('always fails');
      },
      { batchSize: 1, maxRetryAttempts: 2, log: (line) => lines.push(line) },
    );
    const pk = freshPk();
    await put(pk, 'poison');
    await put(pk, 'after');
    await source.whenIdle();
    expect(calls).toEqual([['poison'], ['poison'], ['poison'], ['after']]);
    expect(lines.some((line) => /discarded 1 record\(s\) after 2 retries/.test(line))).toBe(true);
  });
});

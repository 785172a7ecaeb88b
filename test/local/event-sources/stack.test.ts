import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDBClient, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { GetQueueAttributesCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { DynamoDBStreamEvent, SQSEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FunctionLoader } from '../../../local/lambda.ts';
import { type LocalStack, startLocalStack } from '../../../local/stack.ts';
import type { EventSourceDeclarations } from '../../../src/infra/event-sources.ts';
import { FUNCTIONS, MAPPING_TABLE, SEGMENT_TABLE } from '../../../src/infra/resources.ts';

/**
 * The local stack runs whatever src/infra/event-sources.ts declares: a queue consumer, a table
 * stream consumer and a schedule, each invoking a function as its AWS event source would.
 */

const STREAMED_SEGMENTS = { ...SEGMENT_TABLE, stream: 'NEW_AND_OLD_IMAGES' } as const;
const QUEUE = { id: 'TestQueue', localName: 'dmp-local-test-events', envVar: 'TEST_EVENTS_QUEUE_URL' };
const TIMEOUT = FUNCTIONS.userSync.timeoutSeconds;
const QUEUE_SETTINGS = {
  batchSize: 10,
  maxBatchingWindowSeconds: 0,
  maxConcurrency: 2,
  maxReceiveCount: 3,
  functionTimeoutSeconds: TIMEOUT,
};

const DECLARATIONS: EventSourceDeclarations[] = [
  (config) => [
    {
      kind: 'queue',
      function: 'userSync',
      queue: QUEUE,
      settings: QUEUE_SETTINGS,
    },
    {
      kind: 'tableStream',
      function: 'userSync',
      table: STREAMED_SEGMENTS,
      batchSize: 10,
      maxBatchingWindowSeconds: 0,
    },
    {
      kind: 'schedule',
      function: 'userSync',
      name: 'nightly',
      everyMinutes: 60,
      input: { environment: config.name },
    },
  ],
];

const invocations: unknown[] = [];
const recorder: FunctionLoader = async () => async (event: unknown) => {
  invocations.push(event);
  return null;
};

describe('event sources in the local stack', () => {
  let stack: LocalStack;

  beforeAll(async () => {
    stack = await startLocalStack({
      quiet: true,
      ttlSweepIntervalMs: 0,
      scheduleEveryMs: 0,
      loadFunction: recorder,
      eventSources: DECLARATIONS,
    });
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('creates the declared queue with its DLQ, redrive and visibility, and gives its URL to the functions', async () => {
    const url = stack.queueUrls[QUEUE.localName]!;
    expect(url).toMatch(/\/dmp-local-test-events$/);
    expect(process.env[QUEUE.envVar]).toBe(url);
    const sqs = new SQSClient({});
    try {
      const { Attributes } = await sqs.send(
        new GetQueueAttributesCommand({
          QueueUrl: url,
          AttributeNames: ['VisibilityTimeout', 'RedrivePolicy'],
        }),
      );
      expect(Attributes?.['VisibilityTimeout']).toBe(String(6 * TIMEOUT));
      expect(JSON.parse(Attributes!['RedrivePolicy']!)).toEqual({
        deadLetterTargetArn: expect.stringMatching(/:dmp-local-test-events-dlq$/),
        maxReceiveCount: 3,
      });
    } finally {
      sqs.destroy();
    }
    expect(stack.summary).toEqual(
      expect.arrayContaining([
        expect.stringMatching(
          /^queue dmp-local-test-events \(created\): visibility 30 s, DLQ dmp-local-test-events-dlq after 3 receives$/,
        ),
        expect.stringMatching(
          /^sqs dmp-local-test-events -> userSync \(lambdas\/user-sync\/handler.ts\): batch 10/,
        ),
        expect.stringMatching(/^stream dmp-local-segments \(NEW_AND_OLD_IMAGES\) -> userSync/),
        expect.stringMatching(/^schedule nightly -> userSync .*: on request only$/),
      ]),
    );
  });

  it('invokes the queue consumer with the messages a producer sends through the SDK', async () => {
    invocations.length = 0;
    const sqs = new SQSClient({});
    try {
      await sqs.send(
        new SendMessageCommand({ QueueUrl: stack.queueUrls[QUEUE.localName]!, MessageBody: 'hello' }),
      );
    } finally {
      sqs.destroy();
    }
    await stack.whenIdle();
    expect(invocations).toHaveLength(1);
    expect((invocations[0] as SQSEvent).Records.map((record) => record.body)).toEqual(['hello']);
  });

  it('invokes the stream consumer with the change a handler-style client makes', async () => {
    invocations.length = 0;
    const dynamodb = new DynamoDBClient({});
    try {
      await dynamodb.send(
        new PutItemCommand({
          TableName: SEGMENT_TABLE.localName,
          Item: { pk: { S: 'platform#1' }, sk: { S: 'audience#a' }, segmentId: { N: '12345' } },
        }),
      );
    } finally {
      dynamodb.destroy();
    }
    await stack.whenIdle();
    expect(invocations).toHaveLength(1);
    const [record] = (invocations[0] as DynamoDBStreamEvent).Records;
    expect(record).toMatchObject({
      eventName: 'INSERT',
      dynamodb: {
        Keys: { pk: { S: 'platform#1' }, sk: { S: 'audience#a' } },
        StreamViewType: 'NEW_AND_OLD_IMAGES',
      },
    });
  });

  it('runs a schedule on request with its input', async () => {
    invocations.length = 0;
    await expect(stack.runSchedule('nightly')).resolves.toBeNull();
    expect(invocations).toEqual([{ environment: 'local' }]);
    await expect(stack.runSchedule('weekly')).rejects.toThrow(/no schedule named weekly/);
  });
});

describe('event sources over persisted data', () => {
  it('keeps the queues of a previous run and brings their attributes up to date', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'dmp-event-sources-'));
    const options = {
      quiet: true,
      ttlSweepIntervalMs: 0,
      scheduleEveryMs: 0,
      loadFunction: recorder,
      dataDir,
    };
    try {
      const first = await startLocalStack({ ...options, eventSources: DECLARATIONS });
      await first.stop();
      const again = await startLocalStack({
        ...options,
        eventSources: [
          () => [
            {
              kind: 'queue',
              function: 'userSync',
              queue: QUEUE,
              settings: { ...QUEUE_SETTINGS, maxReceiveCount: 7 },
            },
          ],
        ],
      });
      try {
        expect(again.summary).toContain(
          'queue dmp-local-test-events (existing): visibility 30 s, DLQ dmp-local-test-events-dlq after 7 receives',
        );
        const sqs = new SQSClient({});
        try {
          const { Attributes } = await sqs.send(
            new GetQueueAttributesCommand({
              QueueUrl: again.queueUrls[QUEUE.localName]!,
              AttributeNames: ['RedrivePolicy'],
            }),
          );
          expect(JSON.parse(Attributes!['RedrivePolicy']!).maxReceiveCount).toBe(7);
        } finally {
          sqs.destroy();
        }
      } finally {
        await again.stop();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('TTL deletions on a streamed table', () => {
  it('reach the stream consumer as REMOVE records with the TTL service identity', async () => {
    const stack = await startLocalStack({
      quiet: true,
      ttlSweepIntervalMs: 0,
      loadFunction: recorder,
      eventSources: [
        () => [
          {
            kind: 'tableStream',
            function: 'userSync',
            table: { ...MAPPING_TABLE, stream: 'NEW_AND_OLD_IMAGES' },
            batchSize: 10,
            maxBatchingWindowSeconds: 0,
          },
        ],
      ],
    });
    try {
      const dynamodb = new DynamoDBClient({});
      try {
        await dynamodb.send(
          new PutItemCommand({
            TableName: MAPPING_TABLE.localName,
            Item: { pk: { S: 'user#ttl' }, sk: { S: 'platform#1' }, expiresAt: { N: '1000' } },
          }),
        );
      } finally {
        dynamodb.destroy();
      }
      await stack.whenIdle();
      invocations.length = 0;
      expect(await stack.sweepExpiredItems()).toBe(1);
      await stack.whenIdle();
      expect(invocations).toHaveLength(1);
      expect((invocations[0] as DynamoDBStreamEvent).Records[0]).toMatchObject({
        eventName: 'REMOVE',
        userIdentity: { type: 'Service', principalId: 'dynamodb.amazonaws.com' },
        dynamodb: { Keys: { pk: { S: 'user#ttl' }, sk: { S: 'platform#1' } } },
      });
    } finally {
      await stack.stop();
    }
  });
});

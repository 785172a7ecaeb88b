import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import type { SQSEvent, SQSRecord } from 'aws-lambda';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from '../../../local/endpoints.ts';
import { type LocalEventSource, startSqsEventSource } from '../../../local/event-sources/sqs.ts';
import { type LocalFauxqs, resolveLocalhostSubdomains, startLocalFauxqs } from '../../../local/fauxqs.ts';
import { type QueueConsumerSettings, visibilityTimeoutSeconds } from '../../../src/infra/queues.ts';

/**
 * The SQS event-source emulation against the real fauxqs: what Lambda would hand the function,
 * and what stays on the queue after each kind of answer.
 */

const SETTINGS: QueueConsumerSettings = {
  batchSize: 10,
  maxBatchingWindowSeconds: 0,
  maxConcurrency: 2,
  maxReceiveCount: 5,
  functionTimeoutSeconds: 1,
};

let fauxqs: LocalFauxqs;
let sqs: SQSClient;
let undoDns: () => void;
const sources: LocalEventSource[] = [];
let queueCounter = 0;

beforeAll(async () => {
  fauxqs = await startLocalFauxqs({ region: LOCAL_REGION });
  undoDns = resolveLocalhostSubdomains();
  sqs = new SQSClient({ region: LOCAL_REGION, endpoint: fauxqs.url, credentials: LOCAL_CREDENTIALS });
});

afterEach(async () => {
  await Promise.all(sources.splice(0).map((source) => source.stop()));
});

afterAll(async () => {
  sqs?.destroy();
  undoDns?.();
  await fauxqs?.stop();
});

interface TestQueue {
  readonly url: string;
  readonly arn: string;
  readonly dlqUrl: string;
}

/** A fresh queue with a DLQ, redriven after `maxReceiveCount` receives. */
async function createQueue(settings: QueueConsumerSettings, visibilitySeconds: number): Promise<TestQueue> {
  queueCounter += 1;
  const name = `test-${queueCounter}`;
  const dlq = await sqs.send(new CreateQueueCommand({ QueueName: `${name}-dlq` }));
  const dlqArn = await arnOf(dlq.QueueUrl!);
  const queue = await sqs.send(
    new CreateQueueCommand({
      QueueName: name,
      Attributes: {
        VisibilityTimeout: String(visibilitySeconds),
        RedrivePolicy: JSON.stringify({
          deadLetterTargetArn: dlqArn,
          maxReceiveCount: settings.maxReceiveCount,
        }),
      },
    }),
  );
  return { url: queue.QueueUrl!, arn: await arnOf(queue.QueueUrl!), dlqUrl: dlq.QueueUrl! };
}

async function arnOf(url: string): Promise<string> {
  const { Attributes } = await sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }),
  );
  return Attributes!['QueueArn']!;
}

async function send(queue: TestQueue, bodies: readonly string[]): Promise<void> {
  for (let start = 0; start < bodies.length; start += 10) {
    const { Failed = [] } = await sqs.send(
      new SendMessageBatchCommand({
        QueueUrl: queue.url,
        Entries: bodies
          .slice(start, start + 10)
          .map((body, index) => ({ Id: String(index), MessageBody: body })),
      }),
    );
    expect(Failed).toEqual([]);
  }
}

function start(
  queue: TestQueue,
  settings: QueueConsumerSettings,
  invoke: (event: SQSEvent) => Promise<unknown>,
): LocalEventSource {
  const source = startSqsEventSource({ sqs, queueUrl: queue.url, queueArn: queue.arn, settings, invoke });
  sources.push(source);
  return source;
}

async function drainDlq(queue: TestQueue): Promise<string[]> {
  const bodies: string[] = [];
  for (;;) {
    const { Messages = [] } = await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: queue.dlqUrl, MaxNumberOfMessages: 10, VisibilityTimeout: 60 }),
    );
    if (Messages.length === 0) return bodies.sort();
    bodies.push(...Messages.map((message) => message.Body!));
  }
}

async function queueCounts(queue: TestQueue): Promise<{ visible: number; inFlight: number }> {
  const { Attributes = {} } = await sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: queue.url,
      AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
    }),
  );
  return {
    visible: Number(Attributes['ApproximateNumberOfMessages']),
    inFlight: Number(Attributes['ApproximateNumberOfMessagesNotVisible']),
  };
}

const bodiesOf = (event: SQSEvent) => event.Records.map((record) => record.body);
const range = (n: number, prefix = 'm') => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

describe('SQS event source', () => {
  it('hands the function records shaped like Lambda', async () => {
    const queue = await createQueue(SETTINGS, 30);
    const sentAt = Date.now();
    const { MessageId, MD5OfMessageBody } = await sqs.send(
      new SendMessageCommand({
        QueueUrl: queue.url,
        MessageBody: '{"hello":"world"}',
        MessageAttributes: {
          kind: { DataType: 'String', StringValue: 'audience' },
          count: { DataType: 'Number', StringValue: '3' },
          blob: { DataType: 'Binary', BinaryValue: Buffer.from([1, 2, 3]) },
        },
      }),
    );
    const events: SQSEvent[] = [];
    const source = start(queue, SETTINGS, async (event) => {
      events.push(event);
    });
    await source.whenIdle();
    expect(events).toHaveLength(1);
    const [record] = events[0]!.Records as [SQSRecord];
    expect(record).toMatchObject({
      messageId: MessageId,
      body: '{"hello":"world"}',
      md5OfBody: MD5OfMessageBody,
      eventSource: 'aws:sqs',
      eventSourceARN: queue.arn,
      awsRegion: LOCAL_REGION,
      messageAttributes: {
        kind: { stringValue: 'audience', stringListValues: [], binaryListValues: [], dataType: 'String' },
        count: { stringValue: '3', stringListValues: [], binaryListValues: [], dataType: 'Number' },
        blob: { binaryValue: 'AQID', stringListValues: [], binaryListValues: [], dataType: 'Binary' },
      },
    });
    expect(record.receiptHandle).toEqual(expect.any(String));
    expect(record.md5OfMessageAttributes).toEqual(expect.stringMatching(/^[0-9a-f]{32}$/));
    expect(record.attributes.ApproximateReceiveCount).toBe('1');
    expect(Number(record.attributes.SentTimestamp)).toBeGreaterThanOrEqual(sentAt - 1000);
    expect(Number(record.attributes.ApproximateFirstReceiveTimestamp)).toBeGreaterThanOrEqual(
      Number(record.attributes.SentTimestamp),
    );
    expect(record.attributes.SenderId).toEqual(expect.any(String));
    expect(await queueCounts(queue)).toEqual({ visible: 0, inFlight: 0 });
  });

  it('stops a batch at batchSize', async () => {
    const settings = { ...SETTINGS, batchSize: 5, maxBatchingWindowSeconds: 300 };
    const queue = await createQueue(settings, visibilityTimeoutSeconds(settings));
    await send(queue, range(10));
    const batches: string[][] = [];
    const source = start(queue, settings, async (event) => {
      batches.push(bodiesOf(event));
    });
    // With a 300 s window, only the batch size can have closed these batches.
    await source.whenIdle();
    expect(batches.map((batch) => batch.length)).toEqual([5, 5]);
    expect(batches.flat().sort()).toEqual(range(10).sort());
  });

  it('gathers records from several receives until the batching window closes', async () => {
    const settings = { ...SETTINGS, batchSize: 100, maxBatchingWindowSeconds: 1 };
    const queue = await createQueue(settings, visibilityTimeoutSeconds(settings));
    await send(queue, range(25));
    const batches: string[][] = [];
    const source = start(queue, settings, async (event) => {
      batches.push(bodiesOf(event));
    });
    await source.whenIdle();
    // One receive returns at most 10 messages: one batch of 25 took three receives.
    expect(batches.map((batch) => batch.length)).toEqual([25]);
  });

  it('stops a batch before the event passes 6 MB', async () => {
    const settings = { ...SETTINGS, batchSize: 100, maxBatchingWindowSeconds: 1 };
    const queue = await createQueue(settings, visibilityTimeoutSeconds(settings));
    const big = (i: number) => `${i}`.padEnd(250_000, 'x');
    // SendMessageBatch takes 1 MiB in all: one message per call.
    for (let i = 0; i < 26; i += 1)
      await sqs.send(new SendMessageCommand({ QueueUrl: queue.url, MessageBody: big(i) }));
    const sizes: number[] = [];
    const counts: number[] = [];
    const source = start(queue, settings, async (event) => {
      sizes.push(Buffer.byteLength(JSON.stringify(event)));
      counts.push(event.Records.length);
    });
    await source.whenIdle();
    expect(counts.reduce((a, b) => a + b, 0)).toBe(26);
    expect(counts.length).toBe(2);
    for (const size of sizes) expect(size).toBeLessThanOrEqual(6 * 1024 * 1024);
  });

  it('deletes the records that succeeded and redelivers only the reported failures', async () => {
    const queue = await createQueue(SETTINGS, 1);
    await send(queue, ['ok1', 'bad', 'ok2']);
    const seen: { body: string; receiveCount: string }[] = [];
    const source = start(queue, SETTINGS, async (event) => {
      seen.push(
        ...event.Records.map((r) => ({ body: r.body, receiveCount: r.attributes.ApproximateReceiveCount })),
      );
      const failed = event.Records.filter(
        (r) => r.body === 'bad' && r.attributes.ApproximateReceiveCount === '1',
      );
      return { batchItemFailures: failed.map((r) => ({ itemIdentifier: r.messageId })) };
    });
    await source.whenIdle();
    expect(seen).toEqual([
      { body: 'ok1', receiveCount: '1' },
      { body: 'bad', receiveCount: '1' },
      { body: 'ok2', receiveCount: '1' },
      { body: 'bad', receiveCount: '2' },
    ]);
    expect(await drainDlq(queue)).toEqual([]);
  });

  it.each([
    ['an error', async () => Promise.reject(new Error('crash mid-batch'))],
    ['an unknown item identifier', async () => ({ batchItemFailures: [{ itemIdentifier: 'not-in-batch' }] })],
    ['an empty item identifier', async () => ({ batchItemFailures: [{ itemIdentifier: '' }] })],
    ['a misspelt key', async () => ({ batchItemFailures: [{ itemidentifier: 'x' }] })],
    ['a response that is not a batch response', async () => 'done'],
  ])('leaves the whole batch after %s', async (_, firstAnswer) => {
    const queue = await createQueue(SETTINGS, 1);
    await send(queue, ['a', 'b', 'c']);
    const batches: { bodies: string[]; receiveCounts: string[] }[] = [];
    const source = start(queue, SETTINGS, async (event) => {
      batches.push({
        bodies: bodiesOf(event).sort(),
        receiveCounts: event.Records.map((r) => r.attributes.ApproximateReceiveCount),
      });
      if (batches.length === 1) return firstAnswer();
      return { batchItemFailures: [] };
    });
    await source.whenIdle();
    expect(batches).toEqual([
      { bodies: ['a', 'b', 'c'], receiveCounts: ['1', '1', '1'] },
      { bodies: ['a', 'b', 'c'], receiveCounts: ['2', '2', '2'] },
    ]);
  });

  it('moves a record that keeps failing to the DLQ after maxReceiveCount receives', async () => {
    const settings = { ...SETTINGS, maxReceiveCount: 2 };
    const queue = await createQueue(settings, 1);
    await send(queue, ['good', 'poison']);
    const attempts = new Map<string, number>();
    const source = start(queue, settings, async (event) => {
      for (const r of event.Records) attempts.set(r.body, (attempts.get(r.body) ?? 0) + 1);
      return {
        batchItemFailures: event.Records.filter((r) => r.body === 'poison').map((r) => ({
          itemIdentifier: r.messageId,
        })),
      };
    });
    await source.whenIdle();
    expect(Object.fromEntries(attempts)).toEqual({ good: 1, poison: 2 });
    expect(await drainDlq(queue)).toEqual(['poison']);
    expect(await queueCounts(queue)).toEqual({ visible: 0, inFlight: 0 });
  });

  it('keeps at most maxConcurrency invocations in flight', async () => {
    const settings = { ...SETTINGS, batchSize: 1, maxConcurrency: 2 };
    const queue = await createQueue(
      settings,
      visibilityTimeoutSeconds({ ...settings, functionTimeoutSeconds: 30 }),
    );
    await send(queue, range(6));
    let inFlight = 0;
    let maxInFlight = 0;
    const handled: string[] = [];
    const gates: (() => void)[] = [];
    let onGate: () => void = () => {};
    const source = start(queue, settings, async (event) => {
      inFlight += 1;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise<void>((release) => {
        gates.push(release);
        onGate();
      });
      handled.push(...bodiesOf(event));
      inFlight -= 1;
    });
    const gateCount = (n: number) =>
      new Promise<void>((resolve) => {
        onGate = () => gates.length >= n && resolve();
        onGate();
      });
    // Two invocations held open: the other four messages are still waiting on the queue, unread.
    await gateCount(2);
    expect(await queueCounts(queue)).toEqual({ visible: 4, inFlight: 2 });
    // Release one at a time: each release lets exactly one more invocation start.
    for (let released = 0; released < 6; released += 1) {
      gates[released]!();
      if (released + 2 < 6) await gateCount(released + 3);
    }
    await source.whenIdle();
    expect(maxInFlight).toBe(2);
    expect(handled.sort()).toEqual(range(6).sort());
  });

  it('whenIdle rejects once the source is stopped', async () => {
    const queue = await createQueue(SETTINGS, 30);
    await send(queue, ['x']);
    const source = startSqsEventSource({
      sqs,
      queueUrl: queue.url,
      queueArn: queue.arn,
      settings: SETTINGS,
      invoke: () => new Promise(() => {}),
    });
    const idle = source.whenIdle();
    // stop() would wait for the never-settling invocation; the test only needs the rejection.
    void source.stop();
    await expect(idle).rejects.toThrow(/stopped/);
  });

  it('refuses settings AWS would refuse', async () => {
    const queue = await createQueue(SETTINGS, 30);
    expect(() =>
      startSqsEventSource({
        sqs,
        queueUrl: queue.url,
        queueArn: queue.arn,
        settings: { ...SETTINGS, batchSize: 100, maxBatchingWindowSeconds: 0 },
        invoke: async () => null,
      }),
    ).toThrow(/batchSize of 100 .* needs maxBatchingWindowSeconds/);
  });
});

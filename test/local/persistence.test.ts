import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDBClient, GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import {
  ChangeMessageVisibilityBatchCommand,
  CreateQueueCommand,
  GetQueueUrlCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { afterAll, describe, expect, it } from 'vitest';
import { startLocalFauxqs } from '../../local/fauxqs.ts';
import type { LocalStack } from '../../local/stack.ts';
import { MAPPING_TABLE } from '../../src/infra/resources.ts';
import { startEchoStack } from '../support/local-stack.ts';

describe('local stack persistence (dataDir)', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'dmp-local-stack-'));
  let stack: LocalStack | undefined;

  const start = () => startEchoStack({ dataDir });

  afterAll(async () => {
    await stack?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('keeps table items and queued messages across a restart, and creates tables only once', async () => {
    const key = { pk: { S: 'user#persisted-user' }, sk: { S: 'platform#99999' } };
    stack = await start();
    expect(stack.summary).toContain(
      `table ${MAPPING_TABLE.localName} (created): TTL emulated: expired items swept by the local stack`,
    );
    let dynamodb = new DynamoDBClient({});
    let sqs = new SQSClient({});
    const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: 'persisted' }));
    await sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: 'survives' }));
    await dynamodb.send(
      new PutItemCommand({
        TableName: process.env[MAPPING_TABLE.envVar],
        Item: { ...key, partnerUserId: { S: 'abcdef123' } },
      }),
    );
    dynamodb.destroy();
    sqs.destroy();
    await stack.stop();
    stack = undefined;
    expect(process.env[MAPPING_TABLE.envVar]).toBeUndefined();

    stack = await start();
    expect(stack.summary.some((line) => line.startsWith(`table ${MAPPING_TABLE.localName} (existing)`))).toBe(
      true,
    );
    dynamodb = new DynamoDBClient({});
    sqs = new SQSClient({});
    try {
      const { Item } = await dynamodb.send(
        new GetItemCommand({ TableName: process.env[MAPPING_TABLE.envVar], Key: key, ConsistentRead: true }),
      );
      expect(Item?.['partnerUserId']).toEqual({ S: 'abcdef123' });
      // The stand-ins listen on new ports after the restart: ask for the queue URL again.
      const { QueueUrl: restartedUrl } = await sqs.send(new GetQueueUrlCommand({ QueueName: 'persisted' }));
      expect(restartedUrl).toBe(`${process.env['AWS_ENDPOINT_URL_SQS']}/000000000000/persisted`);
      const { Messages } = await sqs.send(
        new ReceiveMessageCommand({ QueueUrl: restartedUrl, WaitTimeSeconds: 1 }),
      );
      expect(Messages?.map((message) => message.Body)).toEqual(['survives']);
    } finally {
      dynamodb.destroy();
      sqs.destroy();
    }
  });

  it("keeps the reference partner's segments beside the segment table, so ids are never given twice", async () => {
    await stack?.stop();
    const create = async (running: LocalStack, title: string) => {
      const answer = await fetch(`${running.partnerUrl}/v1/segment?title=${encodeURIComponent(title)}`, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from('foo:bar').toString('base64')}` },
      });
      return ((await answer.json()) as { segment_id: number }).segment_id;
    };
    stack = await start();
    const before = await create(stack, 'Before the restart');
    await stack.stop();
    stack = await start();
    expect(stack.partner.segments().map((segment) => segment.title)).toContain('Before the restart');
    expect(await create(stack, 'After the restart')).toBe(before + 1);
  });

  it('keeps nothing without a dataDir', async () => {
    await stack?.stop();
    stack = await startEchoStack();
    const dynamodb = new DynamoDBClient({});
    try {
      const { Item } = await dynamodb.send(
        new GetItemCommand({
          TableName: MAPPING_TABLE.localName,
          Key: { pk: { S: 'user#persisted-user' }, sk: { S: 'platform#99999' } },
        }),
      );
      expect(Item).toBeUndefined();
    } finally {
      dynamodb.destroy();
    }
  });
});

describe('fauxqs with persisted data', () => {
  it('makes a message visible again at once when its visibility is set to 0, and keeps its receive count', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'dmp-fauxqs-'));
    const fauxqs = await startLocalFauxqs({ region: 'eu-west-1', dataDir });
    const sqs = new SQSClient({
      endpoint: fauxqs.url,
      region: 'eu-west-1',
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    });
    try {
      const { QueueUrl } = await sqs.send(
        new CreateQueueCommand({ QueueName: 'handed-back', Attributes: { VisibilityTimeout: '300' } }),
      );
      await sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: 'not started' }));
      const first = await sqs.send(new ReceiveMessageCommand({ QueueUrl, WaitTimeSeconds: 1 }));
      const handle = first.Messages?.[0]?.ReceiptHandle as string;
      const changed = await sqs.send(
        new ChangeMessageVisibilityBatchCommand({
          QueueUrl,
          Entries: [{ Id: '0', ReceiptHandle: handle, VisibilityTimeout: 0 }],
        }),
      );
      expect(changed.Failed ?? []).toEqual([]);
      const again = await sqs.send(
        new ReceiveMessageCommand({ QueueUrl, WaitTimeSeconds: 1, MessageSystemAttributeNames: ['All'] }),
      );
      expect(again.Messages?.map((message) => message.Body)).toEqual(['not started']);
      expect(again.Messages?.[0]?.Attributes?.ApproximateReceiveCount).toBe('2');
    } finally {
      sqs.destroy();
      await fauxqs.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

import {
  ChangeMessageVisibilityBatchCommand,
  GetQueueUrlCommand,
  SendMessageBatchCommand,
  type SendMessageBatchRequestEntry,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { backoffDelayMs } from '../connectors/retry.ts';
import type { DeliveryQueues } from './route-service.ts';

/**
 * SQS as population uses it: queue URLs looked up once per container by name, SendMessageBatch
 * in calls of at most 10 entries and 1 MiB (entries SQS refuses are sent again, with backoff), and
 * a record's next try delayed by setting its visibility timeout.
 */

const MAX_ENTRIES = 10;
const MAX_BATCH_BYTES = 1024 * 1024;
const MAX_ROUNDS = 6;

export class SqsQueues implements DeliveryQueues {
  private readonly urls = new Map<string, Promise<string>>();

  constructor(
    private readonly sqs: SQSClient,
    private readonly deliveryQueueName: (platformId: number) => string,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  ) {}

  url(name: string): Promise<string> {
    let url = this.urls.get(name);
    if (!url) {
      url = this.sqs.send(new GetQueueUrlCommand({ QueueName: name })).then((out) => {
        if (!out.QueueUrl) throw new Error(`queue ${name} has no URL`);
        return out.QueueUrl;
      });
      url.catch(() => this.urls.delete(name));
      this.urls.set(name, url);
    }
    return url;
  }

  async send(platformId: number, bodies: readonly string[]): Promise<void> {
    await this.sendTo(this.deliveryQueueName(platformId), bodies);
  }

  async sendTo(queueName: string, bodies: readonly string[]): Promise<void> {
    if (bodies.length === 0) return;
    const queueUrl = await this.url(queueName);
    const calls: SendMessageBatchRequestEntry[][] = [];
    let current: SendMessageBatchRequestEntry[] = [];
    let bytes = 0;
    bodies.forEach((body, index) => {
      const size = Buffer.byteLength(body, 'utf8');
      if (current.length >= MAX_ENTRIES || (current.length > 0 && bytes + size > MAX_BATCH_BYTES)) {
        calls.push(current);
        current = [];
        bytes = 0;
      }
      current.push({ Id: String(index), MessageBody: body });
      bytes += size;
    });
    if (current.length > 0) calls.push(current);
    await Promise.all(
      calls.map(async (entries) => {
        let pending = entries;
        for (let round = 1; pending.length > 0; round++) {
          if (round > MAX_ROUNDS)
            throw new Error(`SQS refused ${pending.length} messages ${MAX_ROUNDS} times`);
          if (round > 1)
            await this.sleep(backoffDelayMs(round - 1, { baseDelayMs: 50, maxDelayMs: 2000 }, Math.random));
          const out = await this.sqs.send(
            new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: pending }),
          );
          const failed = new Set((out.Failed ?? []).map((failure) => failure.Id));
          const refused = (out.Failed ?? []).find((failure) => failure.SenderFault);
          if (refused) throw new Error(`SQS refused a message: ${refused.Code} ${refused.Message ?? ''}`);
          pending = pending.filter((entry) => failed.has(entry.Id));
        }
      }),
    );
  }

  /** Makes records visible again only after their delay (seconds per receipt handle). */
  async delay(
    queueName: string,
    delays: readonly { receiptHandle: string; seconds: number }[],
  ): Promise<void> {
    if (delays.length === 0) return;
    const queueUrl = await this.url(queueName);
    for (let index = 0; index < delays.length; index += MAX_ENTRIES) {
      await this.sqs.send(
        new ChangeMessageVisibilityBatchCommand({
          QueueUrl: queueUrl,
          Entries: delays.slice(index, index + MAX_ENTRIES).map((entry, position) => ({
            Id: String(index + position),
            ReceiptHandle: entry.receiptHandle,
            VisibilityTimeout: entry.seconds,
          })),
        }),
      );
    }
  }
}

/** The queue name of an SQS record's `eventSourceARN` (`arn:aws:sqs:region:account:name`). */
export function queueNameOf(eventSourceArn: string): string {
  return eventSourceArn.split(':').pop() ?? eventSourceArn;
}

import {
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { SqsQueues } from './sqs-queues.ts';

/**
 * Dead-letter queues of the population queues, for operators (`dmp dlq`). A queue's DLQ is
 * `<queue>-dlq` (lib/constructs/queue-consumer.ts, the local event sources).
 *
 * Redrive moves messages back with ReceiveMessage, SendMessageBatch and DeleteMessageBatch at a
 * bounded rate, both locally and in AWS: fauxqs has no StartMessageMoveTask, and one code path
 * is what the tests exercise. A message is deleted from the DLQ only after the send succeeded, so
 * a crash sends it twice at most (the deliver and route steps recognise a repeat), never zero times.
 */

export const dlqNameOf = (queueName: string) => `${queueName}-dlq`;

export interface DlqSummary {
  readonly queue: string;
  readonly dlq: string;
  readonly messages: number;
  /** Age of the oldest message among those peeked at (up to 10), seconds; undefined when empty. */
  readonly oldestAgeSeconds?: number | undefined;
}

export async function dlqSummary(
  sqs: SQSClient,
  queues: Pick<SqsQueues, 'url'>,
  queueName: string,
  nowMs = Date.now(),
): Promise<DlqSummary> {
  const dlq = dlqNameOf(queueName);
  const url = await queues.url(dlq);
  const attributes = await sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: url,
      AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
    }),
  );
  const visible = Number(attributes.Attributes?.ApproximateNumberOfMessages ?? 0);
  const hidden = Number(attributes.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0);
  let oldestAgeSeconds: number | undefined;
  if (visible > 0) {
    // A peek: received and made visible again at once (VisibilityTimeout 0).
    const peeked = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: url,
        MaxNumberOfMessages: 10,
        VisibilityTimeout: 0,
        MessageSystemAttributeNames: ['SentTimestamp'],
      }),
    );
    const sent = (peeked.Messages ?? [])
      .map((message) => Number(message.Attributes?.SentTimestamp))
      .filter(Number.isFinite);
    if (sent.length > 0) oldestAgeSeconds = Math.max(0, Math.round((nowMs - Math.min(...sent)) / 1000));
  }
  return { queue: queueName, dlq, messages: visible + hidden, oldestAgeSeconds };
}

export interface RedriveOptions {
  /** Messages per second at most. */
  readonly ratePerSecond: number;
  /** Stop after this many (the DLQ's depth when the redrive started). */
  readonly limit: number;
  readonly onProgress?: (moved: number) => void;
  readonly now?: () => number;
  readonly sleep?: (ms: number) => Promise<void>;
}

/** Moves up to `limit` messages from the queue's DLQ back to the queue; returns how many moved. */
export async function redrive(
  sqs: SQSClient,
  queues: Pick<SqsQueues, 'url' | 'sendTo'>,
  queueName: string,
  options: RedriveOptions,
): Promise<number> {
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const dlqUrl = await queues.url(dlqNameOf(queueName));
  const started = now();
  let moved = 0;
  while (moved < options.limit) {
    const received = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: dlqUrl,
        MaxNumberOfMessages: Math.min(
          10,
          options.limit - moved,
          Math.max(1, Math.floor(options.ratePerSecond)),
        ),
        VisibilityTimeout: 60,
      }),
    );
    const messages = received.Messages ?? [];
    if (messages.length === 0) break;
    await queues.sendTo(
      queueName,
      messages.map((message) => message.Body ?? ''),
    );
    await sqs.send(
      new DeleteMessageBatchCommand({
        QueueUrl: dlqUrl,
        Entries: messages.map((message, index) => ({
          Id: String(index),
          ReceiptHandle: message.ReceiptHandle ?? '',
        })),
      }),
    );
    moved += messages.length;
    options.onProgress?.(moved);
    // Paced: never ahead of ratePerSecond since the start.
    const dueMs = started + (moved / options.ratePerSecond) * 1000;
    if (dueMs > now() && moved < options.limit) await sleep(dueMs - now());
  }
  return moved;
}

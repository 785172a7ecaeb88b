import { setTimeout as delay } from 'node:timers/promises';
import {
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  type Message,
  type MessageAttributeValue,
  ReceiveMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { SQSEvent, SQSMessageAttribute, SQSRecord } from 'aws-lambda';
import {
  type QueueConsumerSettings,
  SQS_EVENT_SOURCE_LIMITS,
  validateQueueConsumerSettings,
} from '../../src/infra/queues.ts';
import { type LocalEventSource, readBatchResponse, StateSignal, waitUntil } from './common.ts';

export type { LocalEventSource } from './common.ts';

/**
 * Lambda's SQS event source, emulated against fauxqs (or any SQS endpoint) for the local stack:
 *
 * - One poller gathers a batch whenever an invocation slot is free (at most `maxConcurrency`
 *   invocations in flight): it long-polls for a first record, then keeps receiving until the batch
 *   holds `batchSize` records, the batching window (from the first record) closes, or the event
 *   would pass 6 MB (the record that does not fit opens the next batch, as Lambda's does).
 * - Records are shaped as Lambda's (`SQSEvent`), with every system and message attribute.
 * - ReportBatchItemFailures is on (the CDK construct always sets it): the records the function
 *   reports in `batchItemFailures` stay on the queue, the others are deleted; an error, a timeout
 *   or an unreadable response (an unknown id, an empty one) leaves the whole batch. Whatever is
 *   left reappears when the queue's visibility timeout passes; after the RedrivePolicy's
 *   `maxReceiveCount` receives, SQS (fauxqs) moves it to the dead-letter queue on the next receive.
 *
 * Differences from AWS: one poller instead of Lambda's scaling fleet (batches fill one at a time),
 * and long polls last at most 1 s so `stop()` is prompt.
 */

export interface SqsEventSourceOptions {
  readonly sqs: SQSClient;
  readonly queueUrl: string;
  readonly queueArn: string;
  readonly settings: QueueConsumerSettings;
  /** Normally `LocalFunction.invoke` (local/lambda.ts), which enforces the function timeout. */
  readonly invoke: (event: SQSEvent) => Promise<unknown>;
  /** Where failed invocations and unreadable responses are reported (default: nowhere). */
  readonly log?: (line: string) => void;
}

/** Longest long poll: short enough for a prompt stop, long enough not to spin. */
const POLL_SECONDS = 1;
/** Between two short polls at the end of a batching window. */
const SHORT_POLL_PAUSE_MS = 10;
/** The `{"Records":[` ... `]}` around the records. */
const EVENT_ENVELOPE_BYTES = 14;

interface GatheredRecord {
  readonly record: SQSRecord;
  readonly bytes: number;
}

export function startSqsEventSource(options: SqsEventSourceOptions): LocalEventSource {
  const settings = validateQueueConsumerSettings(options.settings, options.queueArn);
  const { sqs, queueUrl, queueArn } = options;
  const log = options.log ?? (() => {});
  const awsRegion = queueArn.split(':')[3] ?? '';
  const name = queueArn.split(':').pop() ?? queueArn;
  const signal = new StateSignal();
  const dispatches = new Set<Promise<void>>();
  /** Records received and not yet handed to an invocation (the gathering batch, the carry-over). */
  let held = 0;
  let carry: GatheredRecord[] = [];
  let stopped = false;

  const toRecord = (message: Message): GatheredRecord => {
    const attributes = message.Attributes ?? {};
    const record: SQSRecord = {
      messageId: message.MessageId!,
      receiptHandle: message.ReceiptHandle!,
      body: message.Body ?? '',
      attributes: {
        ...attributes,
        ApproximateReceiveCount: attributes['ApproximateReceiveCount'] ?? '1',
        SentTimestamp: attributes['SentTimestamp'] ?? '',
        SenderId: attributes['SenderId'] ?? '',
        ApproximateFirstReceiveTimestamp: attributes['ApproximateFirstReceiveTimestamp'] ?? '',
      },
      messageAttributes: Object.fromEntries(
        Object.entries(message.MessageAttributes ?? {}).map(([key, value]) => [key, toAttribute(value)]),
      ),
      md5OfBody: message.MD5OfBody ?? '',
      ...(message.MD5OfMessageAttributes ? { md5OfMessageAttributes: message.MD5OfMessageAttributes } : {}),
      eventSource: 'aws:sqs',
      eventSourceARN: queueArn,
      awsRegion,
    };
    return { record, bytes: Buffer.byteLength(JSON.stringify(record)) + 1 };
  };

  const receive = async (max: number, waitSeconds: number): Promise<GatheredRecord[]> => {
    const { Messages = [] } = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: max,
        WaitTimeSeconds: waitSeconds,
        MessageSystemAttributeNames: ['All'],
        MessageAttributeNames: ['All'],
      }),
    );
    held += Messages.length;
    return Messages.map(toRecord);
  };

  /** One batch, or none if stopped before a first record came. */
  const gather = async (): Promise<GatheredRecord[]> => {
    const batch: GatheredRecord[] = [];
    let bytes = EVENT_ENVELOPE_BYTES;
    let full = false;
    const add = (records: GatheredRecord[]) => {
      for (const record of records) {
        if (full || bytes + record.bytes > SQS_EVENT_SOURCE_LIMITS.maxBatchPayloadBytes) {
          full = true;
          carry.push(record);
        } else {
          batch.push(record);
          bytes += record.bytes;
        }
      }
    };
    const carried = carry;
    carry = [];
    add(carried);
    while (batch.length === 0 && !stopped) add(await receive(Math.min(10, settings.batchSize), POLL_SECONDS));
    const windowEnd = Date.now() + settings.maxBatchingWindowSeconds * 1000;
    while (!full && !stopped && batch.length < settings.batchSize) {
      const remainingMs = windowEnd - Date.now();
      if (remainingMs <= 0) break;
      const wait = Math.min(POLL_SECONDS, Math.floor(remainingMs / 1000));
      let received: GatheredRecord[];
      try {
        received = await receive(Math.min(10, settings.batchSize - batch.length), wait);
      } catch (error) {
        log(`sqs ${name}: receive failed: ${(error as Error).message}`);
        break;
      }
      add(received);
      if (received.length === 0 && wait === 0) await delay(Math.min(remainingMs, SHORT_POLL_PAUSE_MS));
    }
    return batch;
  };

  const settle = async (batch: readonly GatheredRecord[]): Promise<void> => {
    const records = batch.map((gathered) => gathered.record);
    let keep: ReadonlySet<string>;
    try {
      const result = await options.invoke({ Records: records });
      const outcome = readBatchResponse(result, new Set(records.map((record) => record.messageId)));
      if (outcome.kind === 'failure')
        log(`sqs ${name}: whole batch of ${records.length} failed: ${outcome.reason}`);
      keep =
        outcome.kind === 'success'
          ? new Set()
          : outcome.kind === 'partial'
            ? outcome.failed
            : new Set(records.map((record) => record.messageId));
    } catch (error) {
      log(
        `sqs ${name}: invocation failed, batch of ${records.length} left on the queue: ${(error as Error).message}`,
      );
      keep = new Set(records.map((record) => record.messageId));
    }
    const done = records.filter((record) => !keep.has(record.messageId));
    for (let start = 0; start < done.length; start += 10) {
      const entries = done.slice(start, start + 10).map((record, index) => ({
        Id: String(index),
        ReceiptHandle: record.receiptHandle,
      }));
      try {
        const { Failed = [] } = await sqs.send(
          new DeleteMessageBatchCommand({ QueueUrl: queueUrl, Entries: entries }),
        );
        for (const failure of Failed)
          log(`sqs ${name}: delete failed: ${failure.Code} ${failure.Message ?? ''}`);
      } catch (error) {
        log(`sqs ${name}: delete failed: ${(error as Error).message}`);
      }
    }
  };

  const poll = async () => {
    while (!stopped) {
      if (dispatches.size >= settings.maxConcurrency) {
        await Promise.race(dispatches);
        continue;
      }
      let batch: GatheredRecord[];
      try {
        batch = await gather();
      } catch (error) {
        if (stopped) break;
        log(`sqs ${name}: receive failed: ${(error as Error).message}`);
        await delay(250);
        continue;
      }
      if (batch.length === 0) continue;
      const dispatch = settle(batch).finally(() => {
        held -= batch.length;
        dispatches.delete(dispatch);
        signal.notify();
      });
      dispatches.add(dispatch);
    }
  };
  const polling = poll();

  const queueIsEmpty = async (): Promise<boolean> => {
    if (held > 0 || dispatches.size > 0) return false;
    const { Attributes = {} } = await sqs.send(
      new GetQueueAttributesCommand({
        QueueUrl: queueUrl,
        AttributeNames: [
          'ApproximateNumberOfMessages',
          'ApproximateNumberOfMessagesNotVisible',
          'ApproximateNumberOfMessagesDelayed',
        ],
      }),
    );
    // Counted after the reply: a receive may have started and ended meanwhile.
    return (
      held === 0 && dispatches.size === 0 && Object.values(Attributes).every((count) => Number(count) === 0)
    );
  };

  return {
    async stop() {
      stopped = true;
      signal.notify();
      await polling;
      await Promise.allSettled([...dispatches]);
    },
    whenIdle: () => waitUntil(signal, queueIsEmpty, () => stopped, `sqs event source ${name}`),
  };
}

function toAttribute(value: MessageAttributeValue): SQSMessageAttribute {
  return {
    ...(value.StringValue !== undefined ? { stringValue: value.StringValue } : {}),
    ...(value.BinaryValue !== undefined
      ? { binaryValue: Buffer.from(value.BinaryValue).toString('base64') }
      : {}),
    stringListValues: value.StringListValues ?? [],
    binaryListValues: (value.BinaryListValues ?? []).map((item) => Buffer.from(item).toString('base64')),
    dataType: value.DataType ?? 'String',
  };
}

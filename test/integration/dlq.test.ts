import { GetQueueUrlCommand, SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from '../../local/endpoints.ts';
import { packDeliveryMessages } from '../../src/population/membership.ts';
import {
  audienceEvent,
  BATCH_PLATFORM,
  deliveryQueueName,
  dmpAgainst,
  partnerIdOf,
  segmentOf,
  sync,
  usePopulationStack,
  users,
} from './population-support.ts';

/**
 * `dmp dlq list|redrive` against fauxqs: dead-lettered delivery messages are counted, moved back
 * at a bounded rate, and then delivered by the real deliver handler.
 */

const harness = usePopulationStack();

describe('dmp dlq', () => {
  it('lists a platform DLQ with its depth and oldest message, and redrives it into delivery', async () => {
    const people = users('dlq', 25);
    await sync(harness, BATCH_PLATFORM, people);
    await harness.send(audienceEvent(people.slice(0, 1), { audience: 'aud-dlq' }));
    await harness.idle();
    const segment = await segmentOf(harness, BATCH_PLATFORM, 'aud-dlq');
    // 25 dead-lettered delivery messages of one user each, as the DLQ would hold them.
    const bodies = people.flatMap((dmpUserId) =>
      packDeliveryMessages(
        BATCH_PLATFORM,
        [
          {
            platformId: BATCH_PLATFORM,
            segmentId: segment,
            audienceId: 'aud-dlq',
            dmpUserId,
            partnerUserId: partnerIdOf(dmpUserId),
            op: 'add',
            ts: Date.now(),
          },
        ],
        1,
      ),
    );
    const sqs = new SQSClient({
      endpoint: harness.stack.sqsEndpoint,
      region: LOCAL_REGION,
      credentials: LOCAL_CREDENTIALS,
    });
    try {
      const dlqName = `${deliveryQueueName('local', BATCH_PLATFORM)}-dlq`;
      const { QueueUrl } = await sqs.send(new GetQueueUrlCommand({ QueueName: dlqName }));
      for (let index = 0; index < bodies.length; index += 10) {
        await sqs.send(
          new SendMessageBatchCommand({
            QueueUrl,
            Entries: bodies.slice(index, index + 10).map((body, i) => ({ Id: String(i), MessageBody: body })),
          }),
        );
      }
    } finally {
      sqs.destroy();
    }

    const listed = JSON.parse((await dmpAgainst(harness, ['dlq', 'list', '--json'])).stdout);
    expect(listed.queues).toContainEqual(
      expect.objectContaining({ dlq: `${deliveryQueueName('local', BATCH_PLATFORM)}-dlq`, messages: 25 }),
    );
    const entry = listed.queues.find((q: { dlq: string }) => q.dlq.endsWith(`${BATCH_PLATFORM}-dlq`));
    expect(entry.oldestAgeSeconds).toBeGreaterThanOrEqual(0);
    expect(listed.queues).toContainEqual(
      expect.objectContaining({ dlq: 'dmp-local-audience-events-dlq', messages: 0 }),
    );

    const refused = await dmpAgainst(harness, [
      'dlq',
      'redrive',
      '--platform',
      String(BATCH_PLATFORM),
      '--rate',
      '0',
    ]);
    expect(refused.stderr).toContain('--rate must be');

    const redriven = await dmpAgainst(harness, [
      'dlq',
      'redrive',
      '--platform',
      String(BATCH_PLATFORM),
      '--rate',
      '1000',
      '--json',
    ]);
    expect(JSON.parse(redriven.stdout)).toMatchObject({ moved: 25 });
    await harness.idle();
    expect(new Set(harness.stack.partner.members(segment))).toEqual(new Set(people.map(partnerIdOf)));
    const after = JSON.parse(
      (await dmpAgainst(harness, ['dlq', 'list', '--platform', String(BATCH_PLATFORM), '--json'])).stdout,
    );
    expect(after.queues).toMatchObject([{ messages: 0 }]);
  });
});

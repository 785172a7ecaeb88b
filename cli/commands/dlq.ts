import { audienceQueueName, deliveryPlatforms, deliveryQueueName } from '../../src/infra/population.ts';
import { CliContext, findConnectedPlatform, parsePlatformId } from '../context.ts';
import { progressBar, renderTable } from '../format.ts';
import { type Command, UsageError } from '../framework.ts';
import { TARGET_OPTIONS, targetFlags } from '../target.ts';

/**
 * `dmp dlq list|redrive`: the population queues' dead-letter queues (src/population/dlq.ts). The
 * audience-events queue is `--platform events`.
 */

const TARGET_HELP = '  --env <name>       a deployed environment (default: the local stack)';

function queueOf(context: CliContext, platform: string): string {
  if (platform === 'events') return audienceQueueName(context.environment);
  const platformId = parsePlatformId(platform);
  findConnectedPlatform(context.fileConfig(), platformId);
  return deliveryQueueName(context.environment, platformId);
}

async function sqsOf(context: CliContext) {
  const sqs = await context.sqsClient();
  const [{ SqsQueues }, dlq] = await Promise.all([
    import('../../src/population/sqs-queues.ts'),
    import('../../src/population/dlq.ts'),
  ]);
  const queues = new SqsQueues(sqs, (platformId) => deliveryQueueName(context.environment, platformId));
  return { sqs, queues, dlq };
}

export const dlqListCommand: Command = {
  name: 'dlq list',
  summary: 'dead-letter queues of the audience events and of each platform: depth, oldest message',
  usage: '[--platform N|events] [--json] [--env <name>]',
  help: ['  --platform N|events  one queue (default: all)', TARGET_HELP].join('\n'),
  options: { ...TARGET_OPTIONS, platform: { type: 'string' } },
  async run({ values, json, io }) {
    const context = CliContext.open(targetFlags(values), io.env);
    try {
      const platform = typeof values['platform'] === 'string' ? values['platform'] : undefined;
      const names =
        platform !== undefined
          ? [queueOf(context, platform)]
          : [
              audienceQueueName(context.environment),
              ...deliveryPlatforms(context.fileConfig().platforms).map((p) =>
                deliveryQueueName(context.environment, p.id),
              ),
            ];
      const { sqs, queues, dlq } = await sqsOf(context);
      const rows = [];
      for (const name of names) rows.push(await dlq.dlqSummary(sqs, queues, name));
      if (json) io.stdout(JSON.stringify({ environment: context.environment, queues: rows }));
      else
        io.stdout(
          renderTable(
            ['dead-letter queue', 'messages', 'oldest (s)'],
            rows.map((row) => [
              row.dlq,
              String(row.messages),
              row.oldestAgeSeconds === undefined ? '-' : String(row.oldestAgeSeconds),
            ]),
          ),
        );
    } finally {
      context.close();
    }
    return undefined;
  },
};

export const dlqRedriveCommand: Command = {
  name: 'dlq redrive',
  summary: "moves a queue's dead-letter messages back to it at a bounded rate",
  usage: '--platform N|events [--rate <messages per second>] [--json] [--env <name>]',
  help: [
    '  --platform N|events  the queue whose DLQ is redriven',
    '  --rate r             messages per second at most (default 10)',
    TARGET_HELP,
  ].join('\n'),
  options: { ...TARGET_OPTIONS, platform: { type: 'string' }, rate: { type: 'string' } },
  async run({ values, json, io }) {
    if (typeof values['platform'] !== 'string') throw new UsageError('--platform is required');
    const rateText = typeof values['rate'] === 'string' ? values['rate'] : '10';
    const rate = Number(rateText);
    if (!/^\d+(\.\d+)?$/.test(rateText) || rate <= 0 || rate > 3000)
      throw new UsageError(`--rate must be a number of messages per second in (0, 3000], got '${rateText}'`);
    const context = CliContext.open(targetFlags(values), io.env);
    try {
      const queue = queueOf(context, values['platform']);
      const { sqs, queues, dlq } = await sqsOf(context);
      const { messages } = await dlq.dlqSummary(sqs, queues, queue);
      const showProgress = !json && messages >= 10 && process.stderr.isTTY;
      const moved = await dlq.redrive(sqs, queues, queue, {
        ratePerSecond: rate,
        limit: messages,
        onProgress: (done) => {
          if (showProgress) process.stderr.write(progressBar(done, messages, 'messages'));
        },
      });
      if (showProgress) process.stderr.write('\n');
      if (json) io.stdout(JSON.stringify({ queue, dlq: dlq.dlqNameOf(queue), moved }));
      else io.stdout(`moved ${moved} message(s) from ${dlq.dlqNameOf(queue)} back to ${queue}`);
    } finally {
      context.close();
    }
    return undefined;
  },
};

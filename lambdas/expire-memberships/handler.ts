import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { Context, ScheduledEvent } from 'aws-lambda';
import { expiringPlatforms } from '../../src/infra/population.ts';
import { createLogger } from '../../src/observability/powertools.ts';
import { sweepExpired } from '../../src/population/expiry.ts';
import { populationRuntime, workDeadlineMs } from '../../src/population/runtime.ts';

// Every minute (EventBridge Scheduler): removals of the memberships that expired, for partners
// that take removal calls but no lifetime (src/population/expiry.ts).
const logger = createLogger('expire-memberships');
const runtime = populationRuntime();
const platforms = expiringPlatforms(runtime.config).map((platform) => ({
  platformId: platform.id,
  batchSize: platform.connector.population.batchSize,
}));

async function sweep(event: ScheduledEvent, context: Context): Promise<{ removals: number }> {
  // The schedule's own time is the clock: a late or repeated invocation sweeps the same window.
  const scheduled = Date.parse(event.time ?? '');
  const result = await sweepExpired({
    index: runtime.store,
    queues: runtime.queues,
    platforms,
    nowMs: Number.isFinite(scheduled) ? scheduled : Date.now(),
    deadlineMs: workDeadlineMs(context, 10_000),
  });
  logger.info('expired memberships swept', { ...result });
  return { removals: result.removals };
}

export const handler = middy(sweep).use(injectLambdaContext(logger, { resetKeys: true }));

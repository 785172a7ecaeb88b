import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { dynamoDbClient } from '../../src/aws/clients.ts';
import { DELIVERY_MAX_RECEIVE_COUNT } from '../../src/infra/population.ts';
import { POPULATION_TABLE } from '../../src/infra/resources.ts';
import {
  createLogger,
  POPULATION_METRICS,
  PowertoolsPopulationMetrics,
} from '../../src/observability/powertools.ts';
import { deliverRecords } from '../../src/population/deliver-service.ts';
import { SEGMENT_DELIVERY_MESSAGE, segmentDeliveries } from '../../src/population/delivery-summary.ts';
import { DynamoCallGate } from '../../src/population/dynamo-adapters.ts';
import { decodeDeliveryMessage } from '../../src/population/membership.ts';
import {
  partnerClients,
  populationRuntime,
  receiveCount,
  respond,
  tableName,
  workDeadlineMs,
} from '../../src/population/runtime.ts';

// Cold start: configuration validated, clients created once; throttles live as long as the container.
const logger = createLogger('deliver');
const metrics = new PowertoolsPopulationMetrics('deliver');
const runtime = populationRuntime();
const clients = partnerClients(runtime.config);
const gates = new Map<number, DynamoCallGate>();

function gateFor(platformId: number, rate: number | undefined) {
  let gate = gates.get(platformId);
  if (!gate) {
    gate = new DynamoCallGate(dynamoDbClient(), tableName(POPULATION_TABLE), platformId, rate);
    gates.set(platformId, gate);
  }
  const shared = gate;
  return {
    acquire: (deadline: number) => shared.acquire(deadline),
    observe: (status: number | undefined, retryAfterMs?: number) => {
      shared.observe(status, retryAfterMs);
      metrics.count(POPULATION_METRICS.calls, platformId);
      if (status === 429) metrics.count(POPULATION_METRICS.throttled, platformId);
      else if (status === undefined || status >= 500) metrics.count(POPULATION_METRICS.errors, platformId);
    },
  };
}

async function handleDeliveries(event: SQSEvent, context: Context): Promise<SQSBatchResponse> {
  // Calls end 5 s before the function would time out, leaving time to record and respond.
  const deadline = workDeadlineMs(context, 5000);
  const records = event.Records.map((record) => ({
    id: record.messageId,
    memberships: decodeDeliveryMessage(record.body),
    lastReceive: receiveCount(record) >= DELIVERY_MAX_RECEIVE_COUNT,
  }));
  const result = await deliverRecords(
    records,
    {
      environment: runtime.config.name,
      platform: runtime.connected,
      partnerFor: (platform) => clients.for(platform),
      gateFor: (platform) => gateFor(platform.id, platform.connector.population.rateLimitPerSecond),
      state: runtime.store,
      accounting: runtime.store,
      forgotten: runtime.forgotten,
    },
    deadline,
  );
  const platformId = Number(event.Records[0]?.eventSourceARN.split('-').pop()) || 0;
  metrics.count(POPULATION_METRICS.delivered, platformId, result.delivered);
  metrics.count(POPULATION_METRICS.failed, platformId, result.failedRecordIds.size);
  for (const sample of result.latencies) metrics.latency(sample.platformId, sample.ms);
  metrics.flush();
  logger.info('delivered', {
    records: event.Records.length,
    failed: result.failedRecordIds.size,
    unstarted: result.unstartedRecordIds.size,
    delivered: result.delivered,
    calls: result.calls,
    retryAfterMs: result.retryAfterMs,
  });
  for (const segment of segmentDeliveries(records, result.failedRecordIds))
    logger.info(SEGMENT_DELIVERY_MESSAGE, { ...segment });
  return respond(
    event,
    context,
    result.failedRecordIds,
    runtime,
    () => result.retryAfterMs,
    result.unstartedRecordIds,
  );
}

export const handler = middy(handleDeliveries).use(injectLambdaContext(logger, { resetKeys: true }));

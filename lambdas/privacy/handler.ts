import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { dynamoDbClient } from '../../src/aws/clients.ts';
import * as z from '../../src/config/zod-mini.ts';
import { fileStagingFromEnv } from '../../src/files/staging-store.ts';
import { MAPPING_TABLE, SEGMENT_TABLE } from '../../src/infra/resources.ts';
import { createLogger } from '../../src/observability/powertools.ts';
import { populationRuntime, tableName } from '../../src/population/runtime.ts';
import { forgetUser } from '../../src/privacy/forget.ts';
import { forgetDeps } from '../../src/privacy/wiring.ts';
import { DynamoSegmentStore } from '../../src/segments/segment-store.ts';
import { DynamoMappingStore } from '../../src/sync/mapping-store.ts';
import { isValidDmpUserId } from '../../src/sync/user-ids.ts';

// `POST /privacy/forget` behind the HTTP API's IAM authorizer: API Gateway has checked the
// caller's SigV4 signature and its execute-api:Invoke right before this runs.
const logger = createLogger('privacy');
const runtime = populationRuntime();
const deps = forgetDeps({
  config: runtime.config,
  digests: runtime.digests,
  population: runtime.store,
  mappings: new DynamoMappingStore(dynamoDbClient(), tableName(MAPPING_TABLE)),
  queues: runtime.queues,
  files: fileStagingFromEnv(runtime.config, dynamoDbClient()),
  segments: new DynamoSegmentStore(dynamoDbClient(), tableName(SEGMENT_TABLE)),
});

const ForgetRequestSchema = z.strictObject({
  dmpUserId: z.string().check(z.refine(isValidDmpUserId, 'not a DMP user id (8-128 of A-Z a-z 0-9 . _ -)')),
});

const json = (statusCode: number, body: unknown): APIGatewayProxyStructuredResultV2 => ({
  statusCode,
  headers: { 'content-type': 'application/json', 'cache-control': 'no-store' },
  body: JSON.stringify(body),
});

async function handleRequest(event: APIGatewayProxyEventV2): Promise<APIGatewayProxyStructuredResultV2> {
  let body: unknown;
  try {
    const text = event.isBase64Encoded
      ? Buffer.from(event.body ?? '', 'base64').toString('utf8')
      : event.body;
    body = JSON.parse(text ?? '');
  } catch {
    return json(400, { error: 'body_not_json', message: 'the body must be JSON: {"dmpUserId": "..."}' });
  }
  const parsed = ForgetRequestSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return json(400, {
      error: 'request_invalid',
      message: `${issue?.path.join('.') || 'body'}: ${issue?.message}`,
    });
  }
  // Errors propagate: API Gateway answers 500 and the DMP retries (every step is idempotent).
  const audit = await forgetUser(parsed.data.dmpUserId, 'api', deps);
  logger.info('forgot a user', { digest: audit.digest.slice(0, 16), removals: audit.removalsSent });
  return json(200, audit);
}

export const handler = middy(handleRequest).use(injectLambdaContext(logger, { resetKeys: true }));

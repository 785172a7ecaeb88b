import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';

/**
 * SDK clients are created once per Lambda container, outside the handler, and reuse their
 * keep-alive connections. Endpoints come from the standard `AWS_ENDPOINT_URL_<SERVICE>`
 * variables, which the local stack sets and AWS leaves unset.
 *
 * Timeouts: a slow DynamoDB or Secrets Manager call must fail fast enough for the handler to still
 * answer its own 503 pixel before the function's 5 s timeout (API Gateway would answer a JSON 5xx
 * instead). Two attempts of at most 0.3 s to connect and 1 s to answer, plus the SDK's backoff
 * (< 0.1 s), keep any one call under ~2.7 s; the handler's own deadline (lambdas/user-sync) covers
 * a request that makes several.
 */
export const SDK_CLIENT_SETTINGS = {
  maxAttempts: 2,
  requestHandler: { connectionTimeout: 300, requestTimeout: 1000 },
} as const;

let dynamoDb: DynamoDBClient | undefined;
let s3: S3Client | undefined;

export function dynamoDbClient(): DynamoDBClient {
  dynamoDb ??= new DynamoDBClient({ ...SDK_CLIENT_SETTINGS });
  return dynamoDb;
}

export function s3Client(): S3Client {
  s3 ??= new S3Client({ maxAttempts: 3 });
  return s3;
}

let sqs: SQSClient | undefined;

export function sqsClient(): SQSClient {
  sqs ??= new SQSClient({ maxAttempts: 3 });
  return sqs;
}

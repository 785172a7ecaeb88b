import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';

/**
 * SDK clients are created once per Lambda container, outside the handler, and reuse their
 * keep-alive connections. Endpoints come from the standard `AWS_ENDPOINT_URL_<SERVICE>`
 * variables, which the local stack sets and AWS leaves unset.
 */
let dynamoDb: DynamoDBClient | undefined;
let s3: S3Client | undefined;

export function dynamoDbClient(): DynamoDBClient {
  dynamoDb ??= new DynamoDBClient({ maxAttempts: 3 });
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

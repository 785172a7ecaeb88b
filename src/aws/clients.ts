import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SQSClient } from '@aws-sdk/client-sqs';

/**
 * SDK clients are created once per Lambda container, outside the handler, and reuse their
 * keep-alive connections. Endpoints come from the standard `AWS_ENDPOINT_URL_<SERVICE>`
 * variables, which the local stack sets and AWS leaves unset.
 */
let dynamoDb: DynamoDBClient | undefined;

export function dynamoDbClient(): DynamoDBClient {
  dynamoDb ??= new DynamoDBClient({ maxAttempts: 3 });
  return dynamoDb;
}

let sqs: SQSClient | undefined;

export function sqsClient(): SQSClient {
  sqs ??= new SQSClient({ maxAttempts: 3 });
  return sqs;
}

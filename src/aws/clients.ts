import { DynamoDBClient } from '@aws-sdk/client-dynamodb';

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

import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';

/**
 * SDK clients are created once per Lambda container, outside the handler, and reuse their
 * keep-alive connections. Endpoints come from the standard `AWS_ENDPOINT_URL_<SERVICE>`
 * variables, which the local stack sets and AWS leaves unset.
 *
 * Timeouts: a hung DynamoDB or Secrets Manager connection must not hold a request until the
 * function's 5 s timeout (API Gateway would answer a JSON 5xx instead of our pixel). Each attempt
 * gets 1 s to connect and 2 s to answer, two attempts at most; the user-sync handler's own
 * deadline (0.5 s before the function's timeout, lambdas/user-sync) answers the 503 pixel whatever
 * the calls still pending. The bounds stay loose enough for a loaded machine's local stand-ins.
 */
export const SDK_CLIENT_SETTINGS = {
  maxAttempts: 2,
  // Without throwOnRequestTimeout, smithy only logs a warning when requestTimeout passes and the
  // call goes on waiting: the 2 s bound would be a comment, not a behaviour.
  requestHandler: { connectionTimeout: 1000, requestTimeout: 2000, throwOnRequestTimeout: true },
} as const;

/**
 * SQS (the population functions' sends to the delivery queues, visibility changes): a hung
 * connection would hold a route or release invocation until its function timeout, then fail the
 * whole batch. Each attempt gets 1 s to connect and 3 s for the answer (a SendMessageBatch carries
 * up to 1 MiB; in-region answers take tens of milliseconds, the bound is for a loaded machine's
 * stand-in), three attempts; the handlers then report the records failed and the queue retries them.
 */
export const SQS_CLIENT_SETTINGS = {
  maxAttempts: 3,
  requestHandler: { connectionTimeout: 1000, requestTimeout: 3000, throwOnRequestTimeout: true },
} as const;

/**
 * S3 (the file exporter's uploads, ours or a partner's bucket): an upload's part may take longer
 * than any fixed bound to send, so the bound is on silence instead: 3 s to connect (a partner's
 * bucket may be in another region), and a socket that carries nothing for 10 s (a peer that reads
 * the request and never answers) fails the attempt; three attempts.
 */
export const S3_CLIENT_SETTINGS = {
  maxAttempts: 3,
  requestHandler: { connectionTimeout: 3000, socketTimeout: 10_000 },
} as const;

/**
 * Set by the local stack only, where every function of the service runs in one process and shares
 * these clients: the sockets of many concurrent invocations, not of one Lambda container (whose
 * default pool of 50 its own bounded concurrency never fills). A request that waits for a socket
 * counts against the connect timeout, so a shared pool of 50 failed requests under load that
 * separate containers would not.
 */
export const SHARED_CLIENT_SOCKETS_ENV = 'DMP_LOCAL_SDK_MAX_SOCKETS';

function requestHandlerSettings<T extends object>(settings: T): T | (T & { httpAgent: object }) {
  const sockets = Number(process.env[SHARED_CLIENT_SOCKETS_ENV]);
  return Number.isInteger(sockets) && sockets > 0
    ? { ...settings, httpAgent: { keepAlive: true, maxSockets: sockets } }
    : settings;
}

let dynamoDb: DynamoDBClient | undefined;
let s3: S3Client | undefined;

export function dynamoDbClient(): DynamoDBClient {
  dynamoDb ??= new DynamoDBClient({
    ...SDK_CLIENT_SETTINGS,
    requestHandler: requestHandlerSettings(SDK_CLIENT_SETTINGS.requestHandler),
  });
  return dynamoDb;
}

export function s3Client(): S3Client {
  s3 ??= new S3Client({ ...S3_CLIENT_SETTINGS });
  return s3;
}

let sqs: SQSClient | undefined;

export function sqsClient(): SQSClient {
  sqs ??= new SQSClient({
    ...SQS_CLIENT_SETTINGS,
    requestHandler: requestHandlerSettings(SQS_CLIENT_SETTINGS.requestHandler),
  });
  return sqs;
}

import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { SendMessageBatchCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as z from 'zod';
import {
  dynamoDbClient,
  S3_CLIENT_SETTINGS,
  SDK_CLIENT_SETTINGS,
  SQS_CLIENT_SETTINGS,
  s3Client,
  sqsClient,
} from '../../src/aws/clients.ts';
import { JsonSecrets } from '../../src/aws/secrets.ts';

/**
 * Endpoints that accept the connection, read the request and never answer: what a hung
 * connection looks like. The clients the functions use (the factories of src/aws/clients.ts and
 * the secrets reader, pointed here by the standard `AWS_ENDPOINT_URL_<SERVICE>` variables) must
 * fail the call after their attempts, not wait until the function's timeout.
 */

interface HungEndpoint {
  readonly url: string;
  /** Requests that reached it (one per attempt). */
  readonly requests: () => number;
  close(): Promise<void>;
}

async function hungEndpoint(): Promise<HungEndpoint> {
  const sockets = new Set<Socket>();
  let requests = 0;
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.once('data', () => requests++);
    socket.on('error', () => {});
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('no port');
  return {
    url: `http://127.0.0.1:${address.port}`,
    requests: () => requests,
    async close() {
      for (const socket of sockets) socket.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

const SERVICES = ['DYNAMODB', 'SQS', 'S3', 'SECRETS_MANAGER'] as const;
const endpoints = new Map<(typeof SERVICES)[number], HungEndpoint>();
const saved = { ...process.env };

beforeAll(async () => {
  for (const service of SERVICES) {
    const endpoint = await hungEndpoint();
    endpoints.set(service, endpoint);
    process.env[`AWS_ENDPOINT_URL_${service}`] = endpoint.url;
  }
  Object.assign(process.env, {
    AWS_REGION: 'eu-west-1',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
  });
  delete process.env['AWS_SESSION_TOKEN'];
});

afterAll(async () => {
  for (const client of [dynamoDbClient(), sqsClient(), s3Client()]) client.destroy();
  await Promise.all([...endpoints.values()].map((endpoint) => endpoint.close()));
  for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
  Object.assign(process.env, saved);
});

const seen = (service: (typeof SERVICES)[number]) => endpoints.get(service)?.requests();

describe.concurrent('SDK clients against an endpoint that never answers', () => {
  it('DynamoDB: abandons the request (requestTimeout throws), after its attempts', async () => {
    const call = dynamoDbClient().send(new GetItemCommand({ TableName: 't', Key: { pk: { S: 'k' } } }));
    await expect(call).rejects.toMatchObject({ name: 'TimeoutError' });
    expect(seen('DYNAMODB')).toBe(SDK_CLIENT_SETTINGS.maxAttempts);
  });

  it('SQS: abandons a send (requestTimeout throws), after its attempts', async () => {
    const call = sqsClient().send(
      new SendMessageBatchCommand({
        QueueUrl: `${endpoints.get('SQS')?.url}/000000000000/delivery-1`,
        Entries: [{ Id: '1', MessageBody: '{}' }],
      }),
    );
    await expect(call).rejects.toMatchObject({ name: 'TimeoutError' });
    expect(seen('SQS')).toBe(SQS_CLIENT_SETTINGS.maxAttempts);
  }, 120_000);

  it('S3: abandons an upload whose answer never comes (socket silent), after its attempts', async () => {
    const call = s3Client().send(
      new PutObjectCommand({ Bucket: 'outbox', Key: 'f.tsv.gz', Body: 'x', ContentType: 'text/plain' }),
    );
    await expect(call).rejects.toMatchObject({ name: 'TimeoutError' });
    expect(seen('S3')).toBe(S3_CLIENT_SETTINGS.maxAttempts);
  }, 120_000);

  it('Secrets Manager: the secrets reader fails with a SecretError naming the timeout', async () => {
    const call = new JsonSecrets().read('dmp-activation/test/secret', z.object({}));
    await expect(call).rejects.toMatchObject({ name: 'SecretError', message: /TimeoutError/ });
    expect(seen('SECRETS_MANAGER')).toBe(SDK_CLIENT_SETTINGS.maxAttempts);
  });
});

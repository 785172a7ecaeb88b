import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SDK_CLIENT_SETTINGS } from '../../src/aws/clients.ts';

// A DynamoDB endpoint that accepts the connection, reads the request and never answers: what a
// hung connection looks like. With the shared settings the call must fail, not wait forever.
describe('SDK client settings', () => {
  let server: Server;
  const sockets = new Set<Socket>();
  let requestsSeen = 0;

  beforeAll(async () => {
    server = createServer((socket) => {
      sockets.add(socket);
      socket.once('data', () => requestsSeen++);
      socket.on('error', () => {});
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
  });

  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    server.close();
    await once(server, 'close');
  });

  it('abandons a request that gets no answer (requestTimeout throws), after its attempts', async () => {
    const address = server.address();
    if (!address || typeof address === 'string') throw new Error('no port');
    const client = new DynamoDBClient({
      ...SDK_CLIENT_SETTINGS,
      endpoint: `http://127.0.0.1:${address.port}`,
      region: 'eu-west-1',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
    try {
      const call = client.send(new GetItemCommand({ TableName: 't', Key: { pk: { S: 'k' } } }));
      await expect(call).rejects.toMatchObject({ name: 'TimeoutError' });
      expect(requestsSeen).toBe(SDK_CLIENT_SETTINGS.maxAttempts);
    } finally {
      client.destroy();
    }
  }, 30_000);
});

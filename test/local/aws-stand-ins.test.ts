import { readFileSync } from 'node:fs';
import {
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
} from '@aws-sdk/client-dynamodb';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import {
  GetSecretValueCommand,
  ResourceNotFoundException,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import {
  CreateQueueCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalStack } from '../../local/stack.ts';
import { platformSecretName, syncTokenKeySecretName } from '../../src/config/secrets.ts';
import { MAPPING_TABLE, TABLES } from '../../src/infra/resources.ts';
import { startEchoStack } from '../support/local-stack.ts';

/**
 * The stand-ins, reached by the real AWS SDK v3 clients exactly as the handlers create them: no
 * endpoint, region or credentials in code, all of it from the environment the stack sets.
 */

const LOCAL_SECRETS = JSON.parse(
  readFileSync(new URL('../../config/local-secrets.json', import.meta.url), 'utf8'),
) as Record<string, unknown>;

describe('AWS stand-ins through the SDK environment variables', () => {
  let stack: LocalStack;

  beforeAll(async () => {
    stack = await startEchoStack();
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('creates the mapping table from MAPPING_TABLE, reachable through AWS_ENDPOINT_URL_DYNAMODB', async () => {
    const client = new DynamoDBClient({});
    try {
      const tableName = process.env[MAPPING_TABLE.envVar]!;
      expect(tableName).toBe(MAPPING_TABLE.localName);
      expect(stack.tableNames).toEqual(
        Object.fromEntries(TABLES.map((table) => [table.id, table.localName])),
      );
      const { Table } = await client.send(new DescribeTableCommand({ TableName: tableName }));
      expect(Table?.TableStatus).toBe('ACTIVE');
      expect(Table?.KeySchema).toEqual([
        { AttributeName: MAPPING_TABLE.partitionKey.name, KeyType: 'HASH' },
        { AttributeName: MAPPING_TABLE.sortKey!.name, KeyType: 'RANGE' },
      ]);
      expect(Table?.AttributeDefinitions).toEqual(
        expect.arrayContaining([
          { AttributeName: MAPPING_TABLE.partitionKey.name, AttributeType: MAPPING_TABLE.partitionKey.type },
          { AttributeName: MAPPING_TABLE.sortKey!.name, AttributeType: MAPPING_TABLE.sortKey!.type },
        ]),
      );
      const item = {
        pk: { S: 'user#sdk-env-test' },
        sk: { S: 'platform#99999' },
        partnerUserId: { S: 'abcdef123' },
      };
      await client.send(new PutItemCommand({ TableName: tableName, Item: item }));
      const { Item } = await client.send(
        new GetItemCommand({ TableName: tableName, Key: { pk: item.pk, sk: item.sk }, ConsistentRead: true }),
      );
      expect(Item).toEqual(item);
      expect(await client.config.region()).toBe('eu-west-1');
    } finally {
      client.destroy();
    }
  });

  it('emulates TTL by sweeping expired items (dynalite reports TTL as disabled)', async () => {
    const client = new DynamoDBClient({});
    try {
      const tableName = MAPPING_TABLE.localName;
      const { TimeToLiveDescription } = await client.send(
        new DescribeTimeToLiveCommand({ TableName: tableName }),
      );
      expect(TimeToLiveDescription?.TimeToLiveStatus).toBe('DISABLED');
      const now = Math.floor(Date.now() / 1000);
      const attribute = MAPPING_TABLE.timeToLiveAttribute!;
      const put = (sk: string, expiresAt: number) =>
        client.send(
          new PutItemCommand({
            TableName: tableName,
            Item: { pk: { S: 'user#ttl-test' }, sk: { S: sk }, [attribute]: { N: String(expiresAt) } },
          }),
        );
      await put('platform#1', now - 10);
      await put('platform#2', now + 3600);
      expect(await stack.sweepExpiredItems()).toBe(1);
      const get = (sk: string) =>
        client.send(
          new GetItemCommand({ TableName: tableName, Key: { pk: { S: 'user#ttl-test' }, sk: { S: sk } } }),
        );
      expect((await get('platform#1')).Item).toBeUndefined();
      expect((await get('platform#2')).Item).toBeDefined();
    } finally {
      client.destroy();
    }
  });

  it('serves config/local-secrets.json through AWS_ENDPOINT_URL_SECRETS_MANAGER', async () => {
    const client = new SecretsManagerClient({});
    try {
      const name = platformSecretName('local', 88888);
      const secret = await client.send(new GetSecretValueCommand({ SecretId: name }));
      expect(secret.Name).toBe(name);
      expect(JSON.parse(secret.SecretString!)).toEqual(LOCAL_SECRETS[name]);
      expect(secret.ARN).toMatch(
        new RegExp(
          `^arn:aws:secretsmanager:eu-west-1:\\d{12}:secret:${name.replaceAll('/', '\\/')}-[A-Za-z0-9]{6}$`,
        ),
      );
      expect(secret.VersionId).toMatch(/^[0-9a-f-]{36}$/);
      expect(secret.VersionStages).toEqual(['AWSCURRENT']);
      expect(secret.CreatedDate).toBeInstanceOf(Date);

      const byArn = await client.send(new GetSecretValueCommand({ SecretId: secret.ARN! }));
      expect(byArn.SecretString).toBe(secret.SecretString);
      const tokenKey = await client.send(
        new GetSecretValueCommand({ SecretId: syncTokenKeySecretName('local'), VersionStage: 'AWSCURRENT' }),
      );
      expect(JSON.parse(tokenKey.SecretString!)).toEqual(LOCAL_SECRETS[syncTokenKeySecretName('local')]);
    } finally {
      client.destroy();
    }
  });

  it('answers ResourceNotFoundException for an unknown secret', async () => {
    const client = new SecretsManagerClient({});
    try {
      const error = await client
        .send(new GetSecretValueCommand({ SecretId: 'dmp-activation/local/platforms/12345' }))
        .then(
          () => undefined,
          (caught: unknown) => caught,
        );
      expect(error).toBeInstanceOf(ResourceNotFoundException);
      expect((error as ResourceNotFoundException).$metadata.httpStatusCode).toBe(400);
    } finally {
      client.destroy();
    }
  });

  it('reaches fauxqs through AWS_ENDPOINT_URL_SQS and AWS_ENDPOINT_URL_S3', async () => {
    const sqs = new SQSClient({});
    const s3 = new S3Client({});
    const warnings: unknown[] = [];
    const warn = console.warn;
    console.warn = (...args: unknown[]) => warnings.push(args);
    try {
      const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: 'stand-in-test' }));
      await sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: 'hello' }));
      const { Messages } = await sqs.send(new ReceiveMessageCommand({ QueueUrl, WaitTimeSeconds: 1 }));
      expect(Messages?.[0]?.Body).toBe('hello');

      await s3.send(new CreateBucketCommand({ Bucket: 'stand-in-test' }));
      await s3.send(new PutObjectCommand({ Bucket: 'stand-in-test', Key: 'a/b.txt', Body: 'payload' }));
      const object = await s3.send(new GetObjectCommand({ Bucket: 'stand-in-test', Key: 'a/b.txt' }));
      expect(await object.Body?.transformToString()).toBe('payload');
      await stack.fauxqs.spy.waitForMessage(
        { service: 's3', bucket: 'stand-in-test', key: 'a/b.txt' },
        'uploaded',
      );
      // Queue URLs share the SQS endpoint's origin, as in AWS: no "QueueUrl differs" warning.
      expect(QueueUrl).toMatch(/^http:\/\/sqs\.eu-west-1\.localhost:\d+\/\d{12}\/stand-in-test$/);
      expect(warnings).toEqual([]);
    } finally {
      console.warn = warn;
      sqs.destroy();
      s3.destroy();
    }
  });
});

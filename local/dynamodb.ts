import { mkdirSync } from 'node:fs';
import type { Server } from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';
import {
  type AttributeValue,
  ConditionalCheckFailedException,
  CreateTableCommand,
  DeleteItemCommand,
  DescribeTableCommand,
  type DynamoDBClient,
  ResourceNotFoundException,
  ScanCommand,
  UpdateTimeToLiveCommand,
} from '@aws-sdk/client-dynamodb';
import dynalite from 'dynalite';
import type { TableDefinition } from '../src/infra/resources.ts';
import { close, listen, originOf } from './http-util.ts';

/**
 * DynamoDB on dynalite, in this process: in memory, or LevelDB under a directory so data survives
 * restarts. Tables are created from the shared definitions (TABLES in src/infra/resources.ts).
 */

export interface LocalDynamoDb {
  readonly url: string;
  readonly port: number;
  readonly server: Server;
  stop(): Promise<void>;
}

export async function startDynalite(options: {
  readonly path?: string;
  readonly port?: number;
}): Promise<LocalDynamoDb> {
  if (options.path) mkdirSync(options.path, { recursive: true });
  // Tables become ACTIVE at once instead of after dynalite's default 500 ms.
  const server = dynalite({
    createTableMs: 0,
    deleteTableMs: 0,
    updateTableMs: 0,
    ...(options.path ? { path: options.path } : {}),
  });
  let port: number;
  try {
    port = await listen(server, options.port ?? 0);
  } catch (error) {
    if (options.path && /lock/i.test(String((error as Error).message))) {
      throw new Error(`${options.path} is in use by another local stack (LevelDB lock)`, { cause: error });
    }
    throw error;
  }
  return { url: originOf(port), port, server, stop: () => close(server) };
}

/** How a table's time-to-live is honoured locally. */
export type TtlMode = 'native' | 'swept' | 'none';

export interface EnsuredTable {
  readonly definition: TableDefinition;
  readonly created: boolean;
  readonly ttl: TtlMode;
}

/**
 * Creates the table unless it exists (restart with persisted data); refuses a persisted table whose
 * keys no longer match the definition. Then asks for TTL; dynalite has no UpdateTimeToLive, so
 * expired items are deleted by `sweepExpiredItems` instead.
 */
export async function ensureTable(
  client: DynamoDBClient,
  definition: TableDefinition,
): Promise<EnsuredTable> {
  const keySchema = [
    { AttributeName: definition.partitionKey.name, KeyType: 'HASH' as const },
    ...(definition.sortKey ? [{ AttributeName: definition.sortKey.name, KeyType: 'RANGE' as const }] : []),
  ];
  const indexes = definition.globalIndexes ?? [];
  const keyAttributes = [
    definition.partitionKey,
    ...(definition.sortKey ? [definition.sortKey] : []),
    ...indexes.flatMap((index) => [index.partitionKey, ...(index.sortKey ? [index.sortKey] : [])]),
  ];
  const attributeDefinitions = keyAttributes
    .filter((key, position) => keyAttributes.findIndex((other) => other.name === key.name) === position)
    .map((key) => ({ AttributeName: key.name, AttributeType: key.type }));
  let created = false;
  const existing = await describe(client, definition.localName);
  if (existing) {
    const actual = JSON.stringify(
      (existing.KeySchema ?? []).map((key) => [
        key.AttributeName,
        key.KeyType,
        existing.AttributeDefinitions?.find((attribute) => attribute.AttributeName === key.AttributeName)
          ?.AttributeType,
      ]),
    );
    const expected = JSON.stringify(
      keySchema.map((key) => [
        key.AttributeName,
        key.KeyType,
        attributeDefinitions.find((attribute) => attribute.AttributeName === key.AttributeName)
          ?.AttributeType,
      ]),
    );
    if (actual !== expected) {
      throw new Error(
        `table ${definition.localName} exists with keys ${actual} but the definition says ${expected}; ` +
          'start with --fresh to recreate local data',
      );
    }
  } else {
    await client.send(
      new CreateTableCommand({
        TableName: definition.localName,
        KeySchema: keySchema,
        AttributeDefinitions: attributeDefinitions,
        BillingMode: 'PAY_PER_REQUEST',
        ...(indexes.length > 0
          ? {
              GlobalSecondaryIndexes: indexes.map((index) => ({
                IndexName: index.name,
                KeySchema: [
                  { AttributeName: index.partitionKey.name, KeyType: 'HASH' as const },
                  ...(index.sortKey
                    ? [{ AttributeName: index.sortKey.name, KeyType: 'RANGE' as const }]
                    : []),
                ],
                Projection: { ProjectionType: 'ALL' as const },
              })),
            }
          : {}),
      }),
    );
    created = true;
  }
  await waitUntilActive(client, definition.localName);

  let ttl: TtlMode = 'none';
  if (definition.timeToLiveAttribute) {
    try {
      await client.send(
        new UpdateTimeToLiveCommand({
          TableName: definition.localName,
          TimeToLiveSpecification: { AttributeName: definition.timeToLiveAttribute, Enabled: true },
        }),
      );
      ttl = 'native';
    } catch (error) {
      if ((error as Error).name !== 'UnknownOperationException') throw error;
      ttl = 'swept';
    }
  }
  return { definition, created, ttl };
}

async function describe(client: DynamoDBClient, tableName: string) {
  try {
    return (await client.send(new DescribeTableCommand({ TableName: tableName }))).Table;
  } catch (error) {
    if (error instanceof ResourceNotFoundException || (error as Error).name === 'ResourceNotFoundException') {
      return undefined;
    }
    throw error;
  }
}

async function waitUntilActive(client: DynamoDBClient, tableName: string): Promise<void> {
  // With createTableMs: 0 dynalite flips the status on its next timer tick.
  for (let attempt = 0; attempt < 200; attempt += 1) {
    const table = await describe(client, tableName);
    if (table?.TableStatus === 'ACTIVE') return;
    await delay(5);
  }
  throw new Error(`table ${tableName} did not become ACTIVE`);
}

/**
 * What DynamoDB's TTL does in AWS (within a day or two of expiry): deletes items whose TTL
 * attribute is a number of epoch seconds in the past. Returns how many items were deleted.
 */
export async function sweepExpiredItems(
  client: DynamoDBClient,
  definition: TableDefinition,
  nowSeconds: number = Math.floor(Date.now() / 1000),
): Promise<number> {
  const attribute = definition.timeToLiveAttribute;
  if (!attribute) return 0;
  const keyNames = [definition.partitionKey.name, ...(definition.sortKey ? [definition.sortKey.name] : [])];
  let deleted = 0;
  let startKey: Record<string, AttributeValue> | undefined;
  do {
    const page = await client.send(
      new ScanCommand({
        TableName: definition.localName,
        FilterExpression: '#ttl < :now',
        ExpressionAttributeNames: { '#ttl': attribute },
        ExpressionAttributeValues: { ':now': { N: String(nowSeconds) } },
        ...(startKey ? { ExclusiveStartKey: startKey } : {}),
      }),
    );
    for (const item of page.Items ?? []) {
      const key = Object.fromEntries(keyNames.map((name) => [name, item[name]!]));
      try {
        // Conditional, in case a handler extended the item since the scan.
        await client.send(
          new DeleteItemCommand({
            TableName: definition.localName,
            Key: key,
            ConditionExpression: '#ttl < :now',
            ExpressionAttributeNames: { '#ttl': attribute },
            ExpressionAttributeValues: { ':now': { N: String(nowSeconds) } },
          }),
        );
        deleted += 1;
      } catch (error) {
        if (!(error instanceof ConditionalCheckFailedException)) throw error;
      }
    }
    startKey = page.LastEvaluatedKey;
  } while (startKey);
  return deleted;
}

import { type DynamoDBClient, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { FORGET_REQUEST_KEY } from './forget-request-key.ts';

/**
 * A browser's `/optout` becomes a privacy request without widening the user-sync Lambda's rights:
 * it writes a request item into the mapping table (the one table it may write), whose change
 * stream feeds the release function, which runs the shared `forgetUser` and deletes the item.
 * The item lives a day at most (TTL) should that function be failing for longer.
 */

const REQUEST_PREFIX = FORGET_REQUEST_KEY.prefix;
const REQUEST_SORT_KEY = FORGET_REQUEST_KEY.sortKey;
const REQUEST_KEEP_SECONDS = 86_400;

export class ForgetRequests {
  constructor(
    private readonly client: DynamoDBClient,
    private readonly tableName: string,
  ) {}

  async request(dmpUserId: string, nowSeconds = Math.floor(Date.now() / 1000)): Promise<void> {
    await this.client.send(
      new PutItemCommand({
        TableName: this.tableName,
        Item: {
          pk: { S: `${REQUEST_PREFIX}${dmpUserId}` },
          sk: { S: REQUEST_SORT_KEY },
          expiresAt: { N: String(nowSeconds + REQUEST_KEEP_SECONDS) },
        },
      }),
    );
  }
}

/** The user of a forget request in a mapping-table stream image, or undefined for other items. */
export function forgetRequestOf(image: Record<string, { S?: string }> | undefined): string | undefined {
  const pk = image?.['pk']?.S;
  if (!pk?.startsWith(REQUEST_PREFIX) || image?.['sk']?.S !== REQUEST_SORT_KEY) return undefined;
  return pk.slice(REQUEST_PREFIX.length);
}

export function forgetRequestKey(dmpUserId: string) {
  return { pk: { S: `${REQUEST_PREFIX}${dmpUserId}` }, sk: { S: REQUEST_SORT_KEY } };
}

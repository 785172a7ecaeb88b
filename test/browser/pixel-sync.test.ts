import { createServer, type Server } from 'node:http';
import { type AttributeValue, DynamoDBClient, GetItemCommand, QueryCommand } from '@aws-sdk/client-dynamodb';
import type { Page, Response } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { close, listen } from '../../local/http-util.ts';
import { PARTNER_COOKIE } from '../../local/reference-partner.ts';
import { LOCAL_CREDENTIALS, LOCAL_REGION, type LocalStack, startLocalStack } from '../../local/stack.ts';
import { MAPPING_TABLE } from '../../src/infra/resources.ts';
import { type ChromiumSession, chooseChromium, launchChromium } from '../support/browser.ts';
import { countItems } from '../support/dynamodb.ts';
import { quietLambdaOutput } from '../support/local-stack.ts';

/**
 * The DMP pixel in a real browser: a publisher page carrying `<img src="{api}/sync">`, loaded by
 * headless Chromium, which follows the whole redirect chain itself (DMP -> reference partner ->
 * DMP /uid for 99999 -> partner, signing for 88888 -> DMP /uid), keeping cookies as a browser does.
 *
 * What Chromium (Debian 156, headless, fresh profile) does here:
 * - Secure cookies over plain http://127.0.0.1 are stored and sent: loopback counts as a
 *   potentially trustworthy origin, so `dmp_uid; Secure; SameSite=None` works without TLS.
 * - Cookies are per host, not per port: the page (127.0.0.1:A), the API (127.0.0.1:B) and the
 *   partner (127.0.0.1:C) are one site, so the pixel is first-party and the partner's
 *   `partner_uid` (SameSite=Lax) is kept too. That same-site variant is the asserting test.
 * - With the page on http://localhost:A the pixel is third-party, and Chromium blocks every
 *   cookie of the chain (`dmp_uid`, `dmp_sa` and `partner_uid`; CDP reports the blocked reason
 *   `UserPreferences`, i.e. third-party cookies are blocked by default, in a persistent profile
 *   and in a fresh off-the-record context alike). The chain still runs: /sync mints a cookie
 *   the browser drops, the partner replaces the macro with a new id, and /uid refuses the
 *   callback (403 `dmp_user_missing`: the minted token is bound to a DMP user the browser does
 *   not present), so nothing is stored. The third-party test pins that down.
 */

const STATIC_PLATFORM = 99999;
const SIGNED_PLATFORM = 88888;
const GIF_SIGNATURE = /^GIF8[79]a/;

interface PixelImage {
  readonly complete: boolean;
  readonly naturalWidth: number;
  readonly naturalHeight: number;
  decode(): Promise<void>;
}

interface ChainStep {
  readonly origin: string;
  readonly path: string;
  readonly status: number;
  readonly query: URLSearchParams;
  readonly response: Response;
}

describe(`the DMP pixel in headless Chromium (${chooseChromium().label})`, () => {
  let stack: LocalStack;
  let browser: ChromiumSession;
  let publisher: Server;
  let publisherPort: number;
  let dynamodb: DynamoDBClient;
  let tableName: string;
  const restoreEnv: (() => void)[] = [];

  beforeAll(async () => {
    restoreEnv.push(quietLambdaOutput());
    // The chain of the two sync partners; the file-mode 99998 is left out (test/integration/files-s3).
    stack = await startLocalStack({ quiet: true, ttlSweepIntervalMs: 0, platformIds: [99999, 88888] });
    tableName = stack.tableNames['MappingTable'] ?? MAPPING_TABLE.localName;
    dynamodb = new DynamoDBClient({
      region: LOCAL_REGION,
      endpoint: stack.dynamodbEndpoint,
      credentials: LOCAL_CREDENTIALS,
    });
    // The publisher: its own server and port, one page carrying the DMP pixel.
    const pixelUrl = `${stack.apiUrl}/sync`;
    publisher = createServer((request, response) => {
      if (request.url !== '/article') {
        response.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
        return;
      }
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      response.end(
        `<!doctype html><html><head><title>Publisher</title></head><body><p>An article.</p>` +
          `<img id="dmp-pixel" alt="" width="1" height="1" src="${pixelUrl}"></body></html>`,
      );
    });
    publisherPort = await listen(publisher, 0);
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    if (publisher) await close(publisher);
    dynamodb?.destroy();
    await stack?.stop();
    for (const restore of restoreEnv.splice(0)) restore();
  });

  beforeEach(async () => {
    await browser.context.clearCookies();
  });

  /** Every response of the pixel's chain (DMP API and partner), in order. */
  function recordChain(page: Page): ChainStep[] {
    const steps: ChainStep[] = [];
    const origins = new Set([stack.apiUrl, stack.partnerUrl]);
    page.on('response', (response) => {
      const url = new URL(response.url());
      if (!origins.has(url.origin)) return;
      steps.push({
        origin: url.origin,
        path: url.pathname,
        status: response.status(),
        query: url.searchParams,
        response,
      });
    });
    return steps;
  }

  /** Loads the publisher page and resolves with the DMP's last answer of the chain (not a redirect). */
  async function visit(page: Page, host: '127.0.0.1' | 'localhost'): Promise<Response> {
    const chainEnd = page.waitForResponse((response) => {
      const url = new URL(response.url());
      return url.origin === stack.apiUrl && (response.status() < 300 || response.status() >= 400);
    });
    const [end] = await Promise.all([
      chainEnd,
      page.goto(`http://${host}:${publisherPort}/article`, { waitUntil: 'load' }),
    ]);
    return end;
  }

  /** The pixel as the page sees it, once decoded (rejects if the image did not load). */
  const pixelLoaded = (page: Page) =>
    page.evaluate(async () => {
      // Runs in the page; the repository's TypeScript has no DOM library, hence the local type.
      const { document } = globalThis as unknown as { document: { getElementById(id: string): PixelImage } };
      const img = document.getElementById('dmp-pixel');
      await img.decode();
      return { complete: img.complete, width: img.naturalWidth, height: img.naturalHeight };
    });

  const partnerSyncs = () => stack.partner.requests.filter((request) => request.path === '/sync').length;

  async function mapping(dmpUserId: string, platformId: number) {
    const result = await dynamodb.send(
      new GetItemCommand({
        TableName: tableName,
        Key: { pk: { S: `user#${dmpUserId}` }, sk: { S: `platform#${platformId}` } },
        ConsistentRead: true,
      }),
    );
    return result.Item;
  }

  async function itemsOf(dmpUserId: string): Promise<Record<string, AttributeValue>[]> {
    const result = await dynamodb.send(
      new QueryCommand({
        TableName: tableName,
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': { S: `user#${dmpUserId}` } },
        ConsistentRead: true,
      }),
    );
    return result.Items ?? [];
  }

  const tableSize = () => countItems(dynamodb, tableName);

  it('runs the whole chain through both partners and stores both mappings under the browser’s dmp_uid', async () => {
    const page = await browser.context.newPage();
    try {
      const chain = recordChain(page);
      const end = await visit(page, '127.0.0.1');

      // The chain, hop by hop, as the browser followed it.
      const api = stack.apiUrl;
      const partner = stack.partnerUrl;
      expect(chain.map((step) => [step.origin, step.path, step.status])).toEqual([
        [api, '/sync', 302],
        [partner, '/sync', 302],
        [api, '/uid', 302],
        [partner, '/sync', 302],
        [api, '/uid', 200],
      ]);
      const [pixel, firstPartner, firstCallback, secondPartner, secondCallback] = chain as [
        ChainStep,
        ChainStep,
        ChainStep,
        ChainStep,
        ChainStep,
      ];
      expect(new URL(firstPartner.query.get('out') ?? '').searchParams.get('pl')).toBe(
        String(STATIC_PLATFORM),
      );
      expect(firstCallback.query.get('pl')).toBe(String(STATIC_PLATFORM));
      expect(secondPartner.query.get('sign')).toBe(String(SIGNED_PLATFORM));
      expect(secondCallback.query.get('pl')).toBe(String(SIGNED_PLATFORM));
      // The partner signed the 88888 callback (HMAC-SHA1, key k1); the DMP accepted it.
      expect(secondCallback.query.get('kid')).toBe('k1');
      expect(secondCallback.query.get('sig')).toMatch(/^[0-9a-f]{40}$/);
      expect(secondCallback.query.get('ts')).toMatch(/^\d+$/);

      // The chain ends with the 1x1 GIF, never cached.
      expect(end).toBe(secondCallback.response);
      expect(end.headers()['content-type']).toBe('image/gif');
      expect(end.headers()['cache-control']).toMatch(/(^|,\s*)no-store(,|$)/);
      expect((await end.body()).toString('latin1')).toMatch(GIF_SIGNATURE);
      expect(await pixelLoaded(page)).toEqual({ complete: true, width: 1, height: 1 });
      for (const step of chain.filter((s) => s.origin === api)) {
        expect(step.response.headers()['cache-control'], step.path).toMatch(/(^|,\s*)no-store(,|$)/);
      }

      // The cookie as sent, and as the browser kept it.
      const setCookie = (await pixel.response.headerValue('set-cookie')) ?? '';
      const dmpUidHeader = setCookie.split('\n').find((line) => line.startsWith('dmp_uid='));
      expect(dmpUidHeader).toBeDefined();
      expect(dmpUidHeader!.split(/;\s*/).slice(1)).toEqual(
        expect.arrayContaining(['Secure', 'HttpOnly', 'SameSite=None', 'Path=/']),
      );
      const cookies = await browser.context.cookies(api);
      const dmpUid = cookies.find((cookie) => cookie.name === 'dmp_uid');
      expect(dmpUid).toMatchObject({ domain: '127.0.0.1', secure: true, httpOnly: true, sameSite: 'None' });
      expect(dmpUid!.value).toMatch(/^[A-Za-z0-9_-]{22}$/);
      const partnerUid = (await browser.context.cookies(partner)).find(
        (cookie) => cookie.name === PARTNER_COOKIE,
      )?.value;
      expect(partnerUid).toMatch(/^[0-9a-f]{16}$/);
      expect(firstCallback.query.get('userid')).toBe(partnerUid);
      expect(secondCallback.query.get('userid')).toBe(partnerUid);

      // Both mappings, under the browser's DMP user, with the partner's id.
      expect(await mapping(dmpUid!.value, STATIC_PLATFORM)).toMatchObject({
        platformId: { N: String(STATIC_PLATFORM) },
        partnerUserId: { S: partnerUid },
      });
      expect(await mapping(dmpUid!.value, SIGNED_PLATFORM)).toMatchObject({
        platformId: { N: String(SIGNED_PLATFORM) },
        partnerUserId: { S: partnerUid },
      });
      expect((await itemsOf(dmpUid!.value)).map((item) => item['sk']?.S).sort()).toEqual([
        `platform#${SIGNED_PLATFORM}`,
        `platform#${STATIC_PLATFORM}`,
      ]);

      // A reload: nothing is due, the pixel answers itself and the partner sees no request.
      const syncsBefore = partnerSyncs();
      chain.length = 0;
      const reloadEnd = await visit(page, '127.0.0.1');
      expect(chain.map((step) => [step.origin, step.path, step.status])).toEqual([[api, '/sync', 200]]);
      expect(reloadEnd.headers()['content-type']).toBe('image/gif');
      expect(await pixelLoaded(page)).toEqual({ complete: true, width: 1, height: 1 });
      expect(partnerSyncs()).toBe(syncsBefore);
      const afterReload = await browser.context.cookies(api);
      expect(afterReload.find((cookie) => cookie.name === 'dmp_uid')?.value).toBe(dmpUid!.value);

      // Not only the attempts cookie (dmp_sa) holds it back: the stored mappings are fresh.
      await browser.context.clearCookies({ name: 'dmp_sa' });
      chain.length = 0;
      await visit(page, '127.0.0.1');
      expect(chain.map((step) => [step.origin, step.path, step.status])).toEqual([[api, '/sync', 200]]);
      expect(partnerSyncs()).toBe(syncsBefore);
      expect(await itemsOf(dmpUid!.value)).toHaveLength(2);
    } finally {
      await page.close();
    }
  });

  it('stores nothing when the pixel is third-party and the browser keeps no cookie for it', async () => {
    const page = await browser.context.newPage();
    try {
      const before = await tableSize();
      const chain = recordChain(page);
      const end = await visit(page, 'localhost');
      expect(await pixelLoaded(page)).toEqual({ complete: true, width: 1, height: 1 });
      expect(chain.every((step) => step.status < 500)).toBe(true);
      expect(end.headers()['content-type']).toBe('image/gif');

      const dmpUid = (await browser.context.cookies(stack.apiUrl)).find(
        (cookie) => cookie.name === 'dmp_uid',
      );
      if (dmpUid === undefined) {
        // Chromium here: third-party cookies blocked. The partner was visited once (99999), its
        // callback refused because the browser presents no DMP user, and the chain ended there.
        expect(chain.map((step) => [step.path, step.status])).toEqual([
          ['/sync', 302],
          ['/sync', 302],
          ['/uid', 403],
        ]);
        expect(end.headers()['x-dmp-reason']).toBe('dmp_user_missing');
        expect(await browser.context.cookies()).toEqual([]);
        expect(await tableSize()).toBe(before);
      } else {
        // A browser that allows third-party cookies: the chain completes as in the same-site case.
        expect(end.status()).toBe(200);
        expect(await itemsOf(dmpUid.value)).toHaveLength(2);
      }
    } finally {
      await page.close();
    }
  });
});

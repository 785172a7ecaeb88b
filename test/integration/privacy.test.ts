import { createHash, createHmac } from 'node:crypto';
import { DynamoDBClient, PutItemCommand, ScanCommand } from '@aws-sdk/client-dynamodb';
import { SignatureV4 } from '@smithy/signature-v4';
import { describe, expect, it } from 'vitest';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from '../../local/endpoints.ts';
import { MAPPING_TABLE, POPULATION_TABLE, TABLES } from '../../src/infra/resources.ts';
import { userDigest } from '../../src/privacy/digest.ts';
import { partnerIdDigest } from '../../src/sync/cookies.ts';
import { DynamoMappingStore } from '../../src/sync/mapping-store.ts';
import {
  audienceEvent,
  BATCH_PLATFORM,
  dmpAgainst,
  partnerIdOf,
  segmentOf,
  sync,
  usePopulationStack,
} from './population-support.ts';
import { PRIVACY_KEY } from './support.ts';

/**
 * Privacy requests end to end on the local stack: `dmp forget` sends the removal through the real
 * deliver handler to the reference partner, leaves no trace of the user in any table, and a later
 * event of the user is set aside as `forgotten`.
 */

const harness = usePopulationStack();
/** The local environment's file-mode platform (config/platforms/local). */
const FILE_PLATFORM = 99998;

const cli = (argv: string[]) => dmpAgainst(harness, argv);

/**
 * The sync path's forget markers (src/sync/mapping-store.ts): the id in the key (the cookie value
 * the sync path must recognise), nothing else but the flag and the expiry.
 */
function isForgetMarker(item: Record<string, import('@aws-sdk/client-dynamodb').AttributeValue>): boolean {
  return (
    Object.keys(item).sort().join(',') === 'expiresAt,forgotten,pk,sk' &&
    item['forgotten']?.BOOL === true &&
    (item['pk']?.S ?? '').startsWith('user#')
  );
}

/** The forget markers of the last itemsMentioning call, by sort key. */
let markers: string[] = [];

/**
 * Every item of every table that mentions `text` anywhere (keys or attributes), except the sync
 * path's forget markers (collected in `markers`).
 */
async function itemsMentioning(text: string): Promise<string[]> {
  markers = [];
  const client = new DynamoDBClient({
    endpoint: harness.stack.dynamodbEndpoint,
    region: LOCAL_REGION,
    credentials: LOCAL_CREDENTIALS,
  });
  try {
    const found: string[] = [];
    for (const table of TABLES) {
      let startKey: Record<string, import('@aws-sdk/client-dynamodb').AttributeValue> | undefined;
      do {
        const page = await client.send(
          new ScanCommand({ TableName: table.localName, ExclusiveStartKey: startKey }),
        );
        for (const item of page.Items ?? []) {
          const json = JSON.stringify(item);
          if (!json.includes(text)) continue;
          if (isForgetMarker(item)) markers.push(item['sk']?.S ?? '');
          else found.push(`${table.localName}: ${json.slice(0, 200)}`);
        }
        startKey = page.LastEvaluatedKey;
      } while (startKey);
    }
    return found;
  } finally {
    client.destroy();
  }
}

describe('dmp forget', () => {
  it('removes the user at every platform that holds it, deletes every trace, and refuses later events', async () => {
    const user = 'forget-me-00000001';
    const neighbour = 'forget-me-00000002';
    await sync(harness, BATCH_PLATFORM, [user, neighbour]);
    // Delivered to the batch platform; pending (never synced) at the file platform.
    await harness.send(
      audienceEvent([user, neighbour], {
        audience: 'aud-forget',
        platforms: [BATCH_PLATFORM, FILE_PLATFORM],
      }),
    );
    await harness.idle();
    const segment = await segmentOf(harness, BATCH_PLATFORM, 'aud-forget');
    expect(harness.stack.partner.members(segment)).toContain(partnerIdOf(user));
    expect(await itemsMentioning(user)).not.toEqual([]);

    const forgotten = await cli(['forget', user, '--json']);
    expect(forgotten.stderr).toBe('');
    const audit = JSON.parse(forgotten.stdout);
    expect(audit).toMatchObject({
      source: 'cli',
      digest: userDigest(PRIVACY_KEY, 'local', user),
      platforms: [BATCH_PLATFORM],
      removalsSent: 1,
      mappingsDeleted: 1,
      pendingDeleted: 1,
    });
    await harness.idle();

    // The partner received the removal; the neighbour is untouched.
    const members = harness.stack.partner.members(segment);
    expect(members).not.toContain(partnerIdOf(user));
    expect(members).toContain(partnerIdOf(neighbour));
    const held = harness.stack.partner.population
      .state()
      .find((entry) => String(entry.segment_id) === segment);
    expect(held?.removes).toBe(1);
    expect(await itemsMentioning(user)).toEqual([]);
    // One marker per platform a browser syncs with, so that the old cookie stores nothing again.
    expect(markers).toContain(`platform#${BATCH_PLATFORM}`);
    expect(await itemsMentioning(partnerIdOf(user))).toEqual([]);

    // A late add (an event sent before the request, or a producer that did not hear of it).
    const before = await harness.totals(BATCH_PLATFORM);
    await harness.send(audienceEvent([user, neighbour], { audience: 'aud-forget', op: 'remove' }));
    await harness.send(
      audienceEvent([user], { audience: 'aud-forget', ts: new Date(Date.now() + 1000).toISOString() }),
    );
    await harness.idle();
    expect(harness.stack.partner.members(segment)).not.toContain(partnerIdOf(user));
    const rejected = JSON.parse((await cli(['rejected', '--json'])).stdout);
    expect(rejected.rejected).toContainEqual(
      expect.objectContaining({ reason: 'forgotten', platformId: BATCH_PLATFORM, memberships: 1 }),
    );
    const after = await harness.totals(BATCH_PLATFORM);
    expect(after.rejected - before.rejected).toBe(2);
    expect(await itemsMentioning(user)).toEqual([]);
    // A second request finds nothing left to do.
    const again = JSON.parse((await cli(['forget', user, '--json'])).stdout);
    expect(again).toMatchObject({ removalsSent: 0, mappingsDeleted: 0, pendingDeleted: 0, statesDeleted: 0 });
  });
});

describe('dmp forget at a file platform', () => {
  it('deletes the staged rows of the user, whose file is not published yet', async () => {
    const user = 'forget-me-00000003';
    await sync(harness, FILE_PLATFORM, [user]);
    await harness.send(audienceEvent([user], { audience: 'aud-forget-file', platforms: [FILE_PLATFORM] }));
    await harness.idle();
    expect((await itemsMentioning(user)).some((item) => item.includes('staging'))).toBe(true);
    const audit = JSON.parse((await cli(['forget', user, '--json'])).stdout);
    expect(audit).toMatchObject({ stagedDeleted: 1, mappingsDeleted: 1, removalsSent: 0 });
    await harness.idle();
    expect(await itemsMentioning(user)).toEqual([]);
  });
});

describe('a forgotten user whose browser still has the cookie', () => {
  it('gets no mapping back: the replayed callback is refused user_forgotten on every sighting path', async () => {
    const user = 'forget-me-00000005';
    /** The seed's static-token callback of platform 99999, as the partner redirects the browser. */
    const callback = (cookie: string) =>
      fetch(`${harness.stack.apiUrl}/uid?userid=partner-of-forgotten&pl=${BATCH_PLATFORM}&plsec=verysecure`, {
        headers: { cookie },
        redirect: 'manual',
      });
    const first = await callback(`dmp_uid=${user}`);
    expect(first.headers.get('x-dmp-reason')).toBeNull();
    // The browser's sync cookie after it: replayed, it makes the store read first ('unchanged').
    const synced = first.headers
      .getSetCookie()
      .map((cookie) => cookie.split(';')[0]!)
      .find((cookie) => cookie.startsWith('dmp_ss='));
    expect(synced).toBeDefined();
    const mappings = async () => JSON.parse((await cli(['mappings', user, '--json'])).stdout);
    expect((await mappings()).mappings).toHaveLength(1);

    expect((await cli(['forget', user, '--json'])).stderr).toBe('');
    await harness.idle();

    // No sync cookie (the creating put), the one it had (a read), one from long ago (a refresh),
    // one naming another partner id (the change first).
    const otherId = partnerIdDigest(BATCH_PLATFORM, user, 'another-partner-id');
    const minutes = Math.floor(Date.now() / 60_000).toString(36);
    for (const cookie of [
      `dmp_uid=${user}`,
      `dmp_uid=${user}; ${synced}`,
      `dmp_uid=${user}; dmp_ss=${BATCH_PLATFORM}:1`,
      `dmp_uid=${user}; dmp_ss=${BATCH_PLATFORM}:${minutes}:${otherId}`,
    ]) {
      const replay = await callback(cookie);
      expect([replay.status, replay.headers.get('x-dmp-reason')], cookie).toEqual([451, 'user_forgotten']);
    }
    expect(await mappings()).toMatchObject({ mappings: [], forgotten: true });
    const why = JSON.parse((await cli(['why', user, '--platform', String(BATCH_PLATFORM), '--json'])).stdout);
    expect(why).toMatchObject({ forgotten: true, synced: false, segments: [] });
    // The pixel asks no partner for this browser, and does not renew its cookie.
    const pixel = await fetch(`${harness.stack.apiUrl}/sync`, {
      headers: { cookie: `dmp_uid=${user}` },
      redirect: 'manual',
    });
    expect([pixel.status, pixel.headers.get('x-dmp-reason'), pixel.headers.get('location')]).toEqual([
      451,
      'user_forgotten',
      null,
    ]);
    expect(pixel.headers.getSetCookie().filter((cookie) => cookie.startsWith('dmp_uid='))).toEqual([]);
    await harness.idle();
    expect(await itemsMentioning(user)).toEqual([]);
    expect(await itemsMentioning('partner-of-forgotten')).toEqual([]);
  });
});

describe('a forget marker past its life (DynamoDB TTL deletes it up to days later)', () => {
  it('refuses nothing any more: the browser syncs again, whatever its sync cookie says', async () => {
    const client = new DynamoDBClient({
      endpoint: harness.stack.dynamodbEndpoint,
      region: LOCAL_REGION,
      credentials: LOCAL_CREDENTIALS,
    });
    const store = new DynamoMappingStore(client, MAPPING_TABLE.localName);
    const nowSeconds = Math.floor(Date.now() / 1000);
    const recentlySynced = `dmp_ss=${BATCH_PLATFORM}:${Math.floor(nowSeconds / 60).toString(36)}`;
    // The creating put (no sync cookie), and the read first (a sync cookie of a minute ago).
    for (const [user, extra] of [
      ['expired-marker-0001', ''],
      ['expired-marker-0002', `; ${recentlySynced}`],
    ] as const) {
      await store.putForgetMarkers(user, [BATCH_PLATFORM], nowSeconds - 1);
      const response = await fetch(
        `${harness.stack.apiUrl}/uid?userid=partner-${user}&pl=${BATCH_PLATFORM}&plsec=verysecure`,
        { headers: { cookie: `dmp_uid=${user}${extra}` }, redirect: 'manual' },
      );
      expect(response.headers.get('x-dmp-reason'), user).toBeNull();
      expect(await store.listForUser(user, nowSeconds)).toEqual([
        expect.objectContaining({ platformId: BATCH_PLATFORM, partnerUserId: `partner-${user}` }),
      ]);
    }
    client.destroy();
  });
});

describe('rejection records of a user', () => {
  it('hold the keyed digest, not the id: dmp rejected --user finds them, dmp forget deletes them', async () => {
    const user = 'forget-me-00000006';
    await harness.store.recordRejections([
      {
        id: 'privacy-test#1',
        reason: 'partner_refused',
        detail: 'the partner refused the user',
        platformId: BATCH_PLATFORM,
        segmentId: 'segment-1',
        audienceId: 'aud-rejected',
        dmpUserId: user,
        memberships: 1,
      },
    ]);
    expect(await itemsMentioning(user)).toEqual([]);
    const rejectedOf = async (id: string) =>
      JSON.parse((await cli(['rejected', '--user', id, '--json'])).stdout).rejected;
    expect(await rejectedOf(user)).toEqual([
      expect.objectContaining({ id: 'privacy-test#1', userDigest: userDigest(PRIVACY_KEY, 'local', user) }),
    ]);
    expect(await rejectedOf('forget-me-00000007')).toEqual([]);
    // A record of the previous layout, which named the id (kept 14 days at most): forgotten too.
    const client = new DynamoDBClient({
      endpoint: harness.stack.dynamodbEndpoint,
      region: LOCAL_REGION,
      credentials: LOCAL_CREDENTIALS,
    });
    await client.send(
      new PutItemCommand({
        TableName: POPULATION_TABLE.localName,
        Item: {
          pk: { S: `rejected#${new Date().toISOString().slice(0, 10)}` },
          sk: { S: 'privacy-test#legacy' },
          reason: { S: 'partner_refused' },
          dmpUserId: { S: user },
          memberships: { N: '1' },
        },
      }),
    );
    client.destroy();

    const audit = JSON.parse((await cli(['forget', user, '--json'])).stdout);
    expect(audit.rejectionsDeleted).toBe(2);
    expect(await rejectedOf(user)).toEqual([]);
    // The audit of the request, found by the user's digest; another user's finds nothing.
    const auditsOf = async (id: string) =>
      JSON.parse((await cli(['forget', 'audit', '--user', id, '--json'])).stdout).audits;
    expect(await auditsOf(user)).toEqual([
      expect.objectContaining({
        source: 'cli',
        digest: userDigest(PRIVACY_KEY, 'local', user),
        rejectionsDeleted: '2',
      }),
    ]);
    expect(await auditsOf('forget-me-00000007')).toEqual([]);
    expect(await itemsMentioning(user)).toEqual([]);
  });
});

describe('/optout', () => {
  it('takes the same path: the partner receives the removal, no trace is left, later events are refused', async () => {
    const user = 'optout-me-00000001';
    await sync(harness, BATCH_PLATFORM, [user]);
    await harness.send(audienceEvent([user], { audience: 'aud-optout' }));
    await harness.idle();
    const segment = await segmentOf(harness, BATCH_PLATFORM, 'aud-optout');
    expect(harness.stack.partner.members(segment)).toContain(partnerIdOf(user));

    const response = await fetch(`${harness.stack.apiUrl}/optout`, {
      method: 'POST',
      headers: { cookie: `dmp_uid=${user}` },
    });
    expect(response.status).toBe(200);
    await harness.idle();

    expect(harness.stack.partner.members(segment)).not.toContain(partnerIdOf(user));
    expect(await itemsMentioning(user)).toEqual([]);
    await harness.send(
      audienceEvent([user], { audience: 'aud-optout', ts: new Date(Date.now() + 1000).toISOString() }),
    );
    await harness.idle();
    expect(harness.stack.partner.members(segment)).not.toContain(partnerIdOf(user));
    expect(await itemsMentioning(user)).toEqual([]);
  });
});

const bytes = (data: string | ArrayBuffer | ArrayBufferView): string | Uint8Array =>
  typeof data === 'string'
    ? data
    : ArrayBuffer.isView(data)
      ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
      : new Uint8Array(data);

/** SHA-256 for the SigV4 signer, from node:crypto. */
class Sha256 {
  private readonly hash;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.hash = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret));
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.hash.update(bytes(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }
}

/** A POST signed as the DMP's back end signs it (SigV4, service execute-api). */
async function signedPost(url: string, body: string, sign = true): Promise<Response> {
  const target = new URL(url);
  const request = {
    method: 'POST',
    protocol: target.protocol,
    hostname: target.hostname,
    ...(target.port ? { port: Number(target.port) } : {}),
    path: target.pathname,
    headers: { host: target.host, 'content-type': 'application/json' },
    body,
  };
  const signed = sign
    ? await new SignatureV4({
        service: 'execute-api',
        region: LOCAL_REGION,
        credentials: LOCAL_CREDENTIALS,
        sha256: Sha256,
      }).sign(request)
    : request;
  return fetch(url, { method: 'POST', headers: signed.headers as Record<string, string>, body });
}

describe('POST /privacy/forget (IAM-authorized)', () => {
  it('refuses an unsigned call and a malformed body, and forgets the user of a signed one', async () => {
    const user = 'api-forget-00000001';
    await sync(harness, BATCH_PLATFORM, [user]);
    await harness.send(audienceEvent([user], { audience: 'aud-api-forget' }));
    await harness.idle();
    const segment = await segmentOf(harness, BATCH_PLATFORM, 'aud-api-forget');
    const url = `${harness.stack.apiUrl}/privacy/forget`;

    const unsigned = await signedPost(url, JSON.stringify({ dmpUserId: user }), false);
    expect(unsigned.status).toBe(403);
    const malformed = await signedPost(url, JSON.stringify({ dmpUserId: 'no' }));
    expect(malformed.status).toBe(400);
    expect(await malformed.json()).toMatchObject({ error: 'request_invalid' });
    expect(harness.stack.partner.members(segment)).toContain(partnerIdOf(user));

    const response = await signedPost(url, JSON.stringify({ dmpUserId: user }));
    expect(response.status).toBe(200);
    const audit = await response.json();
    expect(audit).toMatchObject({ source: 'api', removalsSent: 1, mappingsDeleted: 1 });
    expect(JSON.stringify(audit)).not.toContain(user);
    await harness.idle();
    expect(harness.stack.partner.members(segment)).not.toContain(partnerIdOf(user));
    expect(await itemsMentioning(user)).toEqual([]);
  });
});

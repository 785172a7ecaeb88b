import { describe, expect, it } from 'vitest';
import {
  callbackEvent,
  DMP_USER,
  FixedSecrets,
  InMemoryMappingStore,
  localConfig,
  NO_METRICS,
  NOW_SECONDS,
} from '../../bench/fixtures.ts';
import type { EnvironmentConfig, SyncSettings } from '../../src/config/schema.ts';
import { toSyncRequest } from '../../src/sync/http.ts';
import type { MappingStore } from '../../src/sync/mapping-store.ts';
import { type SyncResponse, UserSyncService } from '../../src/sync/service.ts';

/**
 * The user-sync service with the in-memory store (the same pure write decision as DynamoDB's):
 * what the static token may and may not do, appending partners, the opt-out cookie and a failing
 * opt-out. Over HTTP and dynalite, the same paths are in test/integration.
 */

const HOUR = 3600;

function config(sync: Partial<SyncSettings> = {}): EnvironmentConfig {
  const base = localConfig();
  return {
    ...base,
    platforms: base.platforms.map((platform) =>
      platform.id === 99999 && platform.sync
        ? { ...platform, sync: { ...platform.sync, ...sync } }
        : platform,
    ),
  };
}

function service(options: { sync?: Partial<SyncSettings>; store?: MappingStore; now?: () => number } = {}) {
  const store = options.store ?? new InMemoryMappingStore();
  return {
    store,
    service: new UserSyncService({
      config: config(options.sync),
      store,
      secrets: new FixedSecrets(),
      metrics: NO_METRICS,
      now: options.now ?? (() => NOW_SECONDS),
    }),
  };
}

function request(query: string, cookies: string[] = [`dmp_uid=${DMP_USER}`]) {
  return toSyncRequest({ ...callbackEvent(query), cookies });
}

const refusal = (response: SyncResponse) => [response.status, response.reason];

describe('static-token callbacks', () => {
  it('never replace an id a minted-token callback stored', async () => {
    const { service: sync, store } = service();
    // The browser runs our chain: /sync mints a token, the partner fills its id, /uid stores it.
    const started = await sync.sync(request('pl=99999', [`dmp_uid=${DMP_USER}`]));
    expect(started.status).toBe(302);
    const out = new URL(
      new URL(started.location!).searchParams.get('out')!.replace('[[USERID]]', 'real-id-1'),
    );
    expect((await sync.callback(request(out.search.slice(1)))).outcome).toBe('stored');

    const planted = await sync.callback(request('userid=attacker-1&pl=99999&plsec=verysecure'));
    expect(refusal(planted)).toEqual([403, 'static_token_cannot_replace']);
    expect((await store.listForUser(DMP_USER, NOW_SECONDS))[0]?.partnerUserId).toBe('real-id-1');
  });

  it('still store an id for a browser that has none for the platform (the seed)', async () => {
    const { service: sync, store } = service();
    expect((await sync.callback(request('userid=abcdef123&pl=99999&plsec=verysecure'))).outcome).toBe(
      'stored',
    );
    expect((await store.listForUser(DMP_USER, NOW_SECONDS))[0]?.partnerUserId).toBe('abcdef123');
  });

  it('change an id at most once per minChangeIntervalHours', async () => {
    let now = NOW_SECONDS;
    const { service: sync } = service({ now: () => now });
    const callback = (id: string) => sync.callback(request(`userid=${id}&pl=99999&plsec=verysecure`));
    expect((await callback('first-id-1')).outcome).toBe('stored');
    now += HOUR;
    expect(refusal(await callback('second-id-2'))).toEqual([403, 'static_token_rate_limited']);
    now += 24 * HOUR;
    expect((await callback('second-id-2')).outcome).toBe('changed');
  });

  it('are refused without a dmp_uid cookie: no DMP user is minted', async () => {
    const { service: sync } = service();
    const response = await sync.callback(request('userid=abcdef123&pl=99999&plsec=verysecure', []));
    expect(refusal(response)).toEqual([403, 'dmp_user_missing']);
    expect(response.setCookies).toEqual([]);
  });

  it('with requireSyncWithinSeconds: only shortly after a sync we started for this browser', async () => {
    let now = NOW_SECONDS;
    const { service: sync } = service({
      sync: { staticToken: { minChangeIntervalHours: 24, requireSyncWithinSeconds: 300 } },
      now: () => now,
    });
    const seed = 'userid=abcdef123&pl=99999&plsec=verysecure';
    expect(refusal(await sync.callback(request(seed)))).toEqual([403, 'static_token_no_recent_sync']);

    const started = await sync.sync(request('pl=99999'));
    const attempts = started.setCookies.find((cookie) => cookie.startsWith('dmp_sa='))!.split(';')[0]!;
    const cookies = [`dmp_uid=${DMP_USER}`, attempts];
    now += 120;
    expect((await sync.callback(request(seed, cookies))).outcome).toBe('stored');
    now += 3600;
    expect(
      refusal(await sync.callback(request('userid=abcdef999&pl=99999&plsec=verysecure', cookies))),
    ).toEqual([403, 'static_token_no_recent_sync']);
  });
});

describe('a partner that appends its id (userIdPlacement: append)', () => {
  it('gets a callback ending with userid=, and the appended id is stored', async () => {
    const { service: sync, store } = service({ sync: { userIdPlacement: 'append' } });
    const started = await sync.sync(request('pl=99999'));
    const out = new URL(started.location!).searchParams.get('out')!;
    expect(out).toMatch(/&userid=$/);
    expect(out).not.toContain('[[USERID]]');
    const callback = new URL(`${out}appended-id-42`);
    const stored = await sync.callback(request(callback.search.slice(1)));
    expect(stored.outcome).toBe('stored');
    expect((await store.listForUser(DMP_USER, NOW_SECONDS))[0]?.partnerUserId).toBe('appended-id-42');
  });
});

describe('the opt-out', () => {
  it.each([
    ['dmp_optout=0; dmp_optout=1'],
    ['dmp_optout=1; dmp_optout=0'],
    ['dmp_optout="1"'],
    ['dmp_optout=yes'],
  ])('any value of the cookie wins: %s', async (cookie) => {
    const { service: sync } = service();
    const response = await sync.callback(
      request('userid=abcdef123&pl=99999&plsec=verysecure', [`dmp_uid=${DMP_USER}`, cookie]),
    );
    expect(refusal(response)).toEqual([451, 'opted_out']);
    expect((await sync.sync(request('', [cookie]))).outcome).toBe('opted_out');
  });

  it('sets the cookie even when deleting the mappings fails, and keeps dmp_uid for a retry', async () => {
    const store = new InMemoryMappingStore();
    const failing: MappingStore = {
      listForUser: (...args) => store.listForUser(...args),
      recordSighting: (input) => store.recordSighting(input),
      claimReplayGuard: (...args) => store.claimReplayGuard(...args),
      deleteUser: async () => {
        throw new Error('DynamoDB unavailable');
      },
    };
    const { service: sync } = service({ store: failing });
    const response = await sync.optOut(request(''));
    expect(refusal(response)).toEqual([503, 'optout_incomplete']);
    expect(response.setCookies).toEqual([expect.stringMatching(/^dmp_optout=1; /)]);
    expect(response.setCookies.some((cookie) => cookie.startsWith('dmp_uid='))).toBe(false);
  });
});

import { describe, expect, it } from 'vitest';
import {
  callbackEvent,
  DMP_USER,
  FixedSecrets,
  InMemoryMappingStore,
  localConfig,
  NO_METRICS,
  NOW_SECONDS,
  SIGNING_KID,
  SIGNING_SECRET,
  STATIC_SIGNING_SECRET,
} from '../../bench/fixtures.ts';
import type { EnvironmentConfig, SyncSettings } from '../../src/config/schema.ts';
import { parseCookies, parseSyncedMappings, partnerIdDigest } from '../../src/sync/cookies.ts';
import { toSyncRequest } from '../../src/sync/http.ts';
import type { MappingStore, SightingInput } from '../../src/sync/mapping-store.ts';
import { type SyncResponse, UserSyncService } from '../../src/sync/service.ts';
import { signSyncCallback } from '../../src/sync/signature.ts';

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

/** The in-memory store, recording what each sighting guessed and each replay guard claimed. */
function recordingStore() {
  const store = new InMemoryMappingStore();
  const guesses: SightingInput['expected'][] = [];
  const guards: string[] = [];
  const recording: MappingStore = {
    listForUser: (...args) => store.listForUser(...args),
    deleteUser: (...args) => store.deleteUser(...args),
    recordSighting: (input) => {
      guesses.push(input.expected);
      return store.recordSighting(input);
    },
    claimReplayGuard: (platformId, digest, until) => {
      guards.push(`${platformId}:${digest}`);
      return store.claimReplayGuard(platformId, digest, until);
    },
  };
  return { store, recording, guesses, guards };
}

/** The `dmp_ss` cookie a response sets, as a browser would send it back. */
const syncedCookieOf = (response: SyncResponse) =>
  response.setCookies.find((cookie) => cookie.startsWith('dmp_ss='))!.split(';')[0]!;

describe('dmp_ss: the partner id digest chooses the first write', () => {
  it("a callback records its id's digest; another id is then tried as a change first", async () => {
    let now = NOW_SECONDS;
    const { recording, guesses, store } = recordingStore();
    const { service: sync } = service({ store: recording, now: () => now });
    const started = await sync.sync(request('pl=99999'));
    const out = new URL(started.location!).searchParams.get('out')!;
    const minted = (id: string) => request(new URL(out.replace('[[USERID]]', id)).search.slice(1));

    const first = await sync.callback(minted('first-id-1'));
    expect(first.outcome).toBe('stored');
    const cookie = syncedCookieOf(first);
    expect(parseSyncedMappings(parseCookies([cookie]).get('dmp_ss'))).toEqual(
      new Map([
        [99999, { atSeconds: NOW_SECONDS, idDigest: partnerIdDigest(99999, DMP_USER, 'first-id-1') }],
      ]),
    );
    expect(cookie).not.toContain('first-id-1');
    expect(cookie).not.toContain(DMP_USER);

    now += 60;
    const withCookie = (id: string) => {
      const base = minted(id);
      return { ...base, cookies: parseCookies([`dmp_uid=${DMP_USER}`, cookie]) };
    };
    // The same id inside the interval: a repeat (a read); another id: a change, at once.
    expect((await sync.callback(withCookie('first-id-1'))).outcome).toBe('unchanged');
    expect((await sync.callback(withCookie('second-id-2'))).outcome).toBe('changed');
    expect(guesses).toEqual(['new', 'unchanged', 'changed']);
    expect((await store.listForUser(DMP_USER, now))[0]).toMatchObject({
      partnerUserId: 'second-id-2',
      previousPartnerUserId: 'first-id-1',
    });
  });

  it('an old cookie without digests: the guess falls back on time alone (a read, then the change)', async () => {
    const { recording, guesses } = recordingStore();
    const { service: sync } = service({ store: recording, now: () => NOW_SECONDS + 25 * HOUR });
    await service({ store: recording }).service.callback(
      request('userid=first-id-1&pl=99999&plsec=verysecure'),
    );
    const old = `dmp_ss=99999:${Math.floor(NOW_SECONDS / 60).toString(36)}`;
    const changed = await sync.callback(
      request('userid=second-id-2&pl=99999&plsec=verysecure', [`dmp_uid=${DMP_USER}`, old]),
    );
    expect(changed.outcome).toBe('changed');
    expect(guesses).toEqual(['new', 'unchanged']);
    // The cookie it answers with has the digest.
    expect(parseSyncedMappings(parseCookies([syncedCookieOf(changed)]).get('dmp_ss')).get(99999)).toEqual({
      atSeconds: NOW_SECONDS + 25 * HOUR,
      idDigest: partnerIdDigest(99999, DMP_USER, 'second-id-2'),
    });
  });

  it("/sync writes the digest of each stored mapping's id", async () => {
    const { recording } = recordingStore();
    const { service: sync } = service({ store: recording });
    await sync.callback(request('userid=abcdef123&pl=99999&plsec=verysecure'));
    const pixel = await sync.sync(request(''));
    expect(parseSyncedMappings(parseCookies([syncedCookieOf(pixel)]).get('dmp_ss'))).toEqual(
      new Map([[99999, { atSeconds: NOW_SECONDS, idDigest: partnerIdDigest(99999, DMP_USER, 'abcdef123') }]]),
    );
  });
});

describe('signed callbacks and the replay guard', () => {
  const signature = (fields: { pl: string; userid: string; plsec: string }, secret: string) => {
    const ts = String(NOW_SECONDS);
    const sig = signSyncCallback({ ...fields, ts, kid: SIGNING_KID }, secret, 'sha1');
    return `&ts=${ts}&kid=${SIGNING_KID}&sig=${sig}`;
  };

  it('static token + signature: the guard is claimed, and the same callback again is refused replayed', async () => {
    const { recording, guards } = recordingStore();
    const { service: sync } = service({ store: recording });
    const query = `userid=signed-static-1&pl=99999&plsec=verysecure${signature(
      { pl: '99999', userid: 'signed-static-1', plsec: 'verysecure' },
      STATIC_SIGNING_SECRET,
    )}`;
    expect((await sync.callback(request(query))).outcome).toBe('stored');
    expect(guards).toHaveLength(1);
    // From this browser or any other DMP user's: the signature binds the id to no browser.
    expect(refusal(await sync.callback(request(query)))).toEqual([403, 'replayed']);
    expect(refusal(await sync.callback(request(query, ['dmp_uid=Qm9iQm9iQm9iQm9iQm9iQw'])))).toEqual([
      403,
      'replayed',
    ]);
  });

  it('minted token + signature: no guard; replayed here it repeats the sighting, elsewhere the token refuses', async () => {
    const { recording, guards, store } = recordingStore();
    const { service: sync } = service({ store: recording });
    const started = await sync.sync(request('pl=88888'));
    const out = new URL(
      new URL(started.location!).searchParams.get('out')!.replace('[[USERID]]', 'signed-minted-1'),
    );
    const plsec = out.searchParams.get('plsec')!;
    const query = `${out.search.slice(1)}${signature({ pl: '88888', userid: 'signed-minted-1', plsec }, SIGNING_SECRET)}`;
    expect((await sync.callback(request(query))).outcome).toBe('stored');
    expect((await sync.callback(request(query))).outcome).toBe('unchanged');
    expect(refusal(await sync.callback(request(query, ['dmp_uid=Qm9iQm9iQm9iQm9iQm9iQw'])))).toEqual([
      403,
      'token_mismatch',
    ]);
    expect(guards).toEqual([]);
    expect(await store.listForUser('Qm9iQm9iQm9iQm9iQm9iQw', NOW_SECONDS)).toEqual([]);
  });
});

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadEnvironmentFile, parseEnvironment } from '../../src/config/load.ts';
import { DEFAULT_USER_ID_MACRO, isLoopbackHost } from '../../src/config/schema.ts';

const ENVIRONMENTS_DIR = new URL('../../config/environments/', import.meta.url).pathname;

const SEED_TEMPLATE = 'https://api.third-party.com/sync?out={out}&gdpr={gdpr}&gdpr_consent={gdpr_consent}';

function environment(overrides: Record<string, unknown> = {}, platform: Record<string, unknown> = {}) {
  return {
    name: 'test',
    platforms: [{ id: 99999, name: 'Seed partner', sync: { urlTemplate: SEED_TEMPLATE }, ...platform }],
    ...overrides,
  };
}

function problemsOf(document: unknown): string[] {
  try {
    parseEnvironment(document, 'test.json');
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  throw new Error('expected the configuration to be refused');
}

function withSync(sync: Record<string, unknown>) {
  return environment({}, { sync: { urlTemplate: SEED_TEMPLATE, ...sync } });
}

describe('config/environments/*.json', () => {
  const files = readdirSync(ENVIRONMENTS_DIR).filter((file) => file.endsWith('.json'));

  it('has the dev, local and prod environments', () => {
    expect(files).toEqual(expect.arrayContaining(['dev.json', 'local.json', 'prod.json']));
  });

  it.each(files)('%s validates and its name matches the file name', (file) => {
    const config = loadEnvironmentFile(join(ENVIRONMENTS_DIR, file));
    expect(`${config.name}.json`).toBe(file);
  });

  it('integrates the seed partner (platform 99999) where it can be tried (local, dev), not in prod', () => {
    for (const file of ['local.json', 'dev.json']) {
      const config = loadEnvironmentFile(join(ENVIRONMENTS_DIR, file));
      const seed = config.platforms.find((platform) => platform.id === 99999);
      expect(seed?.sync?.urlTemplate, file).toContain('{out}');
      expect(seed?.sync?.userIdMacro, file).toBe('[[USERID]]');
    }
  });

  it('prod ships no example partner: its platforms are added when real', () => {
    expect(loadEnvironmentFile(join(ENVIRONMENTS_DIR, 'prod.json')).platforms).toEqual([]);
  });

  it('prod assumes GDPR applies when a request carries no gdpr signal', () => {
    const prod = loadEnvironmentFile(join(ENVIRONMENTS_DIR, 'prod.json'));
    expect(prod.userSync.consent.gdprAppliesWhenUnknown).toBe(true);
    expect(prod.retainData).toBe(true);
  });
});

describe('parseEnvironment defaults', () => {
  it('fills in the documented sync defaults', () => {
    const config = parseEnvironment(environment(), 'test.json');
    const sync = config.platforms[0]?.sync;
    expect(sync).toMatchObject({
      enabled: true,
      userIdMacro: DEFAULT_USER_ID_MACRO,
      resyncAfterDays: 7,
      resyncJitter: 0.1,
      retryAfterAttemptHours: 24,
      mappingTtlDays: 90,
      acceptStaticToken: true,
      mintedTokenMaxAgeSeconds: 3600,
      signature: { required: false, algorithm: 'sha1', maxSkewSeconds: 300 },
      maxUserIdLength: 256,
      sentinelUserIds: [],
    });
    expect(DEFAULT_USER_ID_MACRO).toBe('[[USERID]]');
  });

  it('fills in user-sync, consent and API defaults', () => {
    const config = parseEnvironment(environment(), 'test.json');
    expect(config.deploy).toBe(true);
    expect(config.retainData).toBe(true);
    expect(config.userSync).toMatchObject({
      cookieMaxAgeDays: 395,
      maxRedirectsPerChain: 5,
      consent: { gdprAppliesWhenUnknown: false, honourGlobalPrivacyControl: true },
    });
    expect(config.api).toEqual({
      throttlingRateLimit: 1000,
      throttlingBurstLimit: 2000,
      corsAllowOrigins: [],
    });
  });

  it('accepts a platform without sync settings (segments only)', () => {
    const config = parseEnvironment(environment({}, { sync: undefined }), 'test.json');
    expect(config.platforms[0]?.sync).toBeUndefined();
  });
});

describe('parseEnvironment refusals name the field', () => {
  it('names the source in the message and lists every problem', () => {
    const document = environment({ name: 'Bad Name', logRetentionDays: 0 });
    let caught: unknown;
    try {
      parseEnvironment(document, 'config/environments/bad.json');
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    const error = caught as ConfigError;
    expect(error.name).toBe('ConfigError');
    expect(error.source).toBe('config/environments/bad.json');
    expect(error.message).toMatch(/^config\/environments\/bad\.json: invalid configuration/);
    expect(error.problems.some((problem) => problem.startsWith('name: '))).toBe(true);
    expect(error.problems.some((problem) => problem.startsWith('logRetentionDays: '))).toBe(true);
    for (const problem of error.problems) expect(error.message).toContain(problem);
  });

  it('refuses an unknown top-level key (a typo) at the root', () => {
    expect(problemsOf(environment({ platfroms: [] }))).toEqual([
      expect.stringMatching(/^\(root\): .*platfroms/),
    ]);
  });

  it('refuses an unknown key inside a platform sync block, naming its path', () => {
    expect(problemsOf(withSync({ resyncAfterDay: 3 }))).toEqual([
      expect.stringMatching(/^platforms\.0\.sync: .*resyncAfterDay/),
    ]);
  });

  it('refuses a duplicate platform id, naming the second occurrence', () => {
    const document = {
      name: 'test',
      platforms: [
        { id: 99999, name: 'A' },
        { id: 88888, name: 'B' },
        { id: 99999, name: 'C' },
      ],
    };
    expect(problemsOf(document)).toEqual(['platforms.2.id: duplicate platform id 99999']);
  });

  it.each([
    [0, 'platforms.0.id'],
    [-1, 'platforms.0.id'],
    [1.5, 'platforms.0.id'],
    [2_147_483_648, 'platforms.0.id'],
  ])('refuses platform id %s', (id, path) => {
    expect(problemsOf(environment({}, { id }))).toEqual([expect.stringMatching(new RegExp(`^${path}: `))]);
  });

  it.each([
    ['resyncAfterDays', 0],
    ['resyncAfterDays', 91],
    ['resyncJitter', 0.6],
    ['mappingTtlDays', 396],
    ['mintedTokenMaxAgeSeconds', 59],
    ['maxUserIdLength', 4],
    ['userIdMacro', ''],
    ['gdprVendorId', 0],
  ])('refuses sync.%s = %s', (field, value) => {
    expect(problemsOf(withSync({ [field]: value }))).toEqual([
      expect.stringMatching(new RegExp(`^platforms\\.0\\.sync\\.${field}: `)),
    ]);
  });

  it('refuses a signature skew outside 30..3600 seconds and an unknown algorithm', () => {
    expect(problemsOf(withSync({ signature: { maxSkewSeconds: 5 } }))).toEqual([
      expect.stringMatching(/^platforms\.0\.sync\.signature\.maxSkewSeconds: /),
    ]);
    expect(problemsOf(withSync({ signature: { algorithm: 'md5' } }))).toEqual([
      expect.stringMatching(/^platforms\.0\.sync\.signature\.algorithm: /),
    ]);
  });

  it('refuses a cookie lifetime beyond the browsers 400-day cap', () => {
    expect(problemsOf(environment({ userSync: { cookieMaxAgeDays: 401 } }))).toEqual([
      expect.stringMatching(/^userSync\.cookieMaxAgeDays: /),
    ]);
  });

  it('refuses an AWS account id that is not 12 digits', () => {
    expect(problemsOf(environment({ aws: { account: '1234' } }))).toEqual([
      expect.stringMatching(/^aws\.account: /),
    ]);
  });

  it('refuses a document that is not an object', () => {
    expect(problemsOf(null)).toEqual([expect.stringMatching(/^\(root\): /)]);
  });
});

describe('sync urlTemplate', () => {
  const templateProblems = (urlTemplate: string) =>
    problemsOf(withSync({ urlTemplate })).filter((problem) =>
      problem.startsWith('platforms.0.sync.urlTemplate'),
    );

  it.each([
    'https://api.third-party.com/sync?out={out}',
    'https://api.third-party.com/sync?out={out}&gdpr={gdpr}&gdpr_consent={gdpr_consent}&gpp={gpp}&gpp_sid={gpp_sid}&us_privacy={us_privacy}',
    'https://api.third-party.com:8443/cookie/{out}',
    'http://127.0.0.1:3001/sync?out={out}',
    'http://localhost:3001/sync?out={out}',
    'http://[::1]:3001/sync?out={out}',
  ])('accepts %s', (urlTemplate) => {
    const config = parseEnvironment(withSync({ urlTemplate }), 'test.json');
    expect(config.platforms[0]?.sync?.urlTemplate).toBe(urlTemplate);
  });

  it.each([
    ['no {out}', 'https://api.third-party.com/sync?uid=1', /\{out\} placeholder exactly once/],
    ['{out} twice', 'https://api.third-party.com/sync?out={out}&back={out}', /exactly once/],
    ['plain http to a public host', 'http://api.third-party.com/sync?out={out}', /https/],
    [
      'http to a host that merely starts with localhost',
      'http://localhost.evil.example/s?out={out}',
      /https/,
    ],
    ['a relative URL', '/sync?out={out}', /https/],
    ['another scheme', 'javascript:alert(1)//{out}', /https/],
    ['a placeholder as the host', 'https://{gdpr}/sync?out={out}', /scheme or host/],
    ['a placeholder inside the host', 'https://api.{gdpr}.com/sync?out={out}', /scheme or host/],
    ['a placeholder in the userinfo', 'https://api.third-party.com@{gdpr}/sync?out={out}', /scheme or host/],
    ['a placeholder as the port', 'https://api.third-party.com:{gdpr}/sync?out={out}', /scheme or host/],
  ])('refuses %s', (_, urlTemplate, message) => {
    const problems = templateProblems(urlTemplate);
    expect(problems.length).toBeGreaterThan(0);
    expect(problems.join('\n')).toMatch(message);
  });

  // URL parsing treats the scheme case-insensitively and `https:/host` as `https://host`, so the
  // host can still be a placeholder in these spellings; the schema promises to refuse that.
  it.each(['HTTPS://{gdpr}/sync?out={out}', 'https:/{gdpr}/sync?out={out}', 'https:{gdpr}/sync?out={out}'])(
    'refuses a placeholder host however the scheme is spelled: %s',
    (urlTemplate) => {
      expect(templateProblems(urlTemplate).join('\n')).toMatch(/scheme or host/);
    },
  );
});

describe('isLoopbackHost', () => {
  it.each(['127.0.0.1', 'localhost', '::1', '[::1]'])('%s is loopback', (host) => {
    expect(isLoopbackHost(host)).toBe(true);
  });
  it.each(['127.0.0.2.example', 'localhost.example', 'example.com', '0.0.0.0'])('%s is not', (host) => {
    expect(isLoopbackHost(host)).toBe(false);
  });
});

describe('user-sync hardening options', () => {
  it('defaults: strict id alphabet, macro placement, static token changes once a day, no sync window', () => {
    const sync = parseEnvironment(withSync({}), 'test.json').platforms[0]!.sync!;
    expect(sync).toMatchObject({
      userIdExtraCharacters: '',
      userIdPlacement: 'macro',
      staticToken: { minChangeIntervalHours: 24 },
    });
    expect(sync.staticToken.requireSyncWithinSeconds).toBeUndefined();
  });

  it('lets a platform add + / = to the id alphabet, never a comma, semicolon or tab', () => {
    expect(
      parseEnvironment(withSync({ userIdExtraCharacters: '+/=' }), 'test.json').platforms[0]?.sync,
    ).toMatchObject({ userIdExtraCharacters: '+/=' });
    for (const extra of [',', ';', '\t', 'a', ' ']) {
      expect(problemsOf(withSync({ userIdExtraCharacters: extra })).join('\n')).toContain(
        'userIdExtraCharacters',
      );
    }
  });

  it('takes an appending placement and a sync window of 60 s to a day', () => {
    const sync = parseEnvironment(
      withSync({ userIdPlacement: 'append', staticToken: { requireSyncWithinSeconds: 300 } }),
      'test.json',
    ).platforms[0]!.sync!;
    expect(sync.userIdPlacement).toBe('append');
    expect(sync.staticToken).toEqual({ minChangeIntervalHours: 24, requireSyncWithinSeconds: 300 });
    expect(problemsOf(withSync({ staticToken: { requireSyncWithinSeconds: 5 } })).join('\n')).toContain(
      'requireSyncWithinSeconds',
    );
  });

  it('takes a fixed list of hosts for callback URLs', () => {
    const env = parseEnvironment(
      environment({ userSync: { allowedHosts: ['sync.dmp.example'] } }),
      'test.json',
    );
    expect(env.userSync.allowedHosts).toEqual(['sync.dmp.example']);
    expect(problemsOf(environment({ userSync: { allowedHosts: ['https://x/'] } })).join('\n')).toContain(
      'allowedHosts',
    );
  });
});

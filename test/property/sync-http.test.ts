import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCAL_CREDENTIALS, LOCAL_REGION, type LocalStack, startLocalStack } from '../../local/stack.ts';
import { MAPPING_TABLE } from '../../src/infra/resources.ts';
import { validatePartnerUserId } from '../../src/sync/user-ids.ts';
import { GPP_SID, gppString, tcString } from '../support/consent-strings.ts';
import { countItems } from '../support/dynamodb.ts';
import { quietLambdaOutput } from '../support/local-stack.ts';

/**
 * Property tests of the user-sync endpoints over real HTTP, against the local stack (the real
 * handler behind the local API Gateway, dynalite, the reference partner): arbitrary query strings
 * and cookies, sent to /sync and /uid without following redirects. Whatever arrives:
 *
 * (a) never a 5xx (a 5xx means our infrastructure failed, never bad input);
 * (b) a Location header only ever points at the configured partner's origin;
 * (c) /uid without a valid token stores nothing;
 * (d) every 4xx names its reason in `x-dmp-reason`;
 * plus: every answer is `Cache-Control: no-store`, a repeated or oversized parameter is refused
 * whatever its name, and a valid partner id reads back exactly, however it was percent-encoded.
 *
 * Runs are bounded and seeded (FC_SEED / FC_NUM_RUNS override them for a longer hunt).
 */

const SEED = Number(process.env['FC_SEED'] ?? 20_260_528);
const NUM_RUNS = Number(process.env['FC_NUM_RUNS'] ?? 150);
const PROPERTY_TIMEOUT_MS = 120_000;

/** From config/local-secrets.json, config/environments/local.json and config/platforms/local/. */
const STATIC_TOKEN = 'verysecure';
const STATIC_PLATFORM = '99999';
const SIGNED_PLATFORM = '88888';
const HOST_VENDOR_ID = 1234;
const PARTNER_VENDOR_ID = 4321;

/** What /sync and /uid read (src/sync/service.ts), plus redirect-looking names they must ignore. */
const PARAM_NAMES = [
  'userid',
  'pl',
  'plsec',
  'ts',
  'kid',
  'sig',
  'hop',
  'last',
  'gdpr',
  'gdpr_consent',
  'us_privacy',
  'gpp',
  'gpp_sid',
  'debug',
  'out',
  'redirect',
] as const;
const COOKIE_NAMES = ['dmp_uid', 'dmp_optout', 'dmp_sa'] as const;

/** Accepted partner id characters (docs/user-sync.md, "The partner's user id"). */
/** The strict default alphabet of partner ids (src/sync/user-ids.ts). */
const PARTNER_ID_CHARS = [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789', ...'._~-'];
const DEFAULT_ID_RULES = { maxUserIdLength: 256, userIdMacro: '[[USERID]]', sentinelUserIds: [] };
/** Documented "no id" values, compared case-insensitively (plus all-zero ids). */
const SENTINELS = new Set([
  '0',
  '-1',
  'null',
  'undefined',
  'nil',
  'none',
  'nan',
  'false',
  'true',
  'unknown',
  'optout',
  'opt-out',
  'opt_out',
  '00000000-0000-0000-0000-000000000000',
]);
const isSentinel = (id: string) => SENTINELS.has(id.toLowerCase()) || /^0+$/.test(id);

/** Longest value of a parameter the handler does not read (src/sync/service.ts). */
const MAX_UNLISTED_PARAM_LENGTH = 4096;
/**
 * API Gateway refuses a request line plus headers over 10 KiB itself (and node, standing in for
 * it, over 16 KiB); the handler never sees those. Stay inside: a query, and a Cookie header as
 * large as a browser sends (4 KiB).
 */
const MAX_QUERY_LENGTH = 6_000;
const MAX_COOKIE_HEADER_LENGTH = 4_096;
const PRINTABLE_ASCII = Array.from({ length: 95 }, (_, index) => String.fromCharCode(32 + index));

interface Answer {
  readonly status: number;
  readonly headers: Headers;
  /** The URL requested, long runs of one character shortened (`a{4097}`), for messages. */
  readonly url: string;
}

/** Values that make a query string reach deep into the handler: ids, tokens, consent strings. */
interface Samples {
  readonly foreignMintedTokens: readonly string[];
  readonly now: string;
}

function hex(byte: number, upper: boolean): string {
  const text = byte.toString(16).padStart(2, '0');
  return `%${upper ? text.toUpperCase() : text}`;
}

/** Real consent strings, encoded offline: granted, purpose 1 refused, vendor missing, US opt-outs. */
const TC_STRINGS = [
  tcString({ purposes: [1], vendors: [HOST_VENDOR_ID, PARTNER_VENDOR_ID] }),
  tcString({ purposes: [2, 3], vendors: [HOST_VENDOR_ID, PARTNER_VENDOR_ID] }),
  tcString({ purposes: [1], vendors: [HOST_VENDOR_ID] }),
];
const GPP_STRINGS = [
  gppString({ tcfeuv2: { purposes: [1], vendors: [HOST_VENDOR_ID, PARTNER_VENDOR_ID] } }),
  gppString({ tcfeuv2: { purposes: [2], vendors: [HOST_VENDOR_ID] } }),
  gppString({ uspv1: { notice: 'Y', optOutSale: 'Y', lspaCovered: 'N' } }),
  gppString({ uspv1: { notice: 'Y', optOutSale: 'N', lspaCovered: 'N' } }),
  gppString({ usnat: { saleOptOut: 2 } }),
  gppString({ usnat: { targetedAdvertisingOptOut: 1 } }),
];

/** Per parameter, values a partner or a CMP could plausibly send (and near misses). */
function plausibleValues(samples: Samples): Record<(typeof PARAM_NAMES)[number], string[]> {
  const now = Number(samples.now);
  return {
    userid: ['abcdef123', 'a-b_c', 'AbC+/=', 'null', '0', '[[USERID]]', '%5B%5BUSERID%5D%5D', `\${UID}`, ''],
    pl: [STATIC_PLATFORM, SIGNED_PLATFORM, '099999', '+99999', '99999.0', '2147483648', '12345', '0', ''],
    plsec: [
      STATIC_TOKEN,
      'VERYSECURE',
      'verysecure ',
      'verysecur',
      'm1.local1.abc.defghi.0123456789012345678901',
      'm1.',
      ...samples.foreignMintedTokens,
    ],
    ts: [samples.now, String(now - 301), String(now + 301), '0', '-1', '1e9', ''],
    kid: ['k1', 'k2', 'K1', '', 'k1 '],
    sig: ['0'.repeat(40), 'a'.repeat(40), 'A'.repeat(27), 'A'.repeat(43), 'f'.repeat(64), ''],
    hop: ['1', '2', '4', '5', '0', '-1', '9', 'x', ''],
    last: ['1', '0', 'true', ''],
    gdpr: ['0', '1', '2', 'true', ''],
    gdpr_consent: [...TC_STRINGS, `${TC_STRINGS[0]!.slice(0, -3)}`, 'CAAAAAAAAA', ''],
    us_privacy: ['1YYN', '1NNN', '1---', '1nyn', '1YN', '2NNN', ''],
    gpp: [...GPP_STRINGS, 'DBAA', 'DBABM~', ''],
    gpp_sid: [
      String(GPP_SID.tcfeuv2),
      String(GPP_SID.uspv1),
      String(GPP_SID.usnat),
      `${GPP_SID.tcfeuv2},${GPP_SID.uspv1}`,
      '7_6',
      '99',
      '-1',
      '',
    ],
    debug: ['0', '1', 'true', ''],
    out: ['https://evil.example/steal', '//evil.example', 'javascript:alert(1)', 'http://127.0.0.1:1/x'],
    redirect: ['https://evil.example/', '/\\evil.example', 'http://localhost/'],
  };
}

function valueArbitrary(samples: Samples): fc.Arbitrary<string> {
  const known = fc.constantFrom(...Object.values(plausibleValues(samples)).flat());
  const base64url = [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'];
  // A real consent string with a few characters changed or cut: the IAB decoders' edge cases.
  const mutatedConsent = fc
    .tuple(
      fc.constantFrom(...TC_STRINGS, ...GPP_STRINGS),
      fc.array(fc.tuple(fc.nat(), fc.constantFrom(...base64url, '.', '~')), { maxLength: 4 }),
      fc.nat(),
    )
    .map(([value, edits, cut]) => {
      const chars = [...value];
      for (const [at, char] of edits) chars[at % chars.length] = char;
      return chars.slice(0, chars.length - (cut % chars.length)).join('');
    });
  const percentJunk = fc
    .array(
      fc.oneof(
        fc.tuple(fc.integer({ min: 0, max: 255 }), fc.boolean()).map(([byte, upper]) => hex(byte, upper)),
        fc.constantFrom(
          '%',
          '%G0',
          '%4',
          '%%',
          '%E2%82',
          '%C0%AF',
          '%ED%A0%80',
          '%F4%90%80%80',
          '+',
          '%2B',
          '&',
          '=',
        ),
        fc.constantFrom('a', '9', '.', '-'),
      ),
      { maxLength: 16 },
    )
    .map((parts) => parts.join(''));
  const boundary = fc
    .tuple(
      fc.constantFrom(1, 2, 3, 10, 11, 12, 13, 32, 33, 128, 129, 256, 257, 4096, 4097),
      fc.constantFrom('9', 'x', 'a', '0', '~'),
    )
    .map(([length, char]) => char.repeat(length));
  const oversized = fc
    .tuple(fc.integer({ min: 257, max: 4_300 }), fc.constantFrom('a', '1', 'Z', '-', '.'))
    .map(([length, char]) => char.repeat(length));
  return fc.oneof(
    { weight: 6, arbitrary: known.map(encodeURIComponent) },
    { weight: 2, arbitrary: known },
    { weight: 2, arbitrary: mutatedConsent.map(encodeURIComponent) },
    { weight: 3, arbitrary: fc.string({ unit: 'grapheme', maxLength: 24 }).map(encodeURIComponent) },
    { weight: 3, arbitrary: fc.string({ unit: 'binary-ascii', maxLength: 24 }) },
    { weight: 2, arbitrary: percentJunk },
    { weight: 1, arbitrary: boundary },
    { weight: 1, arbitrary: oversized },
  );
}

/** Mostly a value plausible for that parameter, sometimes anything at all. */
function paramValueArbitrary(samples: Samples, name: (typeof PARAM_NAMES)[number]): fc.Arbitrary<string> {
  const plausible = plausibleValues(samples)[name];
  return fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...plausible).map(encodeURIComponent) },
    { weight: 1, arbitrary: valueArbitrary(samples) },
  );
}

/** A raw query string (what goes after `?`): known and arbitrary names, repeats, odd separators. */
function queryArbitrary(samples: Samples): fc.Arbitrary<string> {
  const knownName = fc.constantFrom(...PARAM_NAMES);
  const otherName = fc.oneof(
    fc.constantFrom('USERID', 'pl ', 'p%6C', '__proto__', 'constructor', 'toString'),
    fc.string({ unit: 'grapheme-ascii', maxLength: 8 }).map(encodeURIComponent),
  );
  const pair = fc.oneof(
    {
      weight: 16,
      arbitrary: knownName.chain((name) =>
        paramValueArbitrary(samples, name).map((text) => `${name}=${text}`),
      ),
    },
    { weight: 2, arbitrary: fc.tuple(otherName, valueArbitrary(samples)).map(([n, v]) => `${n}=${v}`) },
    { weight: 1, arbitrary: fc.oneof(knownName, otherName) },
    { weight: 1, arbitrary: fc.constantFrom('', '=', '&', '=x') },
  );
  return fc
    .array(pair, { maxLength: 8 })
    .map((pairs) => pairs.join('&'))
    .filter((query) => query.length <= MAX_QUERY_LENGTH);
}

/**
 * A plausible callback: a partner id, a platform, a token, often a signature-shaped ts/kid/sig,
 * other parameters once each and now and then a repeated one, in a shuffled order.
 */
function callbackArbitrary(samples: Samples, plsec: fc.Arbitrary<string>): fc.Arbitrary<string> {
  const hexDigits = [...'0123456789abcdef'];
  const signature = fc.record({
    ts: paramValueArbitrary(samples, 'ts'),
    kid: paramValueArbitrary(samples, 'kid'),
    sig: fc.oneof(
      fc.string({ unit: fc.constantFrom(...hexDigits), minLength: 40, maxLength: 40 }),
      fc.string({ unit: fc.constantFrom(...hexDigits), minLength: 64, maxLength: 64 }),
      fc.base64String({ minLength: 28, maxLength: 28 }).map((text) => encodeURIComponent(text.slice(0, 27))),
      paramValueArbitrary(samples, 'sig'),
    ),
  });
  const others = PARAM_NAMES.filter((name) => !['userid', 'pl', 'plsec', 'ts', 'kid', 'sig'].includes(name));
  const named = (names: readonly (typeof PARAM_NAMES)[number][]) =>
    fc
      .constantFrom(...names)
      .chain((name) => paramValueArbitrary(samples, name).map((text) => [name, text] as const));
  return fc
    .record({
      userid: fc.oneof(partnerIdArbitrary().map(encodeURIComponent), paramValueArbitrary(samples, 'userid')),
      pl: fc.oneof(
        { weight: 4, arbitrary: fc.constantFrom(STATIC_PLATFORM, SIGNED_PLATFORM) },
        { weight: 1, arbitrary: paramValueArbitrary(samples, 'pl') },
      ),
      plsec,
      signature: fc.option(signature, { freq: 2 }),
      extra: fc.uniqueArray(named(others), { selector: ([name]) => name, maxLength: 4 }),
      repeated: fc.option(named(PARAM_NAMES), { freq: 6 }),
      order: fc.nat(),
    })
    .map(({ userid, pl, plsec: token, signature: signed, extra, repeated, order }) => {
      const pairs = [`userid=${userid}`, `pl=${pl}`, `plsec=${token}`];
      if (signed) {
        pairs.push(`ts=${signed.ts}`, `kid=${signed.kid}`, `sig=${signed.sig}`);
      }
      for (const [name, extraValue] of extra) pairs.push(`${name}=${extraValue}`);
      if (repeated) pairs.push(`${repeated[0]}=${repeated[1]}`);
      // A deterministic shuffle driven by the generated order.
      for (let index = pairs.length - 1; index > 0; index--) {
        const other = (order + index * 7919) % (index + 1);
        [pairs[index], pairs[other]] = [pairs[other]!, pairs[index]!];
      }
      return pairs.join('&');
    })
    .filter((query) => query.length <= MAX_QUERY_LENGTH);
}

function partnerIdArbitrary(): fc.Arbitrary<string> {
  return (
    fc
      .string({ unit: fc.constantFrom(...PARTNER_ID_CHARS), minLength: 1, maxLength: 256 })
      // Macro-looking and repetitive ids (`USERID`, `xxxx`) are refused by rules of their own.
      .filter((id) => !isSentinel(id) && validatePartnerUserId(id, DEFAULT_ID_RULES).ok)
  );
}

/** A Cookie header with our cookies, arbitrary values (some well-formed), repeats and junk. */
function cookieArbitrary(): fc.Arbitrary<string> {
  const base64urlId = fc
    .uint8Array({ minLength: 16, maxLength: 16 })
    .map((bytes) => Buffer.from(bytes).toString('base64url'));
  const attempts = fc
    .array(
      fc.tuple(
        fc.constantFrom(STATIC_PLATFORM, SIGNED_PLATFORM, '1', '0', '2147483647'),
        fc.oneof(
          fc.constant(Math.floor(Date.now() / 60_000).toString(36)),
          fc.integer({ min: 0, max: 36 ** 8 - 1 }).map((minutes) => minutes.toString(36)),
        ),
      ),
      { maxLength: 40 },
    )
    .map((entries) => entries.map(([pl, at]) => `${pl}:${at}`).join('.'));
  const value = fc.oneof(
    fc.string({ unit: fc.constantFrom(...PRINTABLE_ASCII), maxLength: 40 }),
    base64urlId,
    attempts,
    fc.constantFrom('1', '0', '', 'deleted', '"quoted"'),
    fc.integer({ min: 129, max: 2_000 }).map((length) => 'a'.repeat(length)),
  );
  const cookieName = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...COOKIE_NAMES) },
    { weight: 1, arbitrary: fc.constantFrom('partner_uid', 'DMP_UID', ' dmp_uid', 'dmp_uid ') },
  );
  return fc
    .array(
      fc.tuple(cookieName, value).map(([n, v]) => `${n}=${v}`),
      { maxLength: 5 },
    )
    .map((cookies) => cookies.join('; '))
    .filter((header) => header.length <= MAX_COOKIE_HEADER_LENGTH);
}

describe('user sync over HTTP: properties of arbitrary requests', () => {
  let stack: LocalStack;
  let dynamodb: DynamoDBClient;
  let tableName: string;
  let partnerOrigin: string;
  let samples: Samples;
  let restoreEnv: (() => void) | undefined;

  beforeAll(async () => {
    restoreEnv = quietLambdaOutput();
    stack = await startLocalStack({ quiet: true, ttlSweepIntervalMs: 0 });
    tableName = stack.tableNames['MappingTable'] ?? MAPPING_TABLE.localName;
    partnerOrigin = new URL(stack.partnerUrl).origin;
    dynamodb = new DynamoDBClient({
      region: LOCAL_REGION,
      endpoint: stack.dynamodbEndpoint,
      credentials: LOCAL_CREDENTIALS,
    });
    // Real tokens minted by /sync, for another browser: a copied callback must not work here.
    const foreignMintedTokens: string[] = [];
    for (const pl of [STATIC_PLATFORM, SIGNED_PLATFORM]) {
      const answer = await get(`/sync?pl=${pl}`, 'dmp_uid=foreign-browser-0001');
      const out = new URL(answer.headers.get('location') ?? '').searchParams.get('out');
      const token = new URL(out ?? '').searchParams.get('plsec');
      expect(token).toMatch(/^m1\./);
      foreignMintedTokens.push(token!);
    }
    samples = { foreignMintedTokens, now: String(Math.floor(Date.now() / 1000)) };
  });

  afterAll(async () => {
    dynamodb?.destroy();
    await stack?.stop();
    restoreEnv?.();
  });

  async function get(pathAndQuery: string, cookie: string): Promise<Answer> {
    const url = `${stack.apiUrl}${pathAndQuery}`;
    const shown = url.replaceAll(/(.)\1{31,}/g, (run, char: string) => `${char}{${run.length}}`);
    const response = await fetch(url, {
      redirect: 'manual',
      headers: cookie === '' ? {} : { cookie },
    });
    await response.arrayBuffer();
    return { status: response.status, headers: response.headers, url: shown };
  }

  const tableSize = () => countItems(dynamodb, tableName);

  /** (a), (b), (d) and no-store: what every answer of /sync and /uid must satisfy. */
  function expectWellBehaved(answer: Answer): void {
    const context = `${answer.status} for ${answer.url}`;
    expect(answer.status, context).toBeLessThan(500);
    const location = answer.headers.get('location');
    if (location !== null) expect(new URL(location, stack.apiUrl).origin, context).toBe(partnerOrigin);
    if (answer.status >= 300 && answer.status < 400) expect(location, context).not.toBeNull();
    if (answer.status >= 400) {
      expect(answer.headers.get('x-dmp-reason'), context).toMatch(/^[a-z0-9_]+$/);
      expect(location, context).toBeNull();
    }
    expect(answer.headers.get('cache-control'), context).toMatch(/(^|,\s*)no-store(,|$)/);
  }

  /** Would the handler see pl=99999 with the static token? (the one valid token a test can forge) */
  function carriesStaticToken(query: string): boolean {
    const params = new URL(`http://127.0.0.1/uid?${query}`).searchParams;
    return params.getAll('pl').includes(STATIC_PLATFORM) && params.getAll('plsec').includes(STATIC_TOKEN);
  }

  const options = () => ({ numRuns: NUM_RUNS, seed: SEED, interruptAfterTimeLimit: 90_000 });

  it(
    '/sync: never a 5xx, redirects only to the partner, every 4xx has a reason, never stores a mapping',
    async () => {
      await fc.assert(
        fc.asyncProperty(queryArbitrary(samples), cookieArbitrary(), async (query, cookie) => {
          const before = await tableSize();
          expectWellBehaved(await get(`/sync?${query}`, cookie));
          expect(await tableSize()).toBe(before);
        }),
        options(),
      );
    },
    PROPERTY_TIMEOUT_MS,
  );

  it(
    '/uid: never a 5xx, redirects only to the partner, every 4xx has a reason and stores nothing',
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            { weight: 1, arbitrary: queryArbitrary(samples) },
            {
              weight: 2,
              arbitrary: callbackArbitrary(
                samples,
                fc.oneof(fc.constant(STATIC_TOKEN), paramValueArbitrary(samples, 'plsec')),
              ),
            },
          ),
          cookieArbitrary(),
          async (query, cookie) => {
            const before = await tableSize();
            const answer = await get(`/uid?${query}`, cookie);
            expectWellBehaved(answer);
            if (answer.status >= 400) expect(await tableSize(), answer.url).toBe(before);
          },
        ),
        options(),
      );
    },
    PROPERTY_TIMEOUT_MS,
  );

  it(
    '/uid without a valid token stores no mapping (static token forged wrong, foreign or fake minted token)',
    async () => {
      const notStatic = paramValueArbitrary(samples, 'plsec').filter(
        (token) => new URLSearchParams(`plsec=${token}`).get('plsec') !== STATIC_TOKEN,
      );
      await fc.assert(
        fc.asyncProperty(
          fc
            .oneof(
              { weight: 3, arbitrary: callbackArbitrary(samples, notStatic) },
              { weight: 1, arbitrary: queryArbitrary(samples) },
            )
            .filter((query) => !carriesStaticToken(query)),
          fc.oneof(
            cookieArbitrary(),
            fc.nat().map((n) => `dmp_uid=property-c-${n.toString(36).padStart(8, '0')}`),
          ),
          async (query, cookie) => {
            const before = await tableSize();
            const answer = await get(`/uid?${query}`, cookie);
            expectWellBehaved(answer);
            expect(answer.status, answer.url).not.toBe(302);
            expect(await tableSize(), `${answer.status} ${answer.url}`).toBe(before);
          },
        ),
        options(),
      );
    },
    PROPERTY_TIMEOUT_MS,
  );

  it(
    'a repeated parameter or a value over 4096 characters is refused (400), whatever its name',
    async () => {
      const name = fc.oneof(
        fc.constantFrom(...PARAM_NAMES),
        // Names that are also properties of every JavaScript object.
        fc.constantFrom('constructor', 'toString', 'valueOf', 'hasOwnProperty', '__proto__'),
        fc.string({ unit: 'grapheme', minLength: 1, maxLength: 8 }),
      );
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom('/sync', '/uid'),
          name,
          fc.constantFrom('repeated', 'oversized'),
          fc.nat(),
          async (route, paramName, problem, n) => {
            // A valid callback, then the name twice, or once with an oversized value (replacing
            // the callback's own parameter of that name, so that it is not a repeat).
            const pairs = new Map<string, string[]>([
              ['userid', ['abcdef123']],
              ['pl', [STATIC_PLATFORM]],
              ['plsec', [STATIC_TOKEN]],
            ]);
            if (problem === 'repeated') pairs.set(paramName, [...(pairs.get(paramName) ?? []), 'a', 'b']);
            else pairs.set(paramName, ['a'.repeat(MAX_UNLISTED_PARAM_LENGTH + 1)]);
            const query = [...pairs]
              .flatMap(([key, values]) => values.map((text) => `${encodeURIComponent(key)}=${text}`))
              .join('&');
            const before = await tableSize();
            const answer = await get(
              `${route}?${query}`,
              `dmp_uid=property-e-${n.toString(36).padStart(8, '0')}`,
            );
            expectWellBehaved(answer);
            expect(answer.status, answer.url).toBe(400);
            expect(answer.headers.get('x-dmp-reason'), `${problem} ${paramName}`).toBe(
              problem === 'repeated' ? 'duplicate_param' : 'param_too_long',
            );
            expect(await tableSize()).toBe(before);
          },
        ),
        options(),
      );
    },
    PROPERTY_TIMEOUT_MS,
  );

  it(
    '/uid with the static token: any valid partner id, however percent-encoded, reads back exactly',
    async () => {
      let browsers = 0;
      const spelling = fc.array(fc.constantFrom('raw', 'upper', 'lower'), { minLength: 256, maxLength: 256 });
      await fc.assert(
        fc.asyncProperty(partnerIdArbitrary(), spelling, async (id, spellings) => {
          const encoded = [...id]
            .map((char, index) => {
              const how = char === '+' ? 'upper' : spellings[index];
              return how === 'raw' ? char : hex(char.charCodeAt(0), how === 'upper');
            })
            .join('');
          browsers += 1;
          const dmpUserId = `roundtrip-${String(browsers).padStart(6, '0')}`;
          const answer = await get(
            `/uid?userid=${encoded}&pl=${STATIC_PLATFORM}&plsec=${STATIC_TOKEN}`,
            `dmp_uid=${dmpUserId}`,
          );
          expectWellBehaved(answer);
          expect(answer.headers.get('x-dmp-reason'), answer.url).toBeNull();
          expect([200, 302], answer.url).toContain(answer.status);
          const item = await dynamodb.send(
            new GetItemCommand({
              TableName: tableName,
              Key: { pk: { S: `user#${dmpUserId}` }, sk: { S: `platform#${STATIC_PLATFORM}` } },
              ConsistentRead: true,
            }),
          );
          expect(item.Item?.['partnerUserId']?.S, answer.url).toBe(id);
        }),
        options(),
      );
    },
    PROPERTY_TIMEOUT_MS,
  );
});

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type ConsentSignals, evaluateConsent, MAX_CONSENT_SIGNAL_LENGTH } from '../../src/sync/consent.ts';
import {
  MAX_ATTEMPT_ENTRIES,
  MAX_SYNCED_LENGTH,
  PARTNER_ID_DIGEST_CHARS,
  parseSyncAttempts,
  parseSyncedMappings,
  partnerIdDigest,
  recordSyncAttempt,
  recordSyncedMapping,
} from '../../src/sync/cookies.ts';
import { type SignedFields, signSyncCallback, verifySyncSignature } from '../../src/sync/signature.ts';
import { mintSyncToken, type TokenKeys, verifyMintedToken } from '../../src/sync/tokens.ts';
import { allowedSyncOrigin, buildCallbackUrl, buildPartnerSyncUrl } from '../../src/sync/urls.ts';
import { validatePartnerUserId } from '../../src/sync/user-ids.ts';
import { gppString, tcString } from '../support/consent-strings.ts';

const NOW = 1_767_225_600;

/** Characters that may never be part of a stored partner id. */
const FORBIDDEN_IN_PARTNER_ID = /[\s%[{<>"'`]/u;

const ID_CHARS = [...'abcXYZ019._~+/=:@!*,;&()-'];
const HOSTILE_CHARS = [...' \t\n\r\u00a0\u2028%[]{}<>"\'`$#|\\é🙂'];

/** A plausible id with one hostile character put in somewhere. */
const idWithOneHostileChar = fc
  .tuple(
    fc.string({ unit: fc.constantFrom(...ID_CHARS), minLength: 1, maxLength: 30 }),
    fc.constantFrom(...HOSTILE_CHARS),
    fc.nat(),
  )
  .map(([id, hostile, position]) => {
    const index = position % (id.length + 1);
    return id.slice(0, index) + hostile + id.slice(index);
  });

/** Strings mixing plausible id characters with hostile ones, and arbitrary unicode. */
const candidateIds = fc.oneof(
  idWithOneHostileChar,
  fc.string({ unit: fc.constantFrom(...ID_CHARS, ...HOSTILE_CHARS), maxLength: 40 }),
  fc.string({ unit: fc.constantFrom(...ID_CHARS), maxLength: 600 }),
  fc.string({ unit: 'binary', maxLength: 80 }),
  fc.string({ unit: 'grapheme', maxLength: 80 }),
);

const wellFormed = (maxLength: number) =>
  fc.oneof(
    fc.string({ unit: 'grapheme', maxLength }),
    fc.string({ unit: 'binary', maxLength }).filter((value) => value.isWellFormed()),
    fc.string({ unit: fc.constantFrom(...'&=?#/%+ :@.~[]{}$'), maxLength }),
  );

describe('validatePartnerUserId', () => {
  it('never accepts whitespace, %, brackets, braces, angle brackets, quotes or an id over the limit', () => {
    fc.assert(
      fc.property(candidateIds, fc.integer({ min: 8, max: 512 }), (raw, maxUserIdLength) => {
        const result = validatePartnerUserId(raw, {
          maxUserIdLength,
          userIdMacro: '[[USERID]]',
          sentinelUserIds: [],
        });
        if (!result.ok) return;
        expect(result.value).toBe(raw);
        expect(raw).not.toMatch(FORBIDDEN_IN_PARTNER_ID);
        expect(raw.length).toBeLessThanOrEqual(maxUserIdLength);
      }),
      { numRuns: 3000 },
    );
  });
});

describe('buildPartnerSyncUrl', () => {
  const templates = [
    'https://api.third-party.com/sync?out={out}&gdpr={gdpr}&gdpr_consent={gdpr_consent}',
    'https://api.third-party.com/sync?out={out}&us_privacy={us_privacy}&gpp={gpp}&gpp_sid={gpp_sid}',
    'https://api.third-party.com:8443/cookie/{gdpr}/{out}?g={gpp}#{gdpr_consent}',
    'http://127.0.0.1:3001/sync?out={out}&gdpr={gdpr}&gdpr_consent={gdpr_consent}',
  ];
  const consent = fc.record(
    {
      gdpr: wellFormed(20),
      gdprConsent: wellFormed(200),
      usPrivacy: wellFormed(10),
      gpp: wellFormed(200),
      gppSid: wellFormed(10),
    },
    { requiredKeys: [] },
  );

  it("always stays on the template's origin, whatever the consent values and token", () => {
    fc.assert(
      fc.property(fc.constantFrom(...templates), consent, wellFormed(80), (urlTemplate, values, token) => {
        const callback = buildCallbackUrl({
          baseUrl: 'https://go.flx1.com',
          platformId: 99999,
          token,
          userIdMacro: '[[USERID]]',
          consent: values,
          hop: 1,
        });
        const result = buildPartnerSyncUrl({ urlTemplate }, callback, values);
        expect(result.ok).toBe(true);
        if (result.ok) expect(new URL(result.url).origin).toBe(allowedSyncOrigin({ urlTemplate }));
      }),
      { numRuns: 500 },
    );
  });

  it('round trips every value through the partner, for any consent, token and partner id', () => {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a partner's macro spelling, not a template
    const macros = ['[[USERID]]', '$UID', '${UID}', '{{uid}}', '%%ID%%', '#PMUID'];
    fc.assert(
      fc.property(
        consent,
        wellFormed(80),
        fc.constantFrom(...macros),
        fc.string({ unit: fc.constantFrom(...ID_CHARS), minLength: 1, maxLength: 64 }),
        (values, token, macro, partnerUserId) => {
          const callback = buildCallbackUrl({
            baseUrl: 'https://go.flx1.com',
            platformId: 99999,
            token,
            userIdMacro: macro,
            consent: values,
            hop: 1,
          });
          const result = buildPartnerSyncUrl({ urlTemplate: templates[0]! }, callback, values);
          if (!result.ok) throw new Error(result.reason);
          const out = new URL(result.url).searchParams.get('out') ?? '';
          const back = new URL(out.replace(macro, encodeURIComponent(partnerUserId))).searchParams;
          expect(back.get('userid')).toBe(partnerUserId);
          expect(back.get('pl')).toBe('99999');
          expect(back.get('plsec')).toBe(token);
          const expected = (value: string | undefined) =>
            value === undefined || value === '' ? null : value;
          expect(back.get('gdpr')).toBe(expected(values.gdpr));
          expect(back.get('gdpr_consent')).toBe(expected(values.gdprConsent));
          expect(back.get('us_privacy')).toBe(expected(values.usPrivacy));
          expect(back.get('gpp')).toBe(expected(values.gpp));
          expect(back.get('gpp_sid')).toBe(expected(values.gppSid));
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('verifySyncSignature', () => {
  const SECRET = 'partner-shared-secret-0001';
  const options = {
    keys: { k1: SECRET, k2: 'second-shared-secret-02' },
    algorithm: 'sha1' as const,
    maxSkewSeconds: 300,
    nowSeconds: NOW,
  };
  const fields = fc.record({
    pl: fc.integer({ min: 1, max: 2_147_483_647 }).map(String),
    userid: fc.string({ unit: fc.constantFrom(...ID_CHARS), minLength: 1, maxLength: 40 }),
    plsec: fc.string({ unit: fc.constantFrom(...ID_CHARS), minLength: 1, maxLength: 40 }),
    ts: fc.integer({ min: NOW - 300, max: NOW + 300 }).map(String),
    kid: fc.constantFrom('k1', 'k2'),
  });
  const printable = fc.integer({ min: 0x20, max: 0x7e }).map((code) => String.fromCharCode(code));

  const mutate = (text: string, index: number, replacement: string) =>
    text.slice(0, index) + replacement + text.slice(index + 1);

  it('rejects any single-character change of any signed field', () => {
    fc.assert(
      fc.property(
        fields,
        fc.constantFrom<keyof SignedFields>('pl', 'userid', 'plsec', 'ts', 'kid'),
        fc.nat(),
        fc.oneof(printable, fc.string({ unit: 'binary', minLength: 1, maxLength: 1 })),
        fc.boolean(),
        (signed, name, position, replacement, asBase64url) => {
          const hex = signSyncCallback(signed, options.keys[signed.kid as 'k1' | 'k2'], 'sha1');
          const sig = asBase64url ? Buffer.from(hex, 'hex').toString('base64url') : hex;
          expect(verifySyncSignature({ ...signed, sig }, options).valid).toBe(true);
          const original = signed[name];
          const index = position % original.length;
          fc.pre(original[index] !== replacement);
          const altered = { ...signed, [name]: mutate(original, index, replacement), sig };
          expect(verifySyncSignature(altered, options).valid).toBe(false);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('rejects any single-character change of the signature, hex or base64url', () => {
    fc.assert(
      fc.property(fields, fc.boolean(), (signed, asBase64url) => {
        const hex = signSyncCallback(signed, options.keys[signed.kid as 'k1' | 'k2'], 'sha1');
        const sig = asBase64url ? Buffer.from(hex, 'hex').toString('base64url') : hex;
        for (let index = 0; index < sig.length; index++) {
          for (let code = 0x20; code <= 0x7e; code++) {
            const replacement = String.fromCharCode(code);
            if (replacement === sig[index]) continue;
            const altered = mutate(sig, index, replacement);
            expect(verifySyncSignature({ ...signed, sig: altered }, options).valid, altered).toBe(false);
          }
        }
      }),
      { numRuns: 20 },
    );
  });
});

describe('verifyMintedToken', () => {
  const keys: TokenKeys = {
    kid: 'k2',
    key: 'current-token-key-0002',
    previous: { k1: 'previous-token-key-001' },
  };
  const dmpUserId = fc.stringMatching(/^[A-Za-z0-9._-]{8,128}$/);
  const platformId = fc.integer({ min: 1, max: 2_147_483_647 });
  const nonce = fc.stringMatching(/^[A-Za-z0-9_-]{6,32}$/);

  it('never accepts a token minted for another DMP user or platform', () => {
    fc.assert(
      fc.property(
        dmpUserId,
        platformId,
        dmpUserId,
        platformId,
        nonce,
        fc.integer({ min: -60, max: 3600 }),
        (mintUser, mintPlatform, presentUser, presentPlatform, tokenNonce, age) => {
          const token = mintSyncToken(
            { platformId: mintPlatform, dmpUserId: mintUser, nowSeconds: NOW - age, nonce: tokenNonce },
            keys,
          );
          const verdict = verifyMintedToken(
            {
              token,
              platformId: presentPlatform,
              dmpUserId: presentUser,
              nowSeconds: NOW,
              maxAgeSeconds: 3600,
            },
            keys,
          );
          const same = mintUser === presentUser && mintPlatform === presentPlatform;
          expect(verdict.valid).toBe(same);
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe('dmp_sa cookie', () => {
  const SIZE_LIMIT = MAX_ATTEMPT_ENTRIES * 24;

  it('parseSyncAttempts never throws and only returns sane entries', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: 'binary', maxLength: 1000 }),
          fc.string({ unit: fc.constantFrom(...'0123456789abcxyz:.-'), maxLength: 1000 }),
        ),
        (value) => {
          for (const [platformId, at] of parseSyncAttempts(value)) {
            expect(Number.isSafeInteger(platformId) && platformId > 0).toBe(true);
            expect(Number.isSafeInteger(at) && at >= 0).toBe(true);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('recordSyncAttempt output always parses back, keeps the newest attempt and stays small', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(fc.integer({ min: 1, max: 2_147_483_647 }), fc.integer({ min: 0, max: 3_000_000 })),
          {
            maxLength: 80,
          },
        ),
        (steps) => {
          let value = '';
          let clock = NOW;
          for (const [platformId, advance] of steps) {
            clock += advance;
            value = recordSyncAttempt(parseSyncAttempts(value), platformId, clock);
            expect(value.length).toBeLessThanOrEqual(SIZE_LIMIT);
            expect(value).toMatch(/^[0-9a-z:.]*$/);
            const back = parseSyncAttempts(value);
            expect(back.get(platformId)).toBe(Math.floor(clock / 60) * 60);
            expect(back.size).toBeLessThanOrEqual(MAX_ATTEMPT_ENTRIES);
            expect(value.split('.')).toHaveLength(back.size);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('dmp_ss cookie', () => {
  it('parseSyncedMappings never throws and only returns sane entries', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: 'binary', maxLength: 1200 }),
          fc.string({ unit: fc.constantFrom(...'0123456789abcxyzAZ_:.-'), maxLength: 1200 }),
        ),
        (value) => {
          for (const [platformId, entry] of parseSyncedMappings(value)) {
            expect(Number.isSafeInteger(platformId) && platformId > 0).toBe(true);
            expect(Number.isSafeInteger(entry.atSeconds) && entry.atSeconds >= 0).toBe(true);
            if (entry.idDigest !== undefined) expect(entry.idDigest).toHaveLength(PARTNER_ID_DIGEST_CHARS);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('recordSyncedMapping output always parses back with its digest and stays small', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(
            fc.integer({ min: 1, max: 2_147_483_647 }),
            fc.integer({ min: 0, max: 3_000_000 }),
            fc.string({ maxLength: 40 }),
          ),
          { maxLength: 80 },
        ),
        (steps) => {
          let value = '';
          let clock = NOW;
          for (const [platformId, advance, partnerId] of steps) {
            clock += advance;
            const idDigest = partnerIdDigest(platformId, 'dmp-user', partnerId);
            value = recordSyncedMapping(parseSyncedMappings(value), platformId, {
              atSeconds: clock,
              idDigest,
            });
            expect(value.length).toBeLessThanOrEqual(MAX_SYNCED_LENGTH);
            expect(value).toMatch(/^[0-9A-Za-z_:.-]*$/);
            const back = parseSyncedMappings(value);
            expect(back.get(platformId)).toEqual({ atSeconds: Math.floor(clock / 60) * 60, idDigest });
            expect(back.size).toBeLessThanOrEqual(MAX_ATTEMPT_ENTRIES);
            expect(value.split('.')).toHaveLength(back.size);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('evaluateConsent', () => {
  const REAL_TCF = tcString({ purposes: [1, 2], vendors: [1234, 4321] });
  const REAL_GPP = gppString({ tcfeuv2: { purposes: [1], vendors: [1234, 4321] }, usnat: { saleOptOut: 1 } });

  /** Arbitrary text, and real strings with a character changed, cut or appended. */
  const corrupted = (real: string) =>
    fc
      .tuple(
        fc.nat(),
        fc.string({ unit: 'binary', maxLength: 3 }),
        fc.constantFrom('replace', 'cut', 'append'),
      )
      .map(([position, text, how]) => {
        const index = position % (real.length + 1);
        if (how === 'cut') return real.slice(0, index);
        if (how === 'append') return real + text;
        return real.slice(0, index) + text + real.slice(index + 1);
      });
  const text = (real: string) =>
    fc.option(
      fc.oneof(
        fc.string({ unit: 'binary', maxLength: 60 }),
        corrupted(real),
        fc.constant(real),
        fc.constant('x'.repeat(MAX_CONSENT_SIGNAL_LENGTH + 1)),
      ),
      { nil: undefined },
    );

  const signals: fc.Arbitrary<ConsentSignals> = fc.record({
    gdpr: fc.option(fc.oneof(fc.constantFrom('0', '1', '2', ''), fc.string({ maxLength: 4 })), {
      nil: undefined,
    }),
    gdprConsent: text(REAL_TCF),
    usPrivacy: fc.option(fc.oneof(fc.string({ maxLength: 5 }), fc.constantFrom('1YYN', '1YNN', '1---')), {
      nil: undefined,
    }),
    gpp: text(REAL_GPP),
    gppSid: fc.option(
      fc.oneof(
        fc.constantFrom('2', '7', '2,7', '6', '', '2_7'),
        fc.string({ unit: 'binary', maxLength: 10 }),
      ),
      { nil: undefined },
    ),
    globalPrivacyControl: fc.boolean(),
  });

  const policy = fc.record({
    hostVendorId: fc.option(fc.constantFrom(1234, 4321, 1, 99999), { nil: undefined }),
    gdprAppliesWhenUnknown: fc.boolean(),
    honourGlobalPrivacyControl: fc.boolean(),
  });

  it('never throws, and always answers with a verdict', () => {
    fc.assert(
      fc.property(
        signals,
        policy,
        fc.option(fc.integer({ min: 1, max: 5000 }), { nil: undefined }),
        (input, consentPolicy, partner) => {
          const verdict = evaluateConsent(input, consentPolicy, partner);
          if (verdict.allowed) expect(typeof verdict.basis).toBe('string');
          else expect(verdict.reason).toMatch(/^consent_/);
          if (consentPolicy.honourGlobalPrivacyControl && input.globalPrivacyControl) {
            expect(verdict.allowed).toBe(false);
          }
        },
      ),
      { numRuns: 1500 },
    );
  });
});

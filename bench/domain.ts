import { createHmac, randomBytes } from 'node:crypto';
import { type PlatformConfig, PlatformSchema } from '../src/config/schema.ts';
import { type ConsentPolicy, type ConsentSignals, evaluateConsent } from '../src/sync/consent.ts';
import { toSyncRequest } from '../src/sync/http.ts';
import { decideDue, type SyncedPlatform } from '../src/sync/schedule.ts';
import { UserSyncService } from '../src/sync/service.ts';
import { signSyncCallback, verifySyncSignature } from '../src/sync/signature.ts';
import { mintSyncToken, type TokenKeys, verifyMintedToken } from '../src/sync/tokens.ts';
import { validatePartnerUserId } from '../src/sync/user-ids.ts';
import {
  craftedTcString,
  GPP_SID,
  gppString,
  gppWithTcfSection,
  overlappingRangesTcString,
  tcString,
} from '../test/support/consent-strings.ts';
import {
  callbackEvent,
  DMP_USER,
  FixedSecrets,
  HOST_VENDOR_ID,
  InMemoryMappingStore,
  localConfig,
  NO_METRICS,
  NOW_SECONDS,
  PARTNER_VENDOR_ID,
  SIGNED_PLATFORM,
  SIGNING_KID,
  SIGNING_SECRET,
  STATIC_PLATFORM,
} from './fixtures.ts';
import type { BenchModule, Figure } from './registry.ts';
import { type Comparison, compare, type RunOptions, type Subject } from './runner.ts';

/**
 * Benchmarks 1 and 2: the user-sync domain's CPU cost per request, each relative to one
 * HMAC-SHA256 over 64 bytes (the unit of work the request path is built from: tokens, signatures
 * and the schedule's jitter are all one hash each).
 */

const HMAC_KEY = 'bench-hmac-key-0123456789abcdef';
const HMAC_INPUT = randomBytes(64);

export const HMAC_BASELINE: Subject = {
  name: 'HMAC-SHA256 over 64 bytes',
  run: () => createHmac('sha256', HMAC_KEY).update(HMAC_INPUT).digest(),
};

export interface DomainCase {
  readonly label: string;
  readonly subject: Subject;
  /** Another baseline than the HMAC (the worst-case consent strings: the typical string). */
  readonly baseline?: Subject;
}

function check(condition: boolean, what: string): void {
  if (!condition) throw new Error(`bench fixture does not take the intended path: ${what}`);
}

function platformsForSchedule(): PlatformConfig[] {
  return Array.from({ length: 10 }, (_, index) =>
    PlatformSchema.parse({
      id: 10_001 + index,
      name: `Platform ${index + 1}`,
      sync: { urlTemplate: `https://sync.partner-${index + 1}.example/sync?out={out}` },
    }),
  );
}

export function domainCases(): DomainCase[] {
  const config = localConfig();
  const staticPlatform = config.platforms.find((platform) => platform.id === STATIC_PLATFORM);
  if (!staticPlatform?.sync) throw new Error(`platform ${STATIC_PLATFORM} is not in the local config`);
  const syncSettings = staticPlatform.sync;

  // (a) the API Gateway event -> SyncRequest translation.
  const event = callbackEvent();
  check(toSyncRequest(event).query['userid'] === 'abcdef123', 'toSyncRequest decodes the seed query');

  // (b) a token minted by /sync, presented back by the same browser.
  const keys: TokenKeys = { kid: 'local1', key: 'local-only-sync-token-signing-key', previous: {} };
  const token = mintSyncToken(
    { platformId: STATIC_PLATFORM, dmpUserId: DMP_USER, nowSeconds: NOW_SECONDS },
    keys,
  );
  const tokenInput = {
    token,
    platformId: STATIC_PLATFORM,
    dmpUserId: DMP_USER,
    nowSeconds: NOW_SECONDS + 5,
    maxAgeSeconds: syncSettings.mintedTokenMaxAgeSeconds,
  };
  check(verifyMintedToken(tokenInput, keys).valid, 'minted token verifies');

  // (c) a signed callback (HMAC-SHA1, the default algorithm).
  const signed = {
    pl: String(SIGNED_PLATFORM),
    userid: 'abcdef123',
    plsec: token,
    ts: String(NOW_SECONDS),
    kid: SIGNING_KID,
  };
  const sig = signSyncCallback(signed, SIGNING_SECRET, 'sha1');
  const signatureOptions = {
    keys: { [SIGNING_KID]: SIGNING_SECRET },
    algorithm: 'sha1' as const,
    maxSkewSeconds: 300,
    nowSeconds: NOW_SECONDS + 2,
  };
  check(verifySyncSignature({ ...signed, sig }, signatureOptions).valid, 'signature verifies');

  // (d) consent: TCF v2 granting purpose 1 to the host and the partner; GPP with a usnat section.
  const policy: ConsentPolicy = {
    hostVendorId: HOST_VENDOR_ID,
    gdprAppliesWhenUnknown: false,
    honourGlobalPrivacyControl: true,
  };
  const tcf: ConsentSignals = {
    gdpr: '1',
    gdprConsent: tcString({ purposes: [1], vendors: [HOST_VENDOR_ID, PARTNER_VENDOR_ID] }),
    globalPrivacyControl: false,
  };
  const tcfVerdict = evaluateConsent(tcf, policy, PARTNER_VENDOR_ID);
  check(tcfVerdict.allowed && tcfVerdict.basis === 'tcf_v2', 'TCF string grants consent');
  const gpp: ConsentSignals = {
    gpp: gppString({ usnat: { saleOptOut: 2, sharingOptOut: 2, targetedAdvertisingOptOut: 2 } }),
    gppSid: String(GPP_SID.usnat),
    globalPrivacyControl: false,
  };
  check(evaluateConsent(gpp, policy, PARTNER_VENDOR_ID).allowed, 'GPP usnat string allows');

  // (d') worst cases of the bounded readers, against the typical TCF string: a 4 KB string with as
  // many disjoint single-id entries as fit (every one read and compared), and the crafted
  // string of overlapping 1-65535 ranges (refused as over budget), as gdpr_consent and in GPP.
  const entries = Math.floor((4096 * 6 - 300) / 17);
  const worst: ConsentSignals = {
    gdpr: '1',
    gdprConsent: craftedTcString({
      purposes: [1],
      maxVendorId: 65_535,
      ranges: Array.from({ length: entries }, (_, index) => ({ start: 5000 + index * 3 })),
    }),
    globalPrivacyControl: false,
  };
  check((worst.gdprConsent?.length ?? 0) <= 4096, 'worst-case TCF string within 4 KB');
  check(
    !evaluateConsent(worst, policy, PARTNER_VENDOR_ID).allowed,
    'worst-case TCF string is read to its end',
  );
  const crafted: ConsentSignals = {
    gdpr: '1',
    gdprConsent: overlappingRangesTcString(),
    globalPrivacyControl: false,
  };
  const craftedGpp: ConsentSignals = {
    gpp: gppWithTcfSection(overlappingRangesTcString(4090)),
    gppSid: '2',
    globalPrivacyControl: false,
  };
  const refusal = (signals: ConsentSignals) => {
    const verdict = evaluateConsent(signals, policy, PARTNER_VENDOR_ID);
    return verdict.allowed ? 'allowed' : verdict.reason;
  };
  check(refusal(crafted) === 'consent_gdpr_over_budget', 'crafted TCF string refused as over budget');
  check(refusal(craftedGpp) === 'consent_gpp_over_budget', 'crafted GPP string refused as over budget');
  const typicalTcf: Subject = {
    name: 'evaluateConsent tcf',
    run: () => evaluateConsent(tcf, policy, PARTNER_VENDOR_ID),
  };

  // (f) a known browser: 6 fresh mappings, 2 stale, 1 recent attempt, 1 never synced.
  const platforms = platformsForSchedule();
  const day = 86_400;
  const mappings: SyncedPlatform[] = platforms.slice(0, 8).map((platform, index) => ({
    platformId: platform.id,
    lastSeenSeconds: NOW_SECONDS - (index < 6 ? 1 : 30) * day,
  }));
  const attempts = new Map<number, number>([[platforms[8]!.id, NOW_SECONDS - 3600]]);
  const dueInput = { platforms, dmpUserId: DMP_USER, nowSeconds: NOW_SECONDS, mappings, attempts };
  const decisions = decideDue(dueInput);
  check(decisions.filter((decision) => decision.due).length === 3, 'schedule: 3 of 10 platforms due');

  return [
    {
      label: '1a toSyncRequest (API GW v2 event)',
      subject: { name: 'toSyncRequest', run: () => toSyncRequest(event) },
    },
    {
      label: '1b verifyMintedToken',
      subject: { name: 'verifyMintedToken', run: () => verifyMintedToken(tokenInput, keys) },
    },
    {
      label: '1c verifySyncSignature (sha1)',
      subject: {
        name: 'verifySyncSignature',
        run: () => verifySyncSignature({ ...signed, sig }, signatureOptions),
      },
    },
    {
      label: '1d evaluateConsent, TCF v2',
      subject: { name: 'evaluateConsent tcf', run: () => evaluateConsent(tcf, policy, PARTNER_VENDOR_ID) },
    },
    {
      label: '1d evaluateConsent, GPP usnat',
      subject: { name: 'evaluateConsent gpp', run: () => evaluateConsent(gpp, policy, PARTNER_VENDOR_ID) },
    },
    {
      label: `1d' worst-case TCF (4 KB, ${entries} entries) / typical`,
      baseline: typicalTcf,
      subject: { name: 'worst tcf', run: () => evaluateConsent(worst, policy, PARTNER_VENDOR_ID) },
    },
    {
      label: "1d' crafted 1-65535 ranges, TCF (refused) / typical",
      baseline: typicalTcf,
      subject: { name: 'crafted tcf', run: () => evaluateConsent(crafted, policy, PARTNER_VENDOR_ID) },
    },
    {
      label: "1d' crafted 1-65535 ranges, GPP (refused) / typical",
      baseline: typicalTcf,
      subject: { name: 'crafted gpp', run: () => evaluateConsent(craftedGpp, policy, PARTNER_VENDOR_ID) },
    },
    {
      label: '1e validatePartnerUserId',
      subject: { name: 'validatePartnerUserId', run: () => validatePartnerUserId('abcdef123', syncSettings) },
    },
    { label: '1f decideDue, 10 platforms', subject: { name: 'decideDue', run: () => decideDue(dueInput) } },
  ];
}

/**
 * Benchmark 2: the whole `/uid` callback (the seed's, static token, known browser) through the
 * service with an in-memory store: an unchanged mapping (read only), then the chain goes on to
 * the next due platform (a minted token and a 302).
 */
export async function callbackCase(): Promise<DomainCase> {
  const service = new UserSyncService({
    config: localConfig(),
    store: new InMemoryMappingStore(),
    secrets: new FixedSecrets(),
    metrics: NO_METRICS,
    now: () => NOW_SECONDS,
  });
  const request = toSyncRequest(callbackEvent());
  const first = await service.callback(request);
  check(first.outcome === 'stored', `first callback stores (got ${first.outcome} ${first.reason ?? ''})`);
  const again = await service.callback(request);
  check(again.outcome === 'unchanged' && again.status === 302, 'later callbacks: unchanged, chain goes on');
  return {
    label: '2  UserSyncService.callback /uid',
    subject: { name: 'callback', run: () => service.callback(request), async: true },
  };
}

export async function runDomain(
  options: RunOptions,
  onResult: (label: string, comparison: Comparison) => void,
): Promise<void> {
  const cases = [...domainCases(), await callbackCase()];
  for (const domainCase of cases) {
    onResult(
      domainCase.label,
      await compare(domainCase.baseline ?? HMAC_BASELINE, domainCase.subject, options),
    );
  }
}

/** Sections 1-2 of `npm run bench`: each case's time per call against one HMAC, in nanoseconds. */
export const domainBench: BenchModule = {
  id: 'domain',
  describe: 'user-sync domain, CPU per request, against one HMAC-SHA256 over 64 bytes',
  async run({ quick }) {
    const figures: Figure[] = [];
    await runDomain(
      quick ? { warmupMs: 100, batchMs: 10, rounds: 7 } : { warmupMs: 250, batchMs: 30, rounds: 19 },
      (label, comparison) => {
        figures.push({
          name: label,
          value: comparison.subjectNs,
          unit: 'ns',
          baseline: comparison.baselineNs,
          ratio: comparison.ratio,
          spread: [comparison.ratioQ1, comparison.ratioQ3],
        });
      },
    );
    return {
      id: 'domain',
      title: '1-2. user-sync domain, CPU per request (baseline: one HMAC-SHA256 over 64 bytes)',
      figures,
    };
  },
};

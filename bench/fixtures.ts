import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { loadEnvironmentFile } from '../src/config/load.ts';
import type { EnvironmentConfig } from '../src/config/schema.ts';
import {
  type PlatformSecret,
  PlatformSecretSchema,
  type SyncTokenKey,
  SyncTokenKeySchema,
} from '../src/config/secrets.ts';
import { decideMappingWrite, type MappingRecord, OUTCOME_OF_WRITE } from '../src/sync/mapping.ts';
import type { MappingStore, SightingInput, SightingResult } from '../src/sync/mapping-store.ts';
import type { SyncMetrics, SyncSecrets } from '../src/sync/service.ts';

/** Inputs shared by the benchmarks: a realistic request, the local environment, fixed secrets. */

export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
export const LOCAL_CONFIG_PATH = join(REPO_ROOT, 'config', 'environments', 'local.json');

/** The seed's callback (config/environments/local.json, config/local-secrets.json). */
export const SEED_QUERY = 'userid=abcdef123&pl=99999&plsec=verysecure';
export const STATIC_PLATFORM = 99999;
export const SIGNED_PLATFORM = 88888;
export const STATIC_TOKEN = 'verysecure';
export const SIGNING_KID = 'k1';
export const SIGNING_SECRET = 'reference-partner-shared-secret-1';
/** Platform 99999's key for signed static-token callbacks (partner-initiated, signed). */
export const STATIC_SIGNING_SECRET = 'reference-partner-static-signing-secret';
export const HOST_VENDOR_ID = 1234;
export const PARTNER_VENDOR_ID = 4321;
export const DMP_USER = 'bench-user-0001';
/** A fixed clock (2026-01-01T00:00:00Z), so that every round takes the same path. */
export const NOW_SECONDS = 1_767_225_600;

export function localConfig(): EnvironmentConfig {
  return loadEnvironmentFile(LOCAL_CONFIG_PATH);
}

/** An API Gateway HTTP API (payload 2.0) event as a browser's `/uid` redirect produces it. */
export function callbackEvent(rawQueryString = SEED_QUERY): APIGatewayProxyEventV2 {
  const domainName = 'abc123def4.execute-api.eu-west-1.amazonaws.com';
  return {
    version: '2.0',
    routeKey: 'GET /uid',
    rawPath: '/uid',
    rawQueryString,
    cookies: [`dmp_uid=${DMP_USER}`],
    headers: {
      accept: 'image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8',
      'accept-encoding': 'gzip, deflate, br, zstd',
      'accept-language': 'fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7',
      'content-length': '0',
      host: domainName,
      referer: 'https://www.publisher.example/',
      'sec-ch-ua': '"Chromium";v="138", "Not=A?Brand";v="24"',
      'sec-ch-ua-mobile': '?0',
      'sec-ch-ua-platform': '"Linux"',
      'sec-fetch-dest': 'image',
      'sec-fetch-mode': 'no-cors',
      'sec-fetch-site': 'cross-site',
      'user-agent':
        'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.0.0 Safari/537.36',
      'x-amzn-trace-id': 'Root=1-6955b880-1f2e3d4c5b6a79881a2b3c4d',
      'x-forwarded-for': '198.51.100.7',
      'x-forwarded-port': '443',
      'x-forwarded-proto': 'https',
    },
    queryStringParameters: Object.fromEntries(new URLSearchParams(rawQueryString)),
    requestContext: {
      accountId: '123456789012',
      apiId: 'abc123def4',
      domainName,
      domainPrefix: 'abc123def4',
      http: {
        method: 'GET',
        path: '/uid',
        protocol: 'HTTP/1.1',
        sourceIp: '198.51.100.7',
        userAgent:
          'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.0.0 Safari/537.36',
      },
      requestId: 'Ab1CdEfGhIjKlMn=',
      routeKey: 'GET /uid',
      stage: '$default',
      time: '01/Jan/2026:00:00:00 +0000',
      timeEpoch: NOW_SECONDS * 1000,
    },
    isBase64Encoded: false,
  };
}

/** Secrets as config/local-secrets.json holds them, validated by the runtime's own schemas. */
export class FixedSecrets implements SyncSecrets {
  private readonly platforms = new Map<number, PlatformSecret>([
    [
      STATIC_PLATFORM,
      PlatformSecretSchema.parse({
        syncToken: STATIC_TOKEN,
        signingKeys: { [SIGNING_KID]: STATIC_SIGNING_SECRET },
      }),
    ],
    [SIGNED_PLATFORM, PlatformSecretSchema.parse({ signingKeys: { [SIGNING_KID]: SIGNING_SECRET } })],
  ]);
  private readonly keys: SyncTokenKey = SyncTokenKeySchema.parse({
    kid: 'local1',
    key: 'local-only-sync-token-signing-key',
    previous: {},
  });

  async platform(platformId: number): Promise<PlatformSecret | undefined> {
    return this.platforms.get(platformId);
  }

  async tokenKeys(): Promise<SyncTokenKey> {
    return this.keys;
  }
}

export const NO_METRICS: SyncMetrics = { count: () => {} };

const iso = (seconds: number) => new Date(seconds * 1000).toISOString();

/** The mapping table in a Map, deciding writes with the same pure function as the DynamoDB store. */
export class InMemoryMappingStore implements MappingStore {
  private readonly items = new Map<string, MappingRecord>();
  private readonly replayGuards = new Map<string, number>();

  async listForUser(
    dmpUserId: string,
    nowSeconds: number,
    _options?: { consistent?: boolean },
  ): Promise<MappingRecord[]> {
    const prefix = `${dmpUserId}#`;
    const records: MappingRecord[] = [];
    for (const [key, record] of this.items) {
      if (key.startsWith(prefix) && record.expiresAt > nowSeconds) records.push(record);
    }
    return records;
  }

  async recordSighting(input: SightingInput): Promise<SightingResult> {
    const key = `${input.dmpUserId}#${input.platformId}`;
    const current = this.items.get(key);
    const write = decideMappingWrite(
      current,
      input.partnerUserId,
      input.nowSeconds,
      input.refreshAfterSeconds,
      input.limits,
    );
    if (write.kind === 'refuse') return write.reason;
    const verifiedAt = input.limits?.assurance === 'static' ? current?.verifiedAt : iso(input.nowSeconds);
    const now = iso(input.nowSeconds);
    const expiresAt = input.nowSeconds + input.ttlSeconds;
    switch (write.kind) {
      case 'none':
        break;
      case 'create':
        this.items.set(key, {
          platformId: input.platformId,
          partnerUserId: input.partnerUserId,
          firstSeen: now,
          lastSeen: now,
          lastChanged: now,
          expiresAt,
          version: (current?.version ?? 0) + 1,
          verifiedAt: input.limits?.assurance === 'static' ? undefined : now,
        });
        break;
      case 'refresh':
        if (current)
          this.items.set(key, {
            ...current,
            lastSeen: now,
            expiresAt,
            version: current.version + 1,
            verifiedAt,
          });
        break;
      case 'change':
        if (current) {
          this.items.set(key, {
            ...current,
            previousPartnerUserId: current.partnerUserId,
            partnerUserId: input.partnerUserId,
            lastChanged: now,
            lastSeen: now,
            expiresAt,
            version: current.version + 1,
            verifiedAt,
          });
        }
        break;
    }
    return OUTCOME_OF_WRITE[write.kind];
  }

  async deleteUser(dmpUserId: string): Promise<number> {
    const prefix = `${dmpUserId}#`;
    let deleted = 0;
    for (const key of [...this.items.keys()]) {
      if (key.startsWith(prefix)) {
        this.items.delete(key);
        deleted++;
      }
    }
    return deleted;
  }

  async claimReplayGuard(platformId: number, digest: string, expiresAtSeconds: number): Promise<boolean> {
    const key = `${platformId}#${digest}`;
    if (this.replayGuards.has(key)) return false;
    this.replayGuards.set(key, expiresAtSeconds);
    return true;
  }
}

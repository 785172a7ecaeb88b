import { createHash } from 'node:crypto';
import type { Connector } from '../config/connector.ts';
import type { PlatformConfig } from '../config/schema.ts';
import { PartnerClient, type PartnerClientOptions } from './http/client.ts';

/**
 * One PartnerClient per platform and per version of its credentials: a client keeps its OAuth2
 * token and its keep-alive connections across invocations, and a rotated credential (the secret
 * cache has a bounded age) yields a fresh client on the next call.
 */
export type CredentialsSource = (platformId: number) => Promise<Readonly<Record<string, string>>>;

export type ConnectedPlatform = PlatformConfig & { readonly connector: Connector };

export class PartnerClients {
  private readonly clients = new Map<number, { fingerprint: string; client: PartnerClient }>();

  constructor(
    private readonly credentialsOf: CredentialsSource,
    private readonly options: Omit<PartnerClientOptions, 'api' | 'responses' | 'credentials'> = {},
  ) {}

  async for(platform: ConnectedPlatform): Promise<PartnerClient> {
    const credentials = await this.credentialsOf(platform.id);
    const fingerprint = createHash('sha256')
      .update(JSON.stringify([platform.connector.api, Object.entries(credentials).sort()]))
      .digest('base64url');
    const cached = this.clients.get(platform.id);
    if (cached?.fingerprint === fingerprint) return cached.client;
    const client = new PartnerClient({
      ...this.options,
      api: platform.connector.api,
      responses: platform.connector.responses,
      credentials,
    });
    this.clients.set(platform.id, { fingerprint, client });
    return client;
  }
}

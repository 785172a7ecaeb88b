import { type Connector, ConnectorSchema } from '../../../src/config/connector.ts';
import type { Membership } from '../../../src/population/membership.ts';

/** The seed partner's connector as config/platforms/local declares it, with overrides. */
export function seedConnector(
  population: Record<string, unknown> = {},
  responses: Record<string, unknown> = {},
): Connector {
  return ConnectorSchema.parse({
    api: { baseUrl: 'http://127.0.0.1:3001', auth: { type: 'none' }, retry: { maxAttempts: 1 } },
    segments: { creation: 'api', create: { path: '/v1/segment?title={name}' }, idPath: 'segment_id' },
    population: {
      mode: 'batch',
      batchSize: 1000,
      add: { method: 'POST', path: '/v1/segment', body: '{items}' },
      item: { segment: '{segmentIdNumber}', userid: '{userId}' },
      removal: { via: 'call', request: { method: 'DELETE', path: '/v1/segment', body: '{items}' } },
      ...population,
    },
    responses,
  });
}

export function membership(index: number, overrides: Partial<Membership> = {}): Membership {
  return {
    platformId: 99999,
    segmentId: '12345',
    audienceId: 'aud-1',
    dmpUserId: `dmp-user-${String(index).padStart(6, '0')}`,
    partnerUserId: `partner${index}`,
    op: 'add',
    ts: 1_700_000_000_000 + index,
    ...overrides,
  };
}

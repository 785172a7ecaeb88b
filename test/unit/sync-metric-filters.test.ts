import { afterEach, describe, expect, it } from 'vitest';
import { defaultProvider } from '../../src/aws/environment-credentials.ts';
import { SYNC_METRICS } from '../../src/infra/resources.ts';
import { SYNC_METRIC_FILTERS, syncCountFields } from '../../src/observability/sync-metric-filters.ts';

describe('syncCountFields: a request’s counts on its log line', () => {
  it('puts the mapping and the redirect on the one line', () => {
    expect(
      syncCountFields([
        { name: 'MappingStored', platformId: 99999, reason: 'stored' },
        { name: 'SyncRedirected', platformId: 88888 },
      ]),
    ).toEqual({
      line: { metric: 'MappingStored', platform: '99999', reason: 'stored', next: '88888' },
      extraLines: [],
    });
  });

  it('gives platforms a chain skipped lines of their own, and `none` for what a count lacks', () => {
    expect(
      syncCountFields([
        { name: 'SyncRejected', platformId: 1, reason: 'consent_gdpr_denied' },
        { name: 'SyncRejected', platformId: 2, reason: 'consent_gdpr_denied' },
        { name: 'SyncRedirected', platformId: 3 },
      ]),
    ).toEqual({
      line: { metric: 'SyncRejected', platform: '1', reason: 'consent_gdpr_denied', next: '3' },
      extraLines: [{ metric: 'SyncRejected', platform: '2', reason: 'consent_gdpr_denied' }],
    });
    expect(syncCountFields([{ name: 'OptOut' }])).toEqual({
      line: { metric: 'OptOut', platform: 'none', reason: 'none' },
      extraLines: [],
    });
    expect(syncCountFields([])).toEqual({ line: {}, extraLines: [] });
  });

  it('has one filter per funnel metric, each reading only fields it requires', () => {
    expect(SYNC_METRIC_FILTERS.map((filter) => filter.metricName).sort()).toEqual(
      [...SYNC_METRICS.names].sort(),
    );
    for (const filter of SYNC_METRIC_FILTERS) {
      expect(filter.dimensions[SYNC_METRICS.environmentDimension]).toBe('$.environment');
      for (const field of Object.values(filter.dimensions)) expect(filter.match[field]).toBe('*');
    }
  });
});

describe('the environment-only credential provider (user-sync bundle)', () => {
  const saved = { ...process.env };
  afterEach(() => {
    process.env = { ...saved };
  });

  it('reads the credentials Lambda puts in the environment', async () => {
    process.env['AWS_ACCESS_KEY_ID'] = 'AKIDEXAMPLE';
    process.env['AWS_SECRET_ACCESS_KEY'] = 'secret-example';
    process.env['AWS_SESSION_TOKEN'] = 'session-example';
    const credentials = await defaultProvider({})();
    expect(credentials).toMatchObject({
      accessKeyId: 'AKIDEXAMPLE',
      secretAccessKey: 'secret-example',
      sessionToken: 'session-example',
    });
  });

  it('fails clearly without them, and looks nowhere else', async () => {
    delete process.env['AWS_ACCESS_KEY_ID'];
    delete process.env['AWS_SECRET_ACCESS_KEY'];
    await expect(defaultProvider({})()).rejects.toThrow(/environment variable credentials/);
  });
});

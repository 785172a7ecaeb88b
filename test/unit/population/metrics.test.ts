import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  EVENT_TO_PARTNER_LATENCY,
  POPULATION_METRICS,
  PowertoolsPopulationMetrics,
} from '../../../src/observability/powertools.ts';

/** EMF records the deliver step prints (CloudWatch reads them from the function's log). */
function capture(): { records: () => Record<string, unknown>[] } {
  const lines: string[] = [];
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    lines.push(...String(chunk).split('\n').filter(Boolean));
    return true;
  });
  return {
    records: () =>
      lines.flatMap((line) => {
        try {
          const parsed = JSON.parse(line) as Record<string, unknown>;
          return '_aws' in parsed ? [parsed] : [];
        } catch {
          return [];
        }
      }),
  };
}

afterEach(() => {
  vi.restoreAllMocks();
  delete process.env['POWERTOOLS_METRICS_DISABLED'];
});

describe('population metrics', () => {
  it('reports event-to-partner latency in milliseconds per platform, every value of the invocation', () => {
    process.env['POWERTOOLS_METRICS_DISABLED'] = 'false';
    const out = capture();
    const metrics = new PowertoolsPopulationMetrics('deliver');
    metrics.latency(99999, 1200);
    metrics.latency(99999, 850);
    metrics.latency(77777, 40);
    metrics.count(POPULATION_METRICS.delivered, 99999, 2);
    metrics.flush();

    const latency = out
      .records()
      .filter((record) =>
        (record['_aws'] as { CloudWatchMetrics: { Metrics: { Name: string }[] }[] }).CloudWatchMetrics.some(
          (directive) => directive.Metrics.some((m) => m.Name === EVENT_TO_PARTNER_LATENCY),
        ),
      );
    expect(EVENT_TO_PARTNER_LATENCY).toBe('EventToPartnerLatency');
    expect(latency.map((record) => [record['platform'], record[EVENT_TO_PARTNER_LATENCY]])).toEqual([
      ['99999', [1200, 850]],
      ['77777', 40],
    ]);
    type Directive = { Namespace: string; Dimensions: string[][]; Metrics: { Unit: string }[] };
    const first = latency[0] as { _aws: { CloudWatchMetrics: Directive[] } };
    const [directive] = first._aws.CloudWatchMetrics as [Directive];
    expect(directive.Namespace).toBe('DmpActivation');
    expect(directive.Dimensions.flat()).toEqual(expect.arrayContaining(['environment', 'platform']));
    expect(directive.Metrics[0]?.Unit).toBe('Milliseconds');
    // The counts are not mixed into the latency records.
    expect(latency.some((record) => POPULATION_METRICS.delivered in record)).toBe(false);
  });
});

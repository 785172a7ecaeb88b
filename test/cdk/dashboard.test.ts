import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { addEnvironmentStacks, selectEnvironments } from '../../lib/app.ts';
import {
  EVENT_TO_PARTNER_LATENCY,
  LATENCY_PERCENTILES,
  SEGMENT_DELIVERIES_QUERY,
} from '../../lib/constructs/delivery-dashboard.ts';
import { ENVIRONMENTS_DIR, REPO_ROOT } from '../../lib/repo.ts';
import { deliveryPlatforms } from '../../src/infra/population.ts';
import { FILE_METRICS, METRICS_NAMESPACE, SYNC_METRICS } from '../../src/infra/resources.ts';
import { POPULATION_METRICS } from '../../src/observability/powertools.ts';
import { SEGMENT_DELIVERY_MESSAGE } from '../../src/population/delivery-summary.ts';

/**
 * The environment's dashboard, widget by widget, as an on-call engineer reads it: each question of
 * the runbook has its widget, with the metric or query that answers it. Synthesized without
 * bundling (the widgets do not depend on the code assets).
 */

interface Widget {
  readonly type: string;
  readonly properties: {
    readonly title: string;
    readonly metrics?: unknown[][];
    readonly query?: string;
    readonly view?: string;
  };
}

let widgets: Widget[];
let template: Template;
let environment: string;

/** The dashboard body, CloudFormation tokens (the region, log group and queue names) as `TOKEN`. */
function dashboardWidgets(t: Template): Widget[] {
  const dashboards = Object.values(t.findResources('AWS::CloudWatch::Dashboard'));
  expect(dashboards).toHaveLength(1);
  const body = dashboards[0]!['Properties']['DashboardBody'] as
    | string
    | { 'Fn::Join': [string, (string | object)[]] };
  const text =
    typeof body === 'string'
      ? body
      : body['Fn::Join'][1]
          .map((part) => (typeof part === 'string' ? part : 'TOKEN'))
          .join(body['Fn::Join'][0]);
  return (JSON.parse(text) as { widgets: Widget[] }).widgets;
}

function widget(title: RegExp): Widget {
  const found = widgets.filter((w) => title.test(w.properties.title ?? ''));
  expect(
    found.map((w) => w.properties.title),
    String(title),
  ).toHaveLength(1);
  return found[0]!;
}

/** The search expressions and metric names a graph widget draws. */
function drawn(w: Widget): string {
  return JSON.stringify(w.properties.metrics ?? []);
}

beforeAll(() => {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  const [config] = selectEnvironments(ENVIRONMENTS_DIR, 'dev');
  environment = config!.name;
  expect(deliveryPlatforms(config!.platforms).length).toBeGreaterThan(0);
  const [stack] = addEnvironmentStacks(app, [config!]);
  template = Template.fromStack(stack!);
  widgets = dashboardWidgets(template);
});

describe('the environment dashboard', () => {
  it('graphs event-to-partner latency per platform at p50, p95 and p99', () => {
    const latency = drawn(widget(/^Event to partner latency by platform/));
    for (const statistic of LATENCY_PERCENTILES) {
      expect(latency).toContain(
        `SEARCH('Namespace=\\"${METRICS_NAMESPACE}\\" MetricName=\\"${EVENT_TO_PARTNER_LATENCY}\\" ${SYNC_METRICS.environmentDimension}=\\"${environment}\\"', '${statistic}', 300)`,
      );
      // One line per platform, named by its dimension.
      expect(latency).toContain(`${statistic} platform \${PROP('Dim.platform')}`);
    }
  });

  it('graphs deliveries per platform, and tabulates them per segment from the deliver logs', () => {
    expect(drawn(widget(/^Population: memberships by platform$/))).toContain(POPULATION_METRICS.delivered);
    const perSegment = widget(/^Deliveries per platform and segment/);
    expect(perSegment.type).toBe('log');
    expect(perSegment.properties.view).toBe('table');
    expect(perSegment.properties.query).toContain(`filter message = "${SEGMENT_DELIVERY_MESSAGE}"`);
    expect(perSegment.properties.query).toContain('by platformId, segmentId, audienceId');
    expect(perSegment.properties.query).toContain(SEGMENT_DELIVERIES_QUERY.join('\n| '));
    // It reads the deliver function's own log group, nothing wider.
    expect(perSegment.properties.query).toMatch(/^SOURCE 'TOKEN' \| /);
  });

  it('gives the runbook the per-segment query the dashboard runs', () => {
    const runbook = readFileSync(join(REPO_ROOT, 'docs', 'operations.md'), 'utf8');
    const block = SEGMENT_DELIVERIES_QUERY.map((line, index) => `  ${index === 0 ? '' : '| '}${line}`).join(
      '\n',
    );
    expect(runbook).toContain(block);
  });

  it('graphs partner calls, errors and throttles per platform', () => {
    const partner = drawn(widget(/^Population: partner calls, errors and throttles by platform$/));
    for (const name of [POPULATION_METRICS.calls, POPULATION_METRICS.errors, POPULATION_METRICS.throttled])
      expect(partner).toContain(`MetricName=\\"${name}\\"`);
  });

  it('graphs the depth and the oldest message age of every population DLQ', () => {
    const dlqs = Object.keys(template.findResources('AWS::SQS::Queue')).filter(
      (id) => id.startsWith('Population') && id.includes('DeadLetterQueue'),
    );
    expect(dlqs.length).toBeGreaterThanOrEqual(2);
    const depth = widget(/^Dead-letter queues: messages$/);
    const age = widget(/^Queues: age of the oldest message/);
    expect(drawn(depth)).toContain('ApproximateNumberOfMessagesVisible');
    expect(drawn(age)).toContain('ApproximateAgeOfOldestMessage');
    // Every DLQ by its queue name (a token in the body): as many lines as queues.
    expect(depth.properties.metrics).toHaveLength(dlqs.length);
    expect(age.properties.metrics).toHaveLength(2 * dlqs.length);
  });

  it('graphs files published per platform', () => {
    const files = drawn(widget(/^Files published by platform$/));
    expect(files).toContain(`MetricName=\\"${FILE_METRICS.published}\\"`);
    expect(files).toContain(`MetricName=\\"${FILE_METRICS.rows}\\"`);
  });

  it('graphs the sync funnel per platform', () => {
    const funnel = drawn(widget(/^Sync funnel by platform$/));
    for (const name of SYNC_METRICS.names) expect(funnel).toContain(`MetricName=\\"${name}\\"`);
  });
});

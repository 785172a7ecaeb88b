import { SYNC_METRICS } from '../infra/resources.ts';
import type { SyncCount, SyncMetricName } from '../sync/service.ts';

/**
 * The user-sync funnel's metrics come from its log, not from EMF records: the handler's one INFO
 * line per request carries the request's counts in a few flat fields, and CloudWatch Logs metric
 * filters on the function's log group (lib/constructs/monitoring.ts) turn them into the metrics
 * the dashboard graphs, with the same names, namespace and dimensions as before. An EMF record
 * per count cost ~290 bytes of log ingestion each; these fields cost ~40 bytes per request.
 *
 * A request makes at most one count of its own (its mapping, its refusal or its opt-out) and at
 * most one redirect; a chain that skips platforms (consent, template) adds one SyncRejected per
 * skipped platform, rare enough to take a line of its own.
 */

/** The fields a count takes on a log line (all strings, as dimension values are). */
export interface SyncCountFields {
  /** The request's own count: MappingStored, MappingUnchanged, SyncRejected or OptOut. */
  metric?: SyncMetricName;
  /** Its platform id, `none` when it has none. */
  platform?: string;
  /** Its reason (a refusal's code, the mapping's outcome), `none` when it has none. */
  reason?: string;
  /** The platform the chain redirects the browser to (SyncRedirected). */
  next?: string;
}

/** A request's counts as fields of its INFO line, and the lines of the counts that did not fit. */
export function syncCountFields(counts: readonly SyncCount[]): {
  readonly line: SyncCountFields;
  readonly extraLines: readonly SyncCountFields[];
} {
  const line: SyncCountFields = {};
  const extraLines: SyncCountFields[] = [];
  for (const count of counts) {
    if (count.name === 'SyncRedirected' && line.next === undefined) {
      line.next = platformField(count.platformId);
    } else {
      const fields = {
        metric: count.name,
        platform: platformField(count.platformId),
        reason: count.reason ?? 'none',
      };
      if (line.metric === undefined) Object.assign(line, fields);
      else extraLines.push(fields);
    }
  }
  return { line, extraLines };
}

const platformField = (platformId: number | undefined) =>
  platformId === undefined ? 'none' : String(platformId);

/** The message of the extra lines, besides the request's `sync request`. */
export const SYNC_COUNT_MESSAGE = 'sync count';

/** A metric filter on the user-sync log group, spelled as data (the CDK builds it; tests apply it). */
export interface SyncMetricFilter {
  readonly metricName: SyncMetricName;
  /** JSON fields (`$.name`) and the string each must equal, or `*` for "is present". */
  readonly match: Readonly<Record<string, string>>;
  /** Dimension name -> JSON field its value is read from; every one is in `match` too. */
  readonly dimensions: Readonly<Record<string, string>>;
}

/** The log line's `environment` field, which every filter's first dimension reads. */
export const ENVIRONMENT_FIELD = 'environment';

const environment = `$.${ENVIRONMENT_FIELD}`;

function requestCount(metricName: SyncMetricName, withReason: boolean): SyncMetricFilter {
  const dimensions: Record<string, string> = {
    [SYNC_METRICS.environmentDimension]: environment,
    [SYNC_METRICS.platformDimension]: '$.platform',
    ...(withReason ? { reason: '$.reason' } : {}),
  };
  return {
    metricName,
    match: {
      '$.metric': metricName,
      ...Object.fromEntries(Object.values(dimensions).map((field) => [field, '*'])),
    },
    dimensions,
  };
}

/**
 * One filter per funnel metric (SYNC_METRICS.names), each counting 1 per matching line. The
 * dimension sets are those the EMF records had: environment and platform, plus the reason of a
 * refusal and the outcome of a mapping write.
 */
export const SYNC_METRIC_FILTERS: readonly SyncMetricFilter[] = [
  {
    metricName: 'SyncRedirected',
    match: { '$.next': '*', [environment]: '*' },
    dimensions: {
      [SYNC_METRICS.environmentDimension]: environment,
      [SYNC_METRICS.platformDimension]: '$.next',
    },
  },
  requestCount('MappingStored', true),
  requestCount('MappingUnchanged', true),
  requestCount('SyncRejected', true),
  requestCount('OptOut', false),
];

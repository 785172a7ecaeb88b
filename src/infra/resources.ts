/**
 * Definitions of the AWS resources the handlers use, shared by the CDK stack (lib/) and the
 * embedded local stack (local/), so that the two cannot drift.
 */

export interface TableDefinition {
  /** Construct id in the CDK stack. */
  readonly id: string;
  /** Table name in the local stack. */
  readonly localName: string;
  readonly partitionKey: { readonly name: string; readonly type: 'S' | 'N' };
  readonly sortKey?: { readonly name: string; readonly type: 'S' | 'N' };
  readonly timeToLiveAttribute?: string;
  /** Environment variable through which the handlers receive the table name. */
  readonly envVar: string;
  /** Global secondary indexes (projection ALL, on-demand like the table). */
  readonly globalIndexes?: readonly {
    readonly name: string;
    readonly partitionKey: { readonly name: string; readonly type: 'S' | 'N' };
    readonly sortKey?: { readonly name: string; readonly type: 'S' | 'N' };
  }[];
  /**
   * A DynamoDB stream of the table's changes, with what each record carries. dynalite has none: the
   * local stack emulates it (local/event-sources/dynamodb-stream.ts).
   */
  readonly stream?: StreamViewType;
}

/** What a DynamoDB stream record carries besides the keys (StreamSpecification.StreamViewType). */
export type StreamViewType = 'NEW_AND_OLD_IMAGES' | 'NEW_IMAGE' | 'OLD_IMAGE' | 'KEYS_ONLY';

/**
 * One item per (DMP user, platform): pk `user#<dmpUserId>`, sk `platform#<id>`, and short-lived
 * replay guards for sync callbacks signed over the static token: pk `replay#<platformId>#<digest>`,
 * sk `replay`.
 * Both expire through `expiresAt` (epoch seconds).
 *
 * A mapping item's attributes (a stream consumer may rely on them): `platformId` (N),
 * `partnerUserId` (S, the partner's id), `firstSeen`, `lastSeen`, `lastChanged` (ISO-8601 S),
 * `previousPartnerUserId` (S, after a change), `expiresAt` (N), `version` (N) and, since user-sync
 * hardening, `verifiedAt` (S, ISO-8601: set by minted-token or signed callbacks; a static-token
 * callback never replaces such an id). A new mapping is written whole by one PutItem, so a stream
 * shows it as an INSERT (or a MODIFY when it replaced an expired item TTL had not removed yet).
 */
export const MAPPING_TABLE: TableDefinition = {
  id: 'MappingTable',
  localName: 'dmp-local-mappings',
  partitionKey: { name: 'pk', type: 'S' },
  sortKey: { name: 'sk', type: 'S' },
  timeToLiveAttribute: 'expiresAt',
  envVar: 'MAPPING_TABLE_NAME',
  // A stored or changed partner id releases the user's pending population events
  // (lambdas/release-pending), so the user-sync path stays one read and at most one write.
  stream: 'NEW_AND_OLD_IMAGES',
};

/**
 * One item per (platform, DMP audience): pk `platform#<id>`, sk `audience#<audienceId>`, holding
 * the partner's segment id once obtained, or the lease of the one caller creating it, or the
 * partner's refusal. Never expires: a partner segment id is reused for the audience's lifetime.
 */
export const SEGMENT_TABLE: TableDefinition = {
  id: 'SegmentTable',
  localName: 'dmp-local-segments',
  partitionKey: { name: 'pk', type: 'S' },
  sortKey: { name: 'sk', type: 'S' },
  envVar: 'SEGMENT_TABLE_NAME',
};

/**
 * Segment population's state (src/population/dynamo-store.ts), one table, keyed by prefix:
 * - `m#<platformId>#<dmpUserId>` / `<segmentId>`: the newest membership event, stored as the intent
 *   before the partner call (ts, op, partner id, the delivery message and position that sent it):
 *   orders adds and removes;
 * - `prog#<messageId>` / `-`: what became of each membership of a delivery message (progress.ts):
 *   a redelivery sends and counts nothing settled again;
 * - `tally#<platformId>` / `<messageId>#<segmentId>`: the outcomes of a settled delivery message;
 * - `pending#<platformId>#<dmpUserId>` / `<segmentId>`: an event for a user not synced yet;
 * - `stats#<platformId>` / `<segmentId>`: delivered, pending, rejected, dlq, superseded counts;
 * - `rejected#<yyyy-mm-dd>` / `<iso time>#<id>`: what was set aside, and why (`dmp rejected`);
 * - `rate#<platformId>` / `<window>`: calls started in a rate-limit window, by every Lambda;
 * - `expiry-swept#<platformId>` / `-`: how far the expiry sweep has come (src/population/expiry.ts).
 * Everything but the counts and the sweep's mark expires through `expiresAt` (epoch seconds).
 *
 * The sparse `byExpiry` index holds only the stored adds whose removal the service must send at
 * expiry (partners that take removals but no lifetime): `xq` = `x#<platformId>#<shard>`, `xt` =
 * when the removal is due (epoch seconds). Writing a removal drops the membership from it.
 */
export const EXPIRY_INDEX = { name: 'byExpiry', partition: 'xq', sort: 'xt' } as const;

export const POPULATION_TABLE: TableDefinition = {
  id: 'PopulationTable',
  localName: 'dmp-local-population',
  partitionKey: { name: 'pk', type: 'S' },
  sortKey: { name: 'sk', type: 'S' },
  timeToLiveAttribute: 'expiresAt',
  envVar: 'POPULATION_TABLE_NAME',
  globalIndexes: [
    {
      name: EXPIRY_INDEX.name,
      partitionKey: { name: EXPIRY_INDEX.partition, type: 'S' },
      sortKey: { name: EXPIRY_INDEX.sort, type: 'N' },
    },
  ],
};

/**
 * Legacy file delivery (src/files/dynamo-store.ts documents the layout): staged memberships of
 * file-mode platforms, one item per (platform, segment, DMP user, op, event time), found per
 * window through the `byWindow` index; the pending windows; the publication records; the export
 * lease per platform. Staged items expire (`expiresAt`) after the redelivery horizon.
 */
export const FILE_STAGING_TABLE: TableDefinition = {
  id: 'FileStagingTable',
  localName: 'dmp-local-file-staging',
  partitionKey: { name: 'pk', type: 'S' },
  sortKey: { name: 'sk', type: 'S' },
  timeToLiveAttribute: 'expiresAt',
  envVar: 'FILE_STAGING_TABLE_NAME',
  globalIndexes: [
    { name: 'byWindow', partitionKey: { name: 'wpk', type: 'S' }, sortKey: { name: 'wsk', type: 'S' } },
  ],
};

export const TABLES = [MAPPING_TABLE, SEGMENT_TABLE, POPULATION_TABLE, FILE_STAGING_TABLE] as const;

export interface BucketDefinition {
  /** Construct id in the CDK stack. */
  readonly id: string;
  /** Bucket name in the local stack (fauxqs' embedded S3). */
  readonly localName: string;
  /** Environment variable through which the handlers receive the bucket name. */
  readonly envVar: string;
}

/** Our outbox for file-mode platforms whose destination is S3 without a bucket of their own. */
export const FILE_OUTBOX_BUCKET: BucketDefinition = {
  id: 'FileOutboxBucket',
  localName: 'dmp-local-file-outbox',
  envVar: 'FILE_OUTBOX_BUCKET',
};

export const BUCKETS = [FILE_OUTBOX_BUCKET] as const;

export interface RouteDefinition {
  readonly method: 'GET' | 'POST';
  readonly path: string;
  /** Key of the function (in FUNCTIONS) that serves the route. */
  readonly function: FunctionKey;
  /**
   * `iam`: callers sign with SigV4 and need `execute-api:Invoke` on the route (the DMP's
   * back end); absent: a public route (the browser's).
   */
  readonly auth?: 'iam';
}

export type FunctionKey =
  | 'userSync'
  | 'route'
  | 'deliver'
  | 'releasePending'
  | 'expireMemberships'
  | 'exportFiles'
  | 'exportFilesSftp'
  | 'privacy';

export interface FunctionDefinition {
  /** Construct id in the CDK stack. */
  readonly id: string;
  /** Entry file, relative to the repository root. */
  readonly entry: string;
  readonly memorySizeMb: number;
  readonly timeoutSeconds: number;
  readonly tables: readonly { readonly table: TableDefinition; readonly access: 'read' | 'readWrite' }[];
  /**
   * Secrets the function reads (names produced by src/config/secrets.ts): the sync secrets (platform
   * sync tokens and keys, the token key), or the platforms' API credentials (`…/api`), never both.
   */
  readonly secrets: 'platforms+syncTokenKey' | 'platformApi' | 'none';
  /**
   * Reads the privacy key (src/privacy/digest.ts): the functions that look up tombstones or record
   * or delete a user's rejections.
   */
  readonly privacyKey?: true;
  /**
   * Modules left out of the bundle (esbuild externals). ssh2's optional native parts: its crypto
   * binding (`*.node`) and `cpu-features`; ssh2 loads both in a try/catch and falls back to pure
   * JavaScript, which is what runs on arm64 Lambda.
   */
  readonly bundleExternal?: readonly string[];
  /** Buckets the function writes objects to. */
  readonly buckets?: readonly BucketDefinition[];
  /**
   * Invoked on a schedule, once per platform of the given population mode whose files go to the
   * given kind of destination, every `connector.files.everyMinutes` minutes, with the event
   * `{ "platformId": <id> }`.
   */
  readonly schedule?: { readonly perPlatformMode: 'file'; readonly destination: 's3' | 'sftp' };
  /**
   * How the function runs in AWS where it departs from the project's defaults (DEFAULT_RUNTIME).
   * The CDK stack applies these (lib/constructs/service-function.ts) and the cost model prices the
   * same values (bench/cost/inputs.ts): what is priced is what is deployed.
   */
  readonly runtime?: FunctionRuntimeSettings;
}

export interface FunctionRuntimeSettings {
  /**
   * `active`: Lambda samples requests into X-Ray (the first each second, then 5 %); `off`: no
   * traces (the function's role then needs no X-Ray statement).
   */
  readonly tracing: 'active' | 'off';
  /**
   * Lambda's own log lines (`platform.start`, `platform.report`, ...) are INFO; at WARN only
   * failures are written (timeouts, out-of-memory, init errors). Durations stay in the Lambda
   * metrics. Needs the JSON log format, which every function uses.
   */
  readonly systemLogLevel: 'INFO' | 'WARN';
  /**
   * `emf`: Powertools writes an embedded-metric-format record per count; `logMetricFilters`: the
   * counts ride on the function's one INFO line per request and CloudWatch Logs metric filters
   * (src/observability/sync-metric-filters.ts) turn them into the same metrics.
   */
  readonly metrics: 'emf' | 'logMetricFilters';
}

/**
 * What a function without `runtime` gets. Every function runs in Lambda, which hands it its role's
 * credentials in the environment: none needs the default chain's other links at cold start.
 */
export const DEFAULT_RUNTIME: FunctionRuntimeSettings = {
  tracing: 'active',
  systemLogLevel: 'INFO',
  metrics: 'emf',
};

export const runtimeOf = (definition: FunctionDefinition): FunctionRuntimeSettings =>
  definition.runtime ?? DEFAULT_RUNTIME;

export const FUNCTIONS: Record<FunctionKey, FunctionDefinition> = {
  userSync: {
    id: 'UserSyncFunction',
    entry: 'lambdas/user-sync/handler.ts',
    memorySizeMb: 512,
    timeoutSeconds: 5,
    tables: [{ table: MAPPING_TABLE, access: 'readWrite' }],
    secrets: 'platforms+syncTokenKey',
    // The per-browser path, a billion calls a month at a large DMP: its observability is chosen
    // for its price (docs/operations.md, "Tracing and logs of the sync path"). Every request still
    // leaves one INFO line with its outcome and counts; failures are still logged and alarmed.
    runtime: {
      tracing: 'off',
      systemLogLevel: 'WARN',
      metrics: 'logMetricFilters',
    },
  },
  /** Audience events in: validates, looks up partner ids, obtains partner segments, hands out work. */
  route: {
    id: 'PopulationRouteFunction',
    entry: 'lambdas/route/handler.ts',
    memorySizeMb: 1024,
    timeoutSeconds: 60,
    tables: [
      { table: MAPPING_TABLE, access: 'read' },
      { table: SEGMENT_TABLE, access: 'readWrite' },
      { table: POPULATION_TABLE, access: 'readWrite' },
      // File-mode platforms' memberships are staged for the exporter (src/files/staging-store.ts).
      { table: FILE_STAGING_TABLE, access: 'readWrite' },
    ],
    secrets: 'platformApi',
    privacyKey: true,
  },
  /** A platform's delivery queue: micro-batches (or single calls) to the partner's API. */
  deliver: {
    id: 'PopulationDeliverFunction',
    entry: 'lambdas/deliver/handler.ts',
    memorySizeMb: 1024,
    timeoutSeconds: 60,
    tables: [{ table: POPULATION_TABLE, access: 'readWrite' }],
    secrets: 'platformApi',
    privacyKey: true,
  },
  /** The mapping table's stream: a user's sync releases the user's pending events; an opt-out is forgotten. */
  releasePending: {
    id: 'PendingReleaseFunction',
    entry: 'lambdas/release-pending/handler.ts',
    memorySizeMb: 512,
    timeoutSeconds: 30,
    tables: [
      { table: POPULATION_TABLE, access: 'readWrite' },
      { table: FILE_STAGING_TABLE, access: 'readWrite' },
      // A browser's /optout (a request item in the mapping table's stream) is forgotten here.
      { table: MAPPING_TABLE, access: 'readWrite' },
      { table: SEGMENT_TABLE, access: 'read' },
    ],
    secrets: 'none',
    privacyKey: true,
    // Invoked by the sync path's writes (about once per stream shard per second at a large DMP's
    // load): its traces and Lambda's platform lines are priced per sync, like user-sync's
    // (docs/cost-model.md). Its own log line per invocation, its metrics and its failure
    // destination (alarmed) stay; durations stay in the Lambda metrics.
    runtime: {
      tracing: 'off',
      systemLogLevel: 'WARN',
      metrics: 'emf',
    },
  },
  /** `POST /privacy/forget` (IAM-authorized): the DMP's privacy requests (src/privacy). */
  privacy: {
    id: 'PrivacyFunction',
    entry: 'lambdas/privacy/handler.ts',
    memorySizeMb: 512,
    timeoutSeconds: 29,
    tables: [
      { table: MAPPING_TABLE, access: 'readWrite' },
      { table: POPULATION_TABLE, access: 'readWrite' },
      { table: FILE_STAGING_TABLE, access: 'readWrite' },
      { table: SEGMENT_TABLE, access: 'read' },
    ],
    secrets: 'none',
    privacyKey: true,
  },
  /** Every minute: the removals of memberships that expired, for partners that take no lifetime. */
  expireMemberships: {
    id: 'MembershipExpiryFunction',
    entry: 'lambdas/expire-memberships/handler.ts',
    memorySizeMb: 512,
    timeoutSeconds: 300,
    tables: [{ table: POPULATION_TABLE, access: 'readWrite' }],
    secrets: 'none',
  },
  /**
   * File-mode platforms whose files go to S3 (our outbox or a partner's bucket). Apart from the
   * SFTP exporter, so that it never loads ssh2 (cold start) and holds no SFTP secret.
   */
  exportFiles: {
    id: 'ExportFilesFunction',
    entry: 'lambdas/export-files/handler.ts',
    // gzip is CPU-bound: 1769 MB is one full vCPU.
    memorySizeMb: 1769,
    timeoutSeconds: 900,
    tables: [
      { table: FILE_STAGING_TABLE, access: 'readWrite' },
      { table: SEGMENT_TABLE, access: 'read' },
    ],
    secrets: 'none',
    buckets: [FILE_OUTBOX_BUCKET],
    schedule: { perPlatformMode: 'file', destination: 's3' },
  },
  /** File-mode platforms whose files go to a partner's SFTP server (credentials in its API secret). */
  exportFilesSftp: {
    id: 'ExportFilesSftpFunction',
    entry: 'lambdas/export-files-sftp/handler.ts',
    memorySizeMb: 1769,
    timeoutSeconds: 900,
    tables: [
      { table: FILE_STAGING_TABLE, access: 'readWrite' },
      { table: SEGMENT_TABLE, access: 'read' },
    ],
    secrets: 'platformApi',
    schedule: { perPlatformMode: 'file', destination: 'sftp' },
    bundleExternal: ['cpu-features', '*.node'],
  },
};

export const ROUTES: readonly RouteDefinition[] = [
  { method: 'GET', path: '/sync', function: 'userSync' },
  { method: 'GET', path: '/uid', function: 'userSync' },
  { method: 'GET', path: '/optout', function: 'userSync' },
  { method: 'POST', path: '/optout', function: 'userSync' },
  { method: 'POST', path: '/privacy/forget', function: 'privacy', auth: 'iam' },
];

/** Environment variables every function gets, besides its tables'. */
export const COMMON_ENV = {
  environmentName: 'DMP_ENVIRONMENT',
  serviceName: 'POWERTOOLS_SERVICE_NAME',
  metricsNamespace: 'POWERTOOLS_METRICS_NAMESPACE',
} as const;

export const METRICS_NAMESPACE = 'DmpActivation';

/**
 * The common environment of one function, exactly as the CDK stack sets it (the local stack can use
 * the same helper). The service name is the function's folder under `lambdas/` (e.g. `user-sync`).
 */
export function functionServiceName(definition: FunctionDefinition): string {
  const parts = definition.entry.split('/');
  return parts.length >= 2 ? parts[parts.length - 2]! : definition.id;
}

export function commonEnvironment(
  definition: FunctionDefinition,
  environmentName: string,
): Record<string, string> {
  return {
    [COMMON_ENV.environmentName]: environmentName,
    [COMMON_ENV.serviceName]: functionServiceName(definition),
    [COMMON_ENV.metricsNamespace]: METRICS_NAMESPACE,
  };
}

/**
 * Names of the user-sync funnel metrics (namespace METRICS_NAMESPACE), each with a `platform`
 * dimension; the CDK dashboard graphs them.
 */
export const SYNC_METRICS = {
  names: ['SyncRedirected', 'MappingStored', 'MappingUnchanged', 'SyncRejected', 'OptOut'],
  platformDimension: 'platform',
  environmentDimension: 'environment',
} as const;

/** CloudFormation stack of one environment, and the outputs the operator CLI reads from it. */
export function stackName(environmentName: string): string {
  return `DmpActivation-${environmentName}`;
}

export const STACK_OUTPUTS = {
  apiUrl: 'ApiUrl',
  mappingTableName: 'MappingTableName',
  segmentTableName: 'SegmentTableName',
  syncPixelUrl: 'SyncPixelUrl',
  audienceQueueUrl: 'AudienceEventsQueueUrl',
  populationTableName: 'PopulationTableName',
  fileStagingTableName: 'FileStagingTableName',
  fileOutboxBucketName: 'FileOutboxBucketName',
} as const;

/**
 * Seconds a file window waits after its end before it is exported (staging stops writing into a
 * window half-way through it). Default 120; the local stack shortens it for demos.
 */
export const FILE_EXPORT_GRACE_ENV = 'FILE_EXPORT_GRACE_SECONDS';

export function fileExportGraceMs(env: NodeJS.ProcessEnv = process.env): number {
  const seconds = Number(env[FILE_EXPORT_GRACE_ENV] ?? '120');
  return Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : 120_000;
}

/** Metrics of file delivery (namespace METRICS_NAMESPACE, dimension `platform`). */
export const FILE_METRICS = {
  published: 'FilesPublished',
  rows: 'FileRowsPublished',
  failed: 'FilePublicationFailed',
  /** A window has failed `alarmAfterFailures` times or more: the alarm's metric. */
  failing: 'FilePublicationFailing',
} as const;

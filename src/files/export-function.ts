import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { dynamoDbClient } from '../aws/clients.ts';
import { embeddedEnvironment } from '../config/embedded.ts';
import type { EnvironmentConfig } from '../config/schema.ts';
import * as z from '../config/zod-mini.ts';
import { fileExportGraceMs, SEGMENT_TABLE } from '../infra/resources.ts';
import { createLogger, PowertoolsFileMetrics } from '../observability/powertools.ts';
import { DynamoSegmentStore } from '../segments/segment-store.ts';
import { type ExportReport, FileExporter, type FileTarget } from './exporter.ts';
import { type FileDestinationKind, type FilePlatform, filePlatforms } from './platforms.ts';
import { fileStagingFromEnv } from './staging-store.ts';

/**
 * The export-files Lambdas, one per destination kind (lambdas/export-files: S3,
 * lambdas/export-files-sftp: SFTP), so that the S3 function never loads ssh2. Each handler module
 * passes its service name and how to reach a platform's target; everything else is shared here.
 * Called once at the handler module's load (cold start): the embedded configuration, clients created.
 */

export interface ExportFilesResult {
  readonly ok: boolean;
  readonly error?: string;
  readonly report?: ExportReport;
}

/** What EventBridge Scheduler sends: the schedule's fixed input. */
// zod's mini build: the full one would double this function's bundle (see embeddedEnvironment).
const EventSchema = z.strictObject({ platformId: z.number().check(z.int(), z.positive()) });

export function exportFilesHandler(options: {
  readonly serviceName: string;
  readonly destination: FileDestinationKind;
  readonly targetFor: (platform: FilePlatform, config: EnvironmentConfig) => FileTarget;
}) {
  const logger = createLogger(options.serviceName);
  const config = embeddedEnvironment();
  const store = fileStagingFromEnv(config, dynamoDbClient());
  const metrics = new PowertoolsFileMetrics(options.serviceName);
  const all = filePlatforms(config);
  const platforms = new Map(
    all
      .filter((platform) => platform.files.destination.type === options.destination)
      .map((platform) => [platform.platformId, platform]),
  );
  const targets = new Map<number, FileTarget>();
  const graceMs = fileExportGraceMs();
  const segmentTable = process.env[SEGMENT_TABLE.envVar];
  if (!segmentTable) throw new Error(`${SEGMENT_TABLE.envVar} is not set`);
  const segments = new DynamoSegmentStore(dynamoDbClient(), segmentTable);

  /** Partner segment ids of a platform (for empty files): those obtained from the partner. */
  async function knownSegments(platformId: number): Promise<string[]> {
    return (await segments.list(platformId)).flatMap((record) =>
      record.state === 'ready' && record.partnerSegmentId ? [record.partnerSegmentId] : [],
    );
  }

  async function exportFiles(event: unknown, context: Context): Promise<ExportFilesResult> {
    const parsed = EventSchema.safeParse(event);
    if (!parsed.success) {
      logger.error('bad schedule input', { issues: parsed.error.issues.map((issue) => issue.message) });
      return { ok: false, error: 'event must be {"platformId": <id>}' };
    }
    const platform = platforms.get(parsed.data.platformId);
    if (!platform) {
      const other = all.find((candidate) => candidate.platformId === parsed.data.platformId);
      const error = other
        ? `platform ${other.platformId} delivers files by ${other.files.destination.type}, not by ${options.destination}: another export function serves it`
        : `platform ${parsed.data.platformId} does not deliver files`;
      logger.error('not a platform of this function', { platformId: parsed.data.platformId, error });
      return { ok: false, error };
    }
    let target = targets.get(platform.platformId);
    if (!target) {
      target = options.targetFor(platform, config);
      targets.set(platform.platformId, target);
    }
    const exporter = new FileExporter({
      store,
      now: Date.now,
      owner: context.awsRequestId,
      metrics,
      logger,
      knownSegments,
    });
    // Failures are recorded per window and retried by later runs (with backoff); throwing here
    // would only make the scheduler invoke again at once.
    const report = await exporter.run(
      { platformId: platform.platformId, files: platform.files, target },
      { graceMs, leaseMs: context.getRemainingTimeInMillis() + 60_000 },
    );
    // A run with nothing to do is the common case (every few minutes): debug level only.
    logger[report.windows.length > 0 ? 'info' : 'debug']('export run', {
      platformId: platform.platformId,
      ran: report.ran,
      windows: report.windows.map(({ segmentId, window, outcome, rows, files }) => ({
        segmentId,
        window,
        outcome,
        rows,
        files,
      })),
    });
    return { ok: report.windows.every((window) => window.outcome !== 'failed'), report };
  }

  return middy(exportFiles).use(injectLambdaContext(logger, { resetKeys: true }));
}

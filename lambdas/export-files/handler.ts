import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import * as z from 'zod';
import { dynamoDbClient, s3Client } from '../../src/aws/clients.ts';
import { JsonSecrets } from '../../src/aws/secrets.ts';
import { loadRuntimeEnvironment } from '../../src/config/load.ts';
import { type ExportReport, FileExporter, type FileTarget } from '../../src/files/exporter.ts';
import { fileStagingFromEnv, targetFor } from '../../src/files/factory.ts';
import { filePlatforms } from '../../src/files/platforms.ts';
import { fileExportGraceMs, SEGMENT_TABLE } from '../../src/infra/resources.ts';
import { createLogger, PowertoolsFileMetrics } from '../../src/observability/powertools.ts';
import { DynamoSegmentStore } from '../../src/segments/segment-store.ts';

// Cold start: configuration validated, clients created once.
const SERVICE_NAME = 'export-files';
const logger = createLogger(SERVICE_NAME);
const config = loadRuntimeEnvironment();
const store = fileStagingFromEnv(config, dynamoDbClient());
const secrets = new JsonSecrets();
const metrics = new PowertoolsFileMetrics(SERVICE_NAME);
const platforms = new Map(filePlatforms(config).map((platform) => [platform.platformId, platform]));
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

/** What EventBridge Scheduler sends: the schedule's fixed input. */
const EventSchema = z.object({ platformId: z.number().int().positive() }).strict();

export interface ExportFilesResult {
  readonly ok: boolean;
  readonly error?: string;
  readonly report?: ExportReport;
}

async function exportFiles(event: unknown, context: Context): Promise<ExportFilesResult> {
  const parsed = EventSchema.safeParse(event);
  if (!parsed.success) {
    logger.error('bad schedule input', { issues: parsed.error.issues.map((issue) => issue.message) });
    return { ok: false, error: 'event must be {"platformId": <id>}' };
  }
  const platform = platforms.get(parsed.data.platformId);
  if (!platform) {
    logger.error('not a file-mode platform', { platformId: parsed.data.platformId });
    return { ok: false, error: `platform ${parsed.data.platformId} does not deliver files` };
  }
  let target = targets.get(platform.platformId);
  if (!target) {
    target = targetFor(platform, {
      environment: config.name,
      s3: s3Client(),
      readSecret: (name, schema) => secrets.read(name, schema),
    });
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

export const handler = middy(exportFiles).use(injectLambdaContext(logger, { resetKeys: true }));

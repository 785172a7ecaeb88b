import { s3Client } from '../../src/aws/clients.ts';
import { exportFilesHandler } from '../../src/files/export-function.ts';
import { s3TargetFor } from '../../src/files/targets/s3.ts';

/** Scheduled per S3 file-mode platform: publishes its closed windows (src/files, docs/files.md). */
export const handler = exportFilesHandler({
  serviceName: 'export-files',
  destination: 's3',
  targetFor: (platform) => s3TargetFor(platform, s3Client()),
});

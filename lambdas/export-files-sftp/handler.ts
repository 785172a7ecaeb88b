import { JsonSecrets } from '../../src/aws/secrets.ts';
import { exportFilesHandler } from '../../src/files/export-function.ts';
import { sftpTargetFor } from '../../src/files/targets/sftp.ts';

/**
 * Scheduled per SFTP file-mode platform: publishes its closed windows (src/files, docs/files.md).
 * Apart from the S3 function so that only this bundle carries ssh2.
 */
const secrets = new JsonSecrets();

export const handler = exportFilesHandler({
  serviceName: 'export-files-sftp',
  destination: 'sftp',
  targetFor: (platform, config) =>
    sftpTargetFor(platform, config.name, (name, schema) => secrets.read(name, schema)),
});

import type { FilesSettings } from '../config/connector.ts';
import type { EnvironmentConfig } from '../config/schema.ts';

/**
 * The file-mode platforms of an environment and how the exporter is scheduled for them. Kept free
 * of AWS and SFTP clients: the CDK app, the local stack and the CLI read it.
 */

export interface FilePlatform {
  readonly platformId: number;
  readonly name: string;
  readonly files: FilesSettings;
}

/** How a platform's files leave: each kind has its own export function (lambdas/export-files*). */
export type FileDestinationKind = FilesSettings['destination']['type'];

/** Platforms of the environment whose population mode is `file`. */
export function filePlatforms(config: EnvironmentConfig): FilePlatform[] {
  return config.platforms.flatMap((platform) =>
    platform.connector?.population.mode === 'file' && platform.connector.files
      ? [{ platformId: platform.id, name: platform.name, files: platform.connector.files }]
      : [],
  );
}

/** What the scheduler sends the export-files function: the platform to export. */
export function exportFilesInput(platformId: number): { platformId: number } {
  return { platformId };
}

/** The schedule's name (unique per environment): `export-files-<platformId>`. */
export function exportFilesScheduleName(platformId: number): string {
  return `export-files-${platformId}`;
}

import type { FileWindow } from './naming.ts';

/**
 * What the exporter remembers about one (platform, segment, window): the files it publishes and
 * how far each got. Every step is recorded before it is taken, so a run that dies anywhere is
 * finished by the next one without publishing a row twice or losing one:
 *
 * file: uploading -> committing -> published
 * - `uploading`: the bytes go where the partner cannot see them yet (SFTP `<name>.part`), or,
 *   where an upload is atomic (S3: an object appears whole or not at all), straight to the name.
 *   A rerun uploads again, unless the name is already visible (an atomic upload that finished):
 *   then the file is only measured again, never re-sent.
 * - `committing`: the file is made visible (SFTP rename). A rerun renames the temporary file
 *   again if it is still there; if it is gone the rename happened (the partner may even have
 *   taken the file away already), so it is published.
 * - `published`.
 * The window: `publishing` until every file and then the manifest are published, then
 * `published` (or `empty`: nothing to write).
 */

export type FileStep = 'uploading' | 'committing' | 'published';

export interface PublishedFile {
  readonly name: string;
  readonly step: FileStep;
  /** Known from `committing` on. */
  readonly rows?: number;
  readonly bytes?: number;
  readonly sha256?: string;
}

export type WindowState = 'publishing' | 'published' | 'empty';

export interface PublicationRecord {
  readonly platformId: number;
  readonly segmentId: string;
  readonly window: FileWindow;
  readonly state: WindowState;
  /** Data files by part (index 0 is part 1). */
  readonly files: readonly PublishedFile[];
  readonly manifest?: PublishedFile;
  /** Where the files go: `s3://bucket/prefix`, `sftp://host:port/dir`. */
  readonly destination: string;
  /** Failed attempts since the last success. */
  readonly failures: number;
  /** Epoch ms before which the next attempt waits (backoff after a failure). */
  readonly nextAttemptAt?: number;
  readonly lastError?: string;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly publishedAt?: string;
  /**
   * For the accounting, set when the window is settled: the staged changes it held (one per
   * accepted membership event) and those a later change of the same user replaced. A pure function
   * of the staged rows, so a rerun after a crash records the same figures.
   */
  readonly memberships?: number;
  readonly superseded?: number;
}

/** Per segment: staged changes awaiting their file, delivered (file published), superseded. */
export interface FileAccounting {
  pendingFile: number;
  delivered: number;
  superseded: number;
}

/**
 * What a settled window counts as: its staged changes are delivered (the file carries the last
 * change of each user; without an op column a removal is delivered by leaving the user out), except
 * those superseded by a later change in the same window.
 */
export function settledCounts(record: PublicationRecord): { delivered: number; superseded: number } {
  const memberships = record.memberships ?? totalRows(record);
  const superseded = record.superseded ?? 0;
  return { delivered: memberships - superseded, superseded };
}

export function totalRows(record: Pick<PublicationRecord, 'files'>): number {
  return record.files.reduce((sum, file) => sum + (file.rows ?? 0), 0);
}

/** Delay between failed attempts: the next run, then 1, 3, 7... runs skipped, at most an hour. */
export const MAX_RETRY_DELAY_MS = 3_600_000;

export function retryDelayMs(failures: number, everyMinutes: number): number {
  const intervalMs = everyMinutes * 60_000;
  const exponent = Math.min(Math.max(failures, 1) - 1, 20);
  return Math.min(intervalMs * (2 ** exponent - 1), MAX_RETRY_DELAY_MS);
}

export interface ManifestDocument {
  readonly version: 1;
  readonly platformId: number;
  readonly segmentId: string;
  readonly windowStart: string;
  readonly windowMinutes: number;
  readonly rows: number;
  readonly bytes: number;
  readonly files: readonly { name: string; rows: number; bytes: number; sha256: string }[];
}

/** The manifest: a pure function of the published files, so a rewrite is byte-identical. */
export function manifestOf(record: PublicationRecord): ManifestDocument {
  const files = record.files.map((file) => ({
    name: file.name,
    rows: file.rows ?? 0,
    bytes: file.bytes ?? 0,
    sha256: file.sha256 ?? '',
  }));
  return {
    version: 1,
    platformId: record.platformId,
    segmentId: record.segmentId,
    windowStart: new Date(record.window.startMs).toISOString(),
    windowMinutes: record.window.minutes,
    rows: files.reduce((sum, file) => sum + file.rows, 0),
    bytes: files.reduce((sum, file) => sum + file.bytes, 0),
    files,
  };
}

/**
 * Time windows and file names of legacy file delivery (pure: no clock, no I/O).
 *
 * - A window is `everyMinutes` long and aligned to the Unix epoch in UTC (so 5-minute windows
 *   start at :00, :05, ... of every hour, and daily ones at 00:00 UTC). A membership belongs to
 *   the window in which it was staged.
 * - A file is named from the platform's template with the window's start (UTC, zero-padded):
 *   the seed's `Mapp_dmp_<segmentId>_<yyyy>_<MM>_<dd>_<HH>_<mm>.tsv.gz` by default.
 * - Split suffix: when a window is split into several files (more rows than `maxRowsPerFile`),
 *   the first keeps the plain name and part N (N >= 2) gets `_partN` inserted before the name's
 *   extension (the first `.` after the last placeholder: `..._12_05_part2.tsv.gz`), or fills
 *   `{part}` where the template has one (`1` for the first). Two files of one window therefore
 *   never share a name, and neither do two windows (the template must carry the full start).
 */

export interface FileWindow {
  /** Start, epoch milliseconds (a whole multiple of the window length). */
  readonly startMs: number;
  readonly minutes: number;
}

const MINUTE_MS = 60_000;

export class FileNameError extends Error {
  override readonly name = 'FileNameError';
}

export function windowOf(atMs: number, everyMinutes: number): FileWindow {
  const lengthMs = everyMinutes * MINUTE_MS;
  return { startMs: Math.floor(atMs / lengthMs) * lengthMs, minutes: everyMinutes };
}

export function windowEndMs(window: FileWindow): number {
  return window.startMs + window.minutes * MINUTE_MS;
}

/** `2026-11-30T12:05Z/5`: sortable (same length for every window of one platform), readable. */
export function windowKey(window: FileWindow): string {
  return `${new Date(window.startMs).toISOString().slice(0, 16)}Z/${window.minutes}`;
}

export function parseWindowKey(key: string): FileWindow {
  const match = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2})Z\/(\d{1,4})$/.exec(key);
  const startMs = match ? Date.parse(`${match[1]}:00Z`) : Number.NaN;
  if (!match || Number.isNaN(startMs)) throw new FileNameError(`not a window key: ${key}`);
  return { startMs, minutes: Number(match[2]) };
}

/** Segment ids go into file names: only characters that are safe in S3 keys and SFTP paths. */
const SAFE_SEGMENT_ID = /^[A-Za-z0-9._-]{1,128}$/;

export interface FileNameFields {
  readonly segmentId: string;
  readonly platformId: number;
  readonly window: FileWindow;
  /** 1 for the first (or only) file of the window. */
  readonly part: number;
}

const pad = (value: number, width = 2) => String(value).padStart(width, '0');

export function renderFileName(template: string, fields: FileNameFields): string {
  if (!SAFE_SEGMENT_ID.test(fields.segmentId) || /^\.+$/.test(fields.segmentId)) {
    throw new FileNameError(
      `segment id ${JSON.stringify(fields.segmentId)} cannot be part of a file name (allowed: A-Z a-z 0-9 . _ -)`,
    );
  }
  if (!Number.isInteger(fields.part) || fields.part < 1) throw new FileNameError(`bad part ${fields.part}`);
  const start = new Date(fields.window.startMs);
  const values: Record<string, string> = {
    '{segmentId}': fields.segmentId,
    '{platformId}': String(fields.platformId),
    '{yyyy}': pad(start.getUTCFullYear(), 4),
    '{MM}': pad(start.getUTCMonth() + 1),
    '{dd}': pad(start.getUTCDate()),
    '{HH}': pad(start.getUTCHours()),
    '{mm}': pad(start.getUTCMinutes()),
    '{part}': String(fields.part),
  };
  let effective = template;
  if (fields.part > 1 && !template.includes('{part}')) {
    // Before the extension that follows the last placeholder, or at the end.
    const lastPlaceholderEnd = template.lastIndexOf('}') + 1;
    const dot = template.indexOf('.', lastPlaceholderEnd);
    const at = dot === -1 ? template.length : dot;
    effective = `${template.slice(0, at)}_part${fields.part}${template.slice(at)}`;
  }
  return effective.replaceAll(/\{[A-Za-z]+\}/g, (placeholder) => {
    const value = values[placeholder];
    if (value === undefined) throw new FileNameError(`unknown placeholder ${placeholder} in ${template}`);
    return value;
  });
}

/** The name a file is uploaded under before its rename (SFTP): never matches `*.tsv.gz`. */
export function temporaryNameOf(name: string): string {
  return `${name}.part`;
}

import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { FilesSettings } from '../config/connector.ts';
import { type FileWindow, renderFileName, windowEndMs, windowKey, windowOf } from './naming.ts';
import {
  manifestOf,
  type PublicationRecord,
  type PublishedFile,
  retryDelayMs,
  totalRows,
} from './publication.ts';
import {
  type GzipTsv,
  gzipTsv,
  linesOf,
  PartSplitter,
  type RowTally,
  type StagedRow,
  type WrittenFile,
} from './tsv.ts';

/**
 * The scheduled export of one file-mode platform: for every (segment, window) with staged changes
 * whose window has closed, oldest first, publish its file(s) and then its manifest, following the
 * steps in publication.ts so that a crash anywhere is finished by the next run, exactly once.
 *
 * - One run per platform at a time (a lease): EventBridge Scheduler may invoke twice, and a slow
 *   run may overlap the next one.
 * - A window is exported only `graceMs` after it closed: staging refuses to write into a window
 *   later than half that (see DynamoFileStore), so no row can arrive in a window already exported.
 * - A window that fails is retried by later runs with backoff; later windows of the same segment
 *   wait for it (with an op column, an add and a later remove must reach the partner in order).
 */

/** Where staged rows and publication records live (DynamoFileStore implements it). */
export interface ExportStore {
  /** Windows with staged rows that started before `startedBeforeMs`, oldest first. */
  pendingWindows(platformId: number, startedBeforeMs: number): Promise<PendingWindow[]>;
  /** The window's staged rows, grouped by user in event order, in a stable order. */
  rows(pending: PendingWindow): AsyncIterable<StagedRow>;
  /** Forgets a pending window once its publication is settled (its record remains). */
  settlePending(pending: PendingWindow): Promise<void>;
  getRecord(
    platformId: number,
    segmentId: string,
    window: FileWindow,
  ): Promise<PublicationRecord | undefined>;
  putRecord(record: PublicationRecord): Promise<void>;
  acquireLease(platformId: number, owner: string, nowMs: number, leaseMs: number): Promise<boolean>;
  /** Marks a window as pending (empty files: a window without staged rows). Idempotent. */
  addPending(pending: PendingWindow): Promise<void>;
  /** Start of the last window for which empty files were considered (epoch ms), if any. */
  getEmptyCursor(platformId: number): Promise<number | undefined>;
  setEmptyCursor(platformId: number, windowStartMs: number): Promise<void>;
  releaseLease(platformId: number, owner: string): Promise<void>;
}

export interface PendingWindow {
  readonly platformId: number;
  readonly segmentId: string;
  readonly window: FileWindow;
  /** Staging shards the window's rows were spread over. */
  readonly shards: number;
}

/** A partner's file drop (S3, SFTP). One session per run. */
export interface FileTarget {
  /** `s3://bucket/prefix`, `sftp://host:port/dir`: for records and operators. */
  readonly description: string;
  open(): Promise<TargetSession>;
}

export interface TargetSession {
  /**
   * Writes the bytes where the partner cannot see them yet, or, where an upload is atomic
   * (`atomicUpload`), under the final name. Overwrites an earlier partial attempt.
   */
  upload(name: string, body: Readable, contentType: string): Promise<void>;
  /** Makes an uploaded file visible under its name (SFTP: rename); nothing for atomic uploads. */
  commit(name: string): Promise<void>;
  /** After a crash while committing: true when the commit happened (the temporary file is gone). */
  committed(name: string): Promise<boolean>;
  /** Whether a file of that name is visible to the partner. */
  visible(name: string): Promise<boolean>;
  close(): Promise<void>;
}

export interface ExportMetrics {
  published(platformId: number, files: number, rows: number, bytes: number): void;
  failed(platformId: number, alarming: boolean): void;
}

export interface ExportLogger {
  info(message: string, fields: Record<string, unknown>): void;
  warn(message: string, fields: Record<string, unknown>): void;
  error(message: string, fields: Record<string, unknown>): void;
}

/** Test seam: called after each recorded step; throwing simulates a crash right there. */
export type Checkpoint = (step: string, detail: { segmentId: string; name?: string }) => void | Promise<void>;

export interface FileExporterDeps {
  readonly store: ExportStore;
  readonly now: () => number;
  readonly metrics?: ExportMetrics;
  readonly logger?: ExportLogger;
  readonly checkpoint?: Checkpoint;
  /** Lease owner id (a request id). */
  readonly owner: string;
  /** The platform's segment ids (partner side), for platforms that want empty files. */
  readonly knownSegments?: (platformId: number) => Promise<readonly string[]>;
}

/** At most this many windows are caught up with empty files per run (after a long outage). */
export const MAX_EMPTY_WINDOWS_PER_RUN = 12;

export interface ExportPlatform {
  readonly platformId: number;
  readonly files: FilesSettings;
  readonly target: FileTarget;
}

/** Default wait after a window closes before it is exported (see DynamoFileStore.stage). */
export const DEFAULT_GRACE_MS = 120_000;

export interface WindowOutcome {
  readonly segmentId: string;
  readonly window: string;
  readonly outcome: 'published' | 'empty' | 'failed' | 'waiting';
  readonly files: readonly string[];
  readonly rows: number;
  readonly error?: string;
}

export interface ExportReport {
  readonly platformId: number;
  /** False when another run holds the platform's lease. */
  readonly ran: boolean;
  readonly windows: readonly WindowOutcome[];
}

export class FileExporter {
  constructor(private readonly deps: FileExporterDeps) {}

  async run(
    platform: ExportPlatform,
    options: { graceMs?: number; leaseMs?: number } = {},
  ): Promise<ExportReport> {
    const { store, now, owner } = this.deps;
    const graceMs = options.graceMs ?? DEFAULT_GRACE_MS;
    const leaseMs = options.leaseMs ?? 900_000;
    if (!(await store.acquireLease(platform.platformId, owner, now(), leaseMs))) {
      this.deps.logger?.warn('another export run holds the lease', { platformId: platform.platformId });
      return { platformId: platform.platformId, ran: false, windows: [] };
    }
    const outcomes: WindowOutcome[] = [];
    let session: TargetSession | undefined;
    try {
      const runAt = now();
      if (platform.files.emptyFiles) await this.markEmptyWindows(platform, runAt, graceMs);
      const pending = (await store.pendingWindows(platform.platformId, runAt)).filter(
        (candidate) => windowEndMs(candidate.window) + graceMs <= runAt,
      );
      const blockedSegments = new Set<string>();
      for (const window of pending) {
        if (blockedSegments.has(window.segmentId)) {
          outcomes.push(waiting(window));
          continue;
        }
        const record = await store.getRecord(platform.platformId, window.segmentId, window.window);
        if (record && (record.state === 'published' || record.state === 'empty')) {
          await store.settlePending(window);
          continue;
        }
        if (record?.nextAttemptAt !== undefined && record.nextAttemptAt > runAt) {
          blockedSegments.add(window.segmentId);
          outcomes.push(waiting(window));
          continue;
        }
        try {
          session ??= await platform.target.open();
          const settled = await this.publishWindow(platform, window, record, session);
          await store.settlePending(window);
          outcomes.push(settled);
        } catch (error) {
          blockedSegments.add(window.segmentId);
          // The session may be broken (a cut connection): open a new one for the next window.
          await session?.close().catch(() => {});
          session = undefined;
          outcomes.push(await this.recordFailure(platform, window, error));
        }
      }
    } finally {
      await session?.close().catch(() => {});
      await store.releaseLease(platform.platformId, owner).catch(() => {});
    }
    return { platformId: platform.platformId, ran: true, windows: outcomes };
  }

  /**
   * Empty files: every closed window since the last run gets a pending marker per known segment
   * (a no-op where rows were staged), so that the loop below writes its file, empty or not.
   * The first run starts at the latest closed window: no backfill.
   */
  private async markEmptyWindows(platform: ExportPlatform, runAt: number, graceMs: number): Promise<void> {
    const { store } = this.deps;
    const segments = (await this.deps.knownSegments?.(platform.platformId)) ?? [];
    const lengthMs = platform.files.everyMinutes * 60_000;
    const latest = windowOf(runAt - graceMs - lengthMs, platform.files.everyMinutes);
    const cursor = await store.getEmptyCursor(platform.platformId);
    let start = cursor === undefined ? latest.startMs : cursor + lengthMs;
    start = Math.max(start, latest.startMs - (MAX_EMPTY_WINDOWS_PER_RUN - 1) * lengthMs);
    if (start > latest.startMs) return;
    for (let at = start; at <= latest.startMs; at += lengthMs) {
      for (const segmentId of segments) {
        await store.addPending({
          platformId: platform.platformId,
          segmentId,
          window: { startMs: at, minutes: platform.files.everyMinutes },
          shards: platform.files.stagingShards,
        });
      }
    }
    await store.setEmptyCursor(platform.platformId, latest.startMs);
  }

  private async publishWindow(
    platform: ExportPlatform,
    pending: PendingWindow,
    existing: PublicationRecord | undefined,
    session: TargetSession,
  ): Promise<WindowOutcome> {
    const { store, now } = this.deps;
    const { files: settings } = platform;
    const stamp = () => new Date(now()).toISOString();
    let record: PublicationRecord = existing ?? {
      platformId: pending.platformId,
      segmentId: pending.segmentId,
      window: pending.window,
      state: 'publishing',
      files: [],
      destination: platform.target.description,
      failures: 0,
      createdAt: stamp(),
      updatedAt: stamp(),
    };
    const save = async (change: Partial<PublicationRecord>) => {
      record = { ...record, ...change, updatedAt: stamp() };
      await store.putRecord(record);
    };
    const setFile = (index: number, file: PublishedFile) => {
      const files = [...record.files];
      files[index] = file;
      return save({ files });
    };
    const checkpoint = async (step: string, name?: string) =>
      this.deps.checkpoint?.(step, { segmentId: pending.segmentId, ...(name ? { name } : {}) });

    // Every run reads all of the window's rows (published parts are skipped, not unread), so the
    // tally is complete and the same whatever run settles the window.
    const tally: RowTally = { memberships: 0, superseded: 0 };
    const splitter = new PartSplitter(linesOf(store.rows(pending), settings.opColumn, tally));
    const nameOf = (part: number) =>
      renderFileName(settings.nameTemplate, {
        segmentId: pending.segmentId,
        platformId: pending.platformId,
        window: pending.window,
        part,
      });
    const emptyFile = settings.emptyFiles && (await splitter.done());
    for (let index = 0; emptyFile || !(await splitter.done()); index += 1) {
      const name = nameOf(index + 1);
      const known = record.files[index];
      const lines = splitter.take(settings.maxRowsPerFile);
      if (known?.step === 'published') {
        await drain(lines);
        continue;
      }
      const tsv = gzipTsv(lines, settings.opColumn);
      let written: WrittenFile;
      if (known?.step === 'committing') {
        written = await measure(tsv);
      } else {
        await setFile(index, { name, step: 'uploading' });
        await checkpoint('uploading', name);
        if (known?.step === 'uploading' && (await session.visible(name))) {
          // An atomic upload finished before the crash: measure, never send again.
          written = await measure(tsv);
        } else {
          try {
            await session.upload(name, tsv.body, 'application/gzip');
          } catch (error) {
            // Stops reading the window (the staged rows, gzip) at once.
            tsv.body.destroy();
            throw error;
          }
          written = await tsv.written;
        }
        await setFile(index, { name, step: 'committing', ...written });
        await checkpoint('uploaded', name);
      }
      if (known?.step !== 'committing' || !(await session.committed(name))) await session.commit(name);
      await checkpoint('committed', name);
      await setFile(index, { name, step: 'published', ...written });
      await checkpoint('published', name);
      if (emptyFile) break;
    }

    if (record.files.length === 0) {
      await save({ state: 'empty', failures: 0, publishedAt: stamp(), ...tally });
      return { ...outcomeBase(pending), outcome: 'empty', files: [], rows: 0 };
    }
    if (settings.manifest && record.manifest?.step !== 'published') {
      const name = renderFileName(settings.manifest.nameTemplate, {
        segmentId: pending.segmentId,
        platformId: pending.platformId,
        window: pending.window,
        part: 1,
      });
      const text = `${JSON.stringify(manifestOf(record), null, 2)}\n`;
      const digest = createHash('sha256').update(text).digest('hex');
      const manifest = { name, rows: totalRows(record), bytes: Buffer.byteLength(text), sha256: digest };
      const before = record.manifest?.step;
      if (before !== 'committing') {
        await save({ manifest: { ...manifest, step: 'uploading' } });
        if (!(before === 'uploading' && (await session.visible(name))))
          await session.upload(name, Readable.from([Buffer.from(text)]), 'application/json');
        await save({ manifest: { ...manifest, step: 'committing' } });
      }
      if (before !== 'committing' || !(await session.committed(name))) await session.commit(name);
      await save({ manifest: { ...manifest, step: 'published' } });
      await checkpoint('manifest', name);
    }
    await save({ state: 'published', failures: 0, publishedAt: stamp(), ...tally });
    const rows = totalRows(record);
    const bytes = record.files.reduce((sum, file) => sum + (file.bytes ?? 0), 0);
    this.deps.metrics?.published(pending.platformId, record.files.length, rows, bytes);
    this.deps.logger?.info('window published', {
      platformId: pending.platformId,
      segmentId: pending.segmentId,
      window: windowKey(pending.window),
      files: record.files.map((file) => file.name),
      rows,
      bytes,
    });
    return {
      ...outcomeBase(pending),
      outcome: 'published',
      files: record.files.map((file) => file.name),
      rows,
    };
  }

  private async recordFailure(
    platform: ExportPlatform,
    pending: PendingWindow,
    error: unknown,
  ): Promise<WindowOutcome> {
    const { store, now } = this.deps;
    const message = errorMessage(error);
    const at = now();
    const current = await store
      .getRecord(pending.platformId, pending.segmentId, pending.window)
      .catch(() => undefined);
    const failures = (current?.failures ?? 0) + 1;
    const alarming = failures >= platform.files.alarmAfterFailures;
    const stamp = new Date(at).toISOString();
    await store
      .putRecord({
        ...(current ?? {
          platformId: pending.platformId,
          segmentId: pending.segmentId,
          window: pending.window,
          state: 'publishing',
          files: [],
          destination: platform.target.description,
          createdAt: stamp,
        }),
        failures,
        nextAttemptAt: at + retryDelayMs(failures, platform.files.everyMinutes),
        lastError: message,
        updatedAt: stamp,
      } as PublicationRecord)
      .catch((recordError: unknown) =>
        this.deps.logger?.error('cannot record a failed publication', { error: errorMessage(recordError) }),
      );
    this.deps.metrics?.failed(pending.platformId, alarming);
    this.deps.logger?.[alarming ? 'error' : 'warn']('window publication failed', {
      platformId: pending.platformId,
      segmentId: pending.segmentId,
      window: windowKey(pending.window),
      failures,
      error: message,
    });
    return { ...outcomeBase(pending), outcome: 'failed', files: [], rows: 0, error: message };
  }
}

function outcomeBase(pending: PendingWindow) {
  return { segmentId: pending.segmentId, window: windowKey(pending.window) };
}

function waiting(pending: PendingWindow): WindowOutcome {
  return { ...outcomeBase(pending), outcome: 'waiting', files: [], rows: 0 };
}

async function drain(items: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of items) {
    // discarded: already published
  }
}

/** Writes the file to nowhere, for its rows, size and hash. */
async function measure(tsv: GzipTsv): Promise<WrittenFile> {
  await pipeline(
    tsv.body,
    new Writable({
      write(_chunk, _encoding, callback) {
        callback();
      },
    }),
  );
  return tsv.written;
}

export function errorMessage(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const parts = [error.message];
  for (let cause = error.cause; cause instanceof Error && parts.length < 3; cause = cause.cause)
    parts.push(cause.message);
  return parts.join(': ').slice(0, 1000);
}

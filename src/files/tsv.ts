import { createHash } from 'node:crypto';
import { PassThrough, pipeline, Readable, Transform } from 'node:stream';
import { constants, createGzip } from 'node:zlib';

/**
 * The file format, streaming end to end: staged rows -> one line per user -> TSV text in ~256 KB
 * chunks -> gzip (level 6, as `gzip -6`) -> a counting, hashing stream the target uploads. Memory
 * stays flat whatever the number of rows; the bytes are a pure function of the rows (gzip's header
 * carries no time or name), so writing a window again yields the identical file.
 */

/** One staged change as the exporter reads it back, ordered by (dmpUserId, ts, op). */
export interface StagedRow {
  readonly dmpUserId: string;
  readonly partnerUserId: string;
  readonly op: 'add' | 'remove';
  readonly ts: string;
}

export interface FileLine {
  readonly partnerUserId: string;
  readonly op: 'add' | 'remove';
}

/** What a window's rows amount to, for the accounting (`dmp stats`): counted while reading them. */
export interface RowTally {
  /** Staged changes read (one per accepted membership event). */
  memberships: number;
  /** Changes followed by a later change of the same user in the window: only the last one counts. */
  superseded: number;
}

/**
 * One line per user: its last change in the window (rows of one user arrive together, in event
 * order). Without an op column a file lists additions only, so a user whose last change is a
 * removal is left out (an add then a remove in one window cancel out). `tally` counts the rows.
 */
export async function* linesOf(
  rows: AsyncIterable<StagedRow>,
  opColumn: boolean,
  tally: RowTally = { memberships: 0, superseded: 0 },
): AsyncGenerator<FileLine> {
  let current: StagedRow | undefined;
  for await (const row of rows) {
    tally.memberships += 1;
    if (current && current.dmpUserId !== row.dmpUserId) {
      if (opColumn || current.op === 'add') yield { partnerUserId: current.partnerUserId, op: current.op };
    } else if (current) tally.superseded += 1;
    current = row;
  }
  if (current && (opColumn || current.op === 'add'))
    yield { partnerUserId: current.partnerUserId, op: current.op };
}

const FORBIDDEN_IN_TSV = /[\t\r\n]/;

export class TsvFormatError extends Error {
  override readonly name = 'TsvFormatError';
}

const CHUNK_CHARS = 256 * 1024;

/**
 * TSV text in chunks of about 256 KB (one `write` per line would cost more than gzip itself);
 * counts the lines into `counter`.
 */
export async function* tsvChunks(
  lines: AsyncIterable<FileLine>,
  opColumn: boolean,
  counter: { rows: number } = { rows: 0 },
): AsyncGenerator<string> {
  let chunk = '';
  let rows = 0;
  for await (const line of lines) {
    if (FORBIDDEN_IN_TSV.test(line.partnerUserId) || line.partnerUserId.length === 0) {
      // Partner ids are validated when mapped; this guards the file format itself.
      throw new TsvFormatError('a partner user id is empty or contains a tab or line break');
    }
    chunk += opColumn ? `${line.partnerUserId}\t${line.op}\n` : `${line.partnerUserId}\n`;
    rows += 1;
    if (chunk.length >= CHUNK_CHARS) {
      counter.rows = rows;
      yield chunk;
      chunk = '';
    }
  }
  counter.rows = rows;
  if (chunk.length > 0) yield chunk;
}

export interface WrittenFile {
  /** Lines in the file. */
  readonly rows: number;
  /** Size of the gzipped file. */
  readonly bytes: number;
  /** SHA-256 of the gzipped file, lowercase hex. */
  readonly sha256: string;
}

export interface GzipTsv {
  /** The gzipped bytes; consume it exactly once (an upload). */
  readonly body: Readable;
  /** Settles when `body` has ended (or failed). */
  readonly written: Promise<WrittenFile>;
}

export function gzipTsv(lines: AsyncIterable<FileLine>, opColumn: boolean): GzipTsv {
  const counter = { rows: 0 };
  const hash = createHash('sha256');
  let bytes = 0;
  const measure = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      bytes += chunk.length;
      callback(null, chunk);
    },
  });
  const body = new PassThrough();
  const written = new Promise<WrittenFile>((resolve, reject) => {
    pipeline(
      Readable.from(tsvChunks(lines, opColumn, counter)),
      createGzip({ level: 6, memLevel: 8, strategy: constants.Z_DEFAULT_STRATEGY, chunkSize: 64 * 1024 }),
      measure,
      body,
      (error) => {
        if (error) reject(error);
        else resolve({ rows: counter.rows, bytes, sha256: hash.digest('hex') });
      },
    );
  });
  // The caller awaits `written` after the upload; a failure must not surface as unhandled before.
  written.catch(() => {});
  return { body, written };
}

/** Takes at most `limit` items from a shared iterator, leaving the rest for the next part. */
export class PartSplitter<T> {
  private readonly iterator: AsyncIterator<T>;
  private peeked: IteratorResult<T> | undefined;

  constructor(source: AsyncIterable<T>) {
    this.iterator = source[Symbol.asyncIterator]();
  }

  /** True when no item is left. */
  async done(): Promise<boolean> {
    this.peeked ??= await this.iterator.next();
    return this.peeked.done === true;
  }

  async *take(limit: number): AsyncGenerator<T> {
    for (let taken = 0; taken < limit; taken += 1) {
      const next = this.peeked ?? (await this.iterator.next());
      this.peeked = undefined;
      if (next.done) {
        this.peeked = next;
        return;
      }
      yield next.value;
    }
  }

  /** Consumes and discards up to `count` items (a part that is already published). */
  async skip(count: number): Promise<void> {
    for await (const _ of this.take(count)) {
      // discarded
    }
  }
}

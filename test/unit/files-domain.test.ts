import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { FilesSchema } from '../../src/config/connector.ts';
import {
  FileNameError,
  parseWindowKey,
  renderFileName,
  temporaryNameOf,
  windowEndMs,
  windowKey,
  windowOf,
} from '../../src/files/naming.ts';
import { manifestOf, type PublicationRecord, retryDelayMs } from '../../src/files/publication.ts';
import { type FileLine, gzipTsv, linesOf, PartSplitter, type StagedRow } from '../../src/files/tsv.ts';

const SEED_TEMPLATE = 'Mapp_dmp_{segmentId}_{yyyy}_{MM}_{dd}_{HH}_{mm}.tsv.gz';

async function* from<T>(items: readonly T[]): AsyncGenerator<T> {
  yield* items;
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

describe('file windows', () => {
  it('aligns windows to the epoch in UTC, start inclusive, end exclusive', () => {
    const at = Date.parse('2026-11-30T12:09:59.999Z');
    const window = windowOf(at, 5);
    expect(new Date(window.startMs).toISOString()).toBe('2026-11-30T12:05:00.000Z');
    expect(new Date(windowEndMs(window)).toISOString()).toBe('2026-11-30T12:10:00.000Z');
    expect(windowOf(Date.parse('2026-11-30T12:10:00.000Z'), 5).startMs).toBe(windowEndMs(window));
    expect(new Date(windowOf(at, 1440).startMs).toISOString()).toBe('2026-11-30T00:00:00.000Z');
  });

  it('keys a window as sortable text and reads it back', () => {
    const window = windowOf(Date.parse('2026-01-02T03:04:00Z'), 1);
    expect(windowKey(window)).toBe('2026-01-02T03:04Z/1');
    expect(parseWindowKey(windowKey(window))).toEqual(window);
    expect(() => parseWindowKey('yesterday')).toThrow(FileNameError);
  });
});

describe('file names', () => {
  const window = windowOf(Date.parse('2026-03-04T05:06:07Z'), 1);

  it("renders the seed's name: UTC window start, zero-padded", () => {
    expect(renderFileName(SEED_TEMPLATE, { segmentId: '12345', platformId: 99998, window, part: 1 })).toBe(
      'Mapp_dmp_12345_2026_03_04_05_06.tsv.gz',
    );
  });

  it('gives the parts of a split window distinct names (documented _partN suffix, or {part})', () => {
    const names = [1, 2, 3].map((part) =>
      renderFileName(SEED_TEMPLATE, { segmentId: '7', platformId: 1, window, part }),
    );
    expect(names).toEqual([
      'Mapp_dmp_7_2026_03_04_05_06.tsv.gz',
      'Mapp_dmp_7_2026_03_04_05_06_part2.tsv.gz',
      'Mapp_dmp_7_2026_03_04_05_06_part3.tsv.gz',
    ]);
    expect(
      renderFileName('p{platformId}/s{segmentId}-{yyyy}{MM}{dd}{HH}{mm}-{part}.tsv.gz', {
        segmentId: '7',
        platformId: 1,
        window,
        part: 2,
      }),
    ).toBe('p1/s7-202603040506-2.tsv.gz');
  });

  it('refuses a segment id that is not a safe file name component', () => {
    for (const segmentId of ['../etc', 'a/b', '..', '', 'x'.repeat(129), 'a b']) {
      expect(() => renderFileName(SEED_TEMPLATE, { segmentId, platformId: 1, window, part: 1 })).toThrow(
        FileNameError,
      );
    }
  });

  it('uploads under a temporary name that no *.tsv.gz pattern matches', () => {
    expect(temporaryNameOf('a.tsv.gz')).toBe('a.tsv.gz.part');
  });

  it('validates templates: known placeholders, segment id and the full window start', () => {
    const destination = { type: 's3' as const };
    expect(FilesSchema.safeParse({ destination }).success).toBe(true);
    for (const nameTemplate of [
      'Mapp_{segmentId}_{yyyy}_{MM}_{dd}_{HH}.tsv.gz',
      'Mapp_{yyyy}_{MM}_{dd}_{HH}_{mm}.tsv.gz',
      'Mapp_{segmentId}_{yyyy}_{MM}_{dd}_{HH}_{mm}_{minute}.tsv.gz',
      '.hidden_{segmentId}_{yyyy}_{MM}_{dd}_{HH}_{mm}',
    ]) {
      expect(FilesSchema.safeParse({ destination, nameTemplate }).success, nameTemplate).toBe(false);
    }
  });

  it('requires pinned host keys for SFTP destinations', () => {
    expect(FilesSchema.safeParse({ destination: { type: 'sftp', host: 'sftp.example.com' } }).success).toBe(
      false,
    );
    expect(
      FilesSchema.safeParse({
        destination: { type: 'sftp', host: 'sftp.example.com', hostKeySha256: [`SHA256:${'A'.repeat(43)}`] },
      }).success,
    ).toBe(true);
  });
});

describe('file lines', () => {
  const row = (dmpUserId: string, partnerUserId: string, op: 'add' | 'remove', ts: string): StagedRow => ({
    dmpUserId,
    partnerUserId,
    op,
    ts,
  });
  const rows = [
    row('u1', 'p1', 'add', '2026-01-01T00:00:01.000Z'),
    row('u2', 'p2', 'add', '2026-01-01T00:00:01.000Z'),
    row('u2', 'p2', 'remove', '2026-01-01T00:00:02.000Z'),
    row('u3', 'p3', 'remove', '2026-01-01T00:00:01.000Z'),
    row('u3', 'p3', 'add', '2026-01-01T00:00:02.000Z'),
  ];

  it('keeps one line per user, its last change; without an op column additions only', async () => {
    expect(await collect(linesOf(from(rows), false))).toEqual([
      { partnerUserId: 'p1', op: 'add' },
      { partnerUserId: 'p3', op: 'add' },
    ]);
    expect(await collect(linesOf(from(rows), true))).toEqual([
      { partnerUserId: 'p1', op: 'add' },
      { partnerUserId: 'p2', op: 'remove' },
      { partnerUserId: 'p3', op: 'add' },
    ]);
  });

  it('tallies the changes read and those a later change of the same user superseded', async () => {
    for (const opColumn of [false, true]) {
      const tally = { memberships: 0, superseded: 0 };
      await collect(linesOf(from(rows), opColumn, tally));
      // u2's add and u3's removal are replaced by their later change; u2's removal is delivered
      // (without an op column, by leaving u2 out).
      expect(tally).toEqual({ memberships: 5, superseded: 2 });
    }
  });

  it('writes gzipped TSV, one or two columns, and reports rows, bytes and SHA-256', async () => {
    const lines: FileLine[] = [
      { partnerUserId: 'abc', op: 'add' },
      { partnerUserId: 'def', op: 'remove' },
    ];
    for (const opColumn of [false, true]) {
      const file = gzipTsv(from(lines), opColumn);
      const chunks: Buffer[] = [];
      for await (const chunk of file.body) chunks.push(chunk as Buffer);
      const written = await file.written;
      const bytes = Buffer.concat(chunks);
      expect(gunzipSync(bytes).toString()).toBe(opColumn ? 'abc\tadd\ndef\tremove\n' : 'abc\ndef\n');
      expect(written.rows).toBe(2);
      expect(written.bytes).toBe(bytes.length);
      expect(written.sha256).toMatch(/^[0-9a-f]{64}$/);
    }
  });

  it('writes the same bytes for the same rows (a rewrite is identical)', async () => {
    const digest = async () => {
      const file = gzipTsv(from([{ partnerUserId: 'x', op: 'add' as const }]), false);
      for await (const _ of file.body) {
        // consumed
      }
      return (await file.written).sha256;
    };
    expect(await digest()).toBe(await digest());
  });

  it('fails the file on an id that would break the format', async () => {
    const file = gzipTsv(from([{ partnerUserId: 'a\tb', op: 'add' as const }]), false);
    file.body.resume();
    await expect(file.written).rejects.toThrow(/tab or line break/);
  });

  it('splits a stream into parts of at most N items, skipping published ones', async () => {
    const splitter = new PartSplitter(from([1, 2, 3, 4, 5]));
    await splitter.skip(2);
    expect(await collect(splitter.take(2))).toEqual([3, 4]);
    expect(await splitter.done()).toBe(false);
    expect(await collect(splitter.take(2))).toEqual([5]);
    expect(await splitter.done()).toBe(true);
  });
});

describe('publication', () => {
  it('retries a failed window at the next run, then backs off, at most an hour', () => {
    expect([1, 2, 3, 4].map((failures) => retryDelayMs(failures, 5) / 60_000)).toEqual([0, 5, 15, 35]);
    expect(retryDelayMs(30, 5)).toBe(3_600_000);
  });

  it('builds the manifest from the files only (a rewrite is identical)', () => {
    const record: PublicationRecord = {
      platformId: 1,
      segmentId: '7',
      window: { startMs: Date.parse('2026-01-01T00:05:00Z'), minutes: 5 },
      state: 'publishing',
      files: [
        { name: 'a', step: 'published', rows: 2, bytes: 30, sha256: 'aa' },
        { name: 'b', step: 'published', rows: 1, bytes: 20, sha256: 'bb' },
      ],
      destination: 's3://x/',
      failures: 0,
      createdAt: 'c',
      updatedAt: 'u',
    };
    expect(manifestOf(record)).toEqual({
      version: 1,
      platformId: 1,
      segmentId: '7',
      windowStart: '2026-01-01T00:05:00.000Z',
      windowMinutes: 5,
      rows: 3,
      bytes: 50,
      files: [
        { name: 'a', rows: 2, bytes: 30, sha256: 'aa' },
        { name: 'b', rows: 1, bytes: 20, sha256: 'bb' },
      ],
    });
  });
});

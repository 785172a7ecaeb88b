import { randomBytes } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import type { PlatformFilesView } from '../../cli/commands/files.ts';
import type { LocalStack } from '../../local/stack.ts';
import { FilesSchema } from '../../src/config/connector.ts';
import { DynamoFileStore } from '../../src/files/dynamo-store.ts';
import { FileExporter, type FileTarget } from '../../src/files/exporter.ts';
import { renderFileName, windowOf } from '../../src/files/naming.ts';
import { exportFilesScheduleName } from '../../src/files/platforms.ts';
import type { StagedMembership } from '../../src/files/staging.ts';
import { fileStore } from '../../src/files/staging-store.ts';
import { S3Target } from '../../src/files/targets/s3.ts';
import { gzipTsv } from '../../src/files/tsv.ts';
import { FILE_OUTBOX_BUCKET, FILE_STAGING_TABLE } from '../../src/infra/resources.ts';
import { runDmpInProcess } from '../support/cli.ts';
import { useFileTestStack } from './files-support.ts';
import { Browser, expectGif } from './support.ts';

/**
 * File delivery to S3 through the real export-files handler on the local stack: staged
 * memberships of platform 99998 (config/platforms/local) land in fauxqs' embedded S3 outbox,
 * named as the seed recommends, and gunzip to exactly the staged additions.
 */

const PLATFORM = 99998;
let stack: LocalStack;
let s3: S3Client;
let dynamodb: DynamoDBClient;
let cliEnv: Record<string, string>;

useFileTestStack('dmp-files-cli-', (files) => {
  ({ stack, s3, dynamodb, cliEnv } = files);
});

function stagingAt(atMs: number) {
  return fileStore(stack.config, dynamodb, FILE_STAGING_TABLE.localName, { now: () => atMs, graceMs: 5000 });
}

function membership(segmentId: string, index: number, op: 'add' | 'remove' = 'add'): StagedMembership {
  return {
    platformId: PLATFORM,
    segmentId,
    audienceId: 'aud-files',
    dmpUserId: `dmp-user-${String(index).padStart(6, '0')}`,
    partnerUserId: `partner-${index}`,
    op,
    ts: new Date(Date.UTC(2026, 10, 30, 12, 0, 0, index)).toISOString(),
  };
}

async function objectKeys(prefix: string): Promise<string[]> {
  const answer = await s3.send(
    new ListObjectsV2Command({ Bucket: FILE_OUTBOX_BUCKET.localName, Prefix: prefix }),
  );
  return (answer.Contents ?? []).map((object) => object.Key ?? '').sort();
}

async function download(key: string): Promise<Buffer> {
  const answer = await s3.send(new GetObjectCommand({ Bucket: FILE_OUTBOX_BUCKET.localName, Key: key }));
  return Buffer.from(await answer.Body!.transformToByteArray());
}

describe('file delivery to the S3 outbox (embedded S3, real handler)', () => {
  it('publishes one gzipped TSV per segment and window, named as the seed says, then its manifest', async () => {
    // Staged 10 minutes ago: the window (1 minute for 99998) has closed.
    const stagedAt = Date.now() - 10 * 60_000;
    const additions = Array.from({ length: 250 }, (_, index) => membership('4242', index));
    const removed = membership('4242', 900, 'remove');
    await stagingAt(stagedAt).stage([...additions, removed]);

    const result = (await stack.runSchedule(exportFilesScheduleName(PLATFORM))) as {
      ok: boolean;
      report: { windows: { outcome: string; files: string[]; rows: number }[] };
    };
    expect(result.ok).toBe(true);

    const name = renderFileName('Mapp_dmp_{segmentId}_{yyyy}_{MM}_{dd}_{HH}_{mm}.tsv.gz', {
      segmentId: '4242',
      platformId: PLATFORM,
      window: windowOf(stagedAt, 1),
      part: 1,
    });
    expect(name).toMatch(/^Mapp_dmp_4242_\d{4}_\d{2}_\d{2}_\d{2}_\d{2}\.tsv\.gz$/);
    const manifestName = name.replace('.tsv.gz', '.manifest.json');
    expect(await objectKeys(`${PLATFORM}/`)).toEqual(
      [`${PLATFORM}/${manifestName}`, `${PLATFORM}/${name}`].sort(),
    );

    const file = await download(`${PLATFORM}/${name}`);
    const lines = gunzipSync(file).toString('utf8').split('\n');
    expect(lines.pop()).toBe('');
    // Additions only (no op column for 99998): every staged addition once, the removal left out.
    expect(lines.sort()).toEqual(additions.map((m) => m.partnerUserId).sort());

    const manifest = JSON.parse((await download(`${PLATFORM}/${manifestName}`)).toString('utf8'));
    expect(manifest).toMatchObject({
      platformId: PLATFORM,
      segmentId: '4242',
      rows: 250,
      bytes: file.length,
    });
    // `dmp files` lists it, with where to read it.
    const listed = await runDmpInProcess(['files', '--platform', String(PLATFORM), '--json'], cliEnv);
    expect(listed.code).toBe(0);
    const [view] = (JSON.parse(listed.stdout) as { platforms: PlatformFilesView[] }).platforms;
    const window = view!.windows.find((candidate) => candidate.segmentId === '4242')!;
    expect(window).toMatchObject({ state: 'published', rows: 250, failures: 0 });
    expect(window.files.map((entry) => entry.location)).toEqual([
      `s3://${FILE_OUTBOX_BUCKET.localName}/${PLATFORM}/${name}`,
    ]);
    expect(window.manifest?.name).toBe(manifestName);
    const text = await runDmpInProcess(['files'], cliEnv);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`Platform ${PLATFORM}`);
    expect(text.stdout).toContain(name);
    const read = new RegExp(
      `curl -s (${stack.s3Endpoint}/${FILE_OUTBOX_BUCKET.localName}/${PLATFORM}/\\S+) \\| gunzip`,
    );
    const url = read.exec(text.stdout)?.[1];
    expect(url, text.stdout).toBeDefined();
    // What the hint says works: a plain GET of the embedded S3 returns the gzipped file.
    const fetched = Buffer.from(await (await fetch(url!)).arrayBuffer());
    expect(gunzipSync(fetched).toString('utf8').trim().split('\n')).toHaveLength(250);

    expect(manifest.files).toEqual([
      {
        name,
        rows: 250,
        bytes: file.length,
        sha256: (await import('node:crypto')).createHash('sha256').update(file).digest('hex'),
      },
    ]);
  });

  it('stages a redelivered membership nothing twice, and a rerun publishes nothing again', async () => {
    const first = Date.now() - 20 * 60_000;
    const batch = Array.from({ length: 20 }, (_, index) => membership('5151', index));
    await stagingAt(first).stage(batch);
    // The same message again, three minutes later (another window), and again in the first one.
    await stagingAt(first + 3 * 60_000).stage(batch);
    await stagingAt(first).stage(batch.slice(0, 5));

    await stack.runSchedule(exportFilesScheduleName(PLATFORM));
    await stack.runSchedule(exportFilesScheduleName(PLATFORM));

    const keys = (await objectKeys(`${PLATFORM}/Mapp_dmp_5151_`)).filter((key) => key.endsWith('.tsv.gz'));
    expect(keys).toHaveLength(1);
    const lines = gunzipSync(await download(keys[0]!))
      .toString('utf8')
      .trim()
      .split('\n');
    expect(lines.sort()).toEqual(batch.map((m) => m.partnerUserId).sort());
  });

  it('syncs platform 99998 through the reference partner; its file carries the synced partner id', async () => {
    const browser = new Browser('files');
    const hops = await browser.follow(`${stack.apiUrl}/sync?pl=${PLATFORM}`);
    expectGif(hops.at(-1)!, 200);
    const dmpUserId = browser.cookie('dmp_uid')!;
    const partnerUserId = browser.cookie('partner_uid')!;
    const mappings = await runDmpInProcess(['mappings', '--json', '--', dmpUserId], cliEnv);
    expect(JSON.parse(mappings.stdout).mappings).toEqual([
      expect.objectContaining({ platformId: PLATFORM, partnerUserId }),
    ]);

    // What the population route step stages for this user, published by the next run.
    const stagedAt = Date.now() - 40 * 60_000;
    await stagingAt(stagedAt).stage([
      { ...membership('7373', 0), dmpUserId, partnerUserId, ts: new Date(stagedAt).toISOString() },
    ]);
    await stack.runSchedule(exportFilesScheduleName(PLATFORM));
    const [key] = (await objectKeys(`${PLATFORM}/Mapp_dmp_7373_`)).filter((entry) =>
      entry.endsWith('.tsv.gz'),
    );
    expect(gunzipSync(await download(key!)).toString('utf8')).toBe(`${partnerUserId}\n`);
    // For the accounting (`dmp why`): delivered once its file is published, and in which file.
    expect(await stagingAt(Date.now()).membershipDelivery(PLATFORM, '7373', dmpUserId)).toEqual([
      expect.objectContaining({ op: 'add', state: 'published', files: [key!.slice(`${PLATFORM}/`.length)] }),
    ]);
  });

  it('uploads a large file as multipart and reads back the same bytes', async () => {
    const commands: string[] = [];
    s3.middlewareStack.add(
      (next, context) => (args) => {
        commands.push(String(context['commandName']));
        return next(args);
      },
      { step: 'initialize', name: 'countCommands' },
    );
    try {
      const target = new S3Target(s3, {
        bucket: FILE_OUTBOX_BUCKET.localName,
        prefix: 'multipart-test/',
        partSizeBytes: 5 * 1024 * 1024,
      });
      // Random base64url ids barely compress: ~7 MB of gzip, more than one 5 MiB part.
      async function* ids() {
        for (let index = 0; index < 250_000; index += 1)
          yield { partnerUserId: randomBytes(24).toString('base64url'), op: 'add' as const };
      }
      const tsv = gzipTsv(ids(), false);
      const session = await target.open();
      await session.upload('big.tsv.gz', tsv.body, 'application/gzip');
      const written = await tsv.written;
      expect(written.bytes).toBeGreaterThan(5 * 1024 * 1024);
      expect(commands).toContain('CreateMultipartUploadCommand');
      expect(commands).toContain('CompleteMultipartUploadCommand');
      const stored = await download('multipart-test/big.tsv.gz');
      expect(stored.length).toBe(written.bytes);
      expect(gunzipSync(stored).toString('utf8').trim().split('\n')).toHaveLength(250_000);
    } finally {
      s3.middlewareStack.remove('countCommands');
    }
  });

  it('writes empty files for the known segments of a platform that asks for them, nothing otherwise', async () => {
    const platformId = 99911;
    const windowMs = 60_000;
    const start = Math.floor((Date.now() - 60 * 60_000) / windowMs) * windowMs;
    const store = new DynamoFileStore(dynamodb, FILE_STAGING_TABLE.localName, {
      settings: () => ({ everyMinutes: 1, stagingShards: 4 }),
      now: () => start + 1000,
    });
    await store.stage([{ ...membership('801', 1), platformId }]);
    const files = FilesSchema.parse({
      destination: { type: 's3', prefix: 'empty-test/' },
      everyMinutes: 1,
      emptyFiles: true,
    });
    const target = new S3Target(s3, { bucket: FILE_OUTBOX_BUCKET.localName, prefix: 'empty-test/' });
    let clock = start + windowMs + 5000;
    const run = () =>
      new FileExporter({
        store,
        now: () => clock,
        owner: `empty-${clock}`,
        knownSegments: async () => ['801', '802'],
      }).run({ platformId, files, target }, { graceMs: 5000 });

    const first = await run();
    expect(first.windows.map((window) => [window.segmentId, window.outcome, window.rows])).toEqual([
      ['801', 'published', 1],
      ['802', 'published', 0],
    ]);
    clock += windowMs;
    const second = await run();
    expect(second.windows.map((window) => [window.segmentId, window.outcome, window.rows])).toEqual([
      ['801', 'published', 0],
      ['802', 'published', 0],
    ]);
    const keys = await objectKeys('empty-test/');
    expect(keys).toHaveLength(4);
    const empty = keys.find((key) => key.includes('Mapp_dmp_802_'))!;
    expect(gunzipSync(await download(empty)).length).toBe(0);
    // Nothing new to write until the next window closes.
    expect((await run()).windows).toEqual([]);
  });

  it('splits a large window into parts with distinct names; a crash between parts resends none', async () => {
    const platformId = 99912;
    const stagedAt = Date.now() - 50 * 60_000;
    const store = new DynamoFileStore(dynamodb, FILE_STAGING_TABLE.localName, {
      settings: () => ({ everyMinutes: 1, stagingShards: 4 }),
      now: () => stagedAt,
    });
    const rows = Array.from({ length: 250 }, (_, index) => ({ ...membership('901', index), platformId }));
    await store.stage(rows);
    const files = FilesSchema.parse({
      destination: { type: 's3', prefix: 'split-test/' },
      everyMinutes: 1,
      maxRowsPerFile: 100,
      manifest: {},
    });
    const puts: string[] = [];
    s3.middlewareStack.add(
      (next, context) => (args) => {
        const input = (args as { input?: { Key?: string } }).input;
        if (String(context['commandName']) === 'PutObjectCommand') puts.push(input?.Key ?? '');
        return next(args);
      },
      { step: 'initialize', name: 'countPuts' },
    );
    try {
      const target = new S3Target(s3, { bucket: FILE_OUTBOX_BUCKET.localName, prefix: 'split-test/' });
      let crashed = false;
      const run = (crashAfterFirstPart: boolean) =>
        new FileExporter({
          store,
          now: () => Date.now(),
          owner: `split-${Date.now()}-${crashAfterFirstPart}`,
          checkpoint: (step) => {
            if (crashAfterFirstPart && step === 'published' && !crashed) {
              crashed = true;
              throw new Error('simulated crash after the first part');
            }
          },
        }).run({ platformId, files, target }, { graceMs: 5000 });

      expect((await run(true)).windows.map((window) => window.outcome)).toEqual(['failed']);
      // A failure waits for the next run (backoff 0 after the first): the next run finishes it.
      expect((await run(false)).windows.map((window) => window.outcome)).toEqual(['published']);

      const base = renderFileName('Mapp_dmp_{segmentId}_{yyyy}_{MM}_{dd}_{HH}_{mm}.tsv.gz', {
        segmentId: '901',
        platformId,
        window: windowOf(stagedAt, 1),
        part: 1,
      });
      const names = [
        base,
        base.replace('.tsv.gz', '_part2.tsv.gz'),
        base.replace('.tsv.gz', '_part3.tsv.gz'),
      ];
      const manifestName = base.replace('.tsv.gz', '.manifest.json');
      expect(await objectKeys('split-test/')).toEqual(
        [...names, manifestName].map((name) => `split-test/${name}`).sort(),
      );
      // Every part was uploaded once, the first one before the crash, none again after it.
      expect(puts.sort()).toEqual([...names, manifestName].map((name) => `split-test/${name}`).sort());
      const lines: string[] = [];
      for (const name of names) {
        const part = gunzipSync(await download(`split-test/${name}`))
          .toString('utf8')
          .trim()
          .split('\n');
        expect(part.length).toBeLessThanOrEqual(100);
        lines.push(...part);
      }
      expect(lines.sort()).toEqual(rows.map((row) => row.partnerUserId).sort());
      const manifest = JSON.parse((await download(`split-test/${manifestName}`)).toString('utf8'));
      expect(manifest.files.map((file: { name: string }) => file.name)).toEqual(names);
      expect(manifest.rows).toBe(250);
    } finally {
      s3.middlewareStack.remove('countPuts');
    }
  });

  it('records a failing upload, retries it on a later run, and publishes it once', async () => {
    const stagedAt = Date.now() - 30 * 60_000;
    const store = stagingAt(stagedAt);
    await store.stage([membership('6161', 1), membership('6161', 2)]);
    let clock = Date.now();
    const broken: FileTarget = {
      description: 's3://missing-bucket/',
      open: () => new S3Target(s3, { bucket: 'no-such-bucket-here', prefix: '' }).open(),
    };
    const exporter = () => new FileExporter({ store, now: () => clock, owner: `test-${clock}` });
    const settings = stack.config.platforms.find((platform) => platform.id === PLATFORM)!.connector!.files!;
    const platform = { platformId: PLATFORM, files: { ...settings, alarmAfterFailures: 2 }, target: broken };

    const failed = await exporter().run(platform, { graceMs: 5000 });
    expect(failed.windows.map((window) => window.outcome)).toEqual(['failed']);
    const record = await store.getRecord(PLATFORM, '6161', windowOf(stagedAt, 1));
    expect(record).toMatchObject({ state: 'publishing', failures: 1 });
    expect(record?.lastError).toMatch(/bucket/i);

    clock += 60_000;
    const good = new S3Target(s3, { bucket: FILE_OUTBOX_BUCKET.localName, prefix: 'retry-test/' });
    const retried = await exporter().run({ ...platform, target: good }, { graceMs: 5000 });
    expect(retried.windows.map((window) => window.outcome)).toEqual(['published']);
    expect(await store.getRecord(PLATFORM, '6161', windowOf(stagedAt, 1))).toMatchObject({
      state: 'published',
      failures: 0,
    });
    const again = await exporter().run({ ...platform, target: good }, { graceMs: 5000 });
    expect(again.windows).toEqual([]);
    expect((await objectKeys('retry-test/')).filter((key) => key.endsWith('.tsv.gz'))).toHaveLength(1);
  });
});

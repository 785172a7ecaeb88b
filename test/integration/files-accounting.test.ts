import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { gunzipSync } from 'node:zlib';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import type { LocalStack } from '../../local/stack.ts';
import { FileExporter } from '../../src/files/exporter.ts';
import { parseWindowKey, windowEndMs } from '../../src/files/naming.ts';
import { exportFilesScheduleName } from '../../src/files/platforms.ts';
import { fileStore } from '../../src/files/staging-store.ts';
import { S3Target } from '../../src/files/targets/s3.ts';
import { FILE_EXPORT_GRACE_ENV, FILE_OUTBOX_BUCKET, FILE_STAGING_TABLE } from '../../src/infra/resources.ts';
import { runDmpInProcess } from '../support/cli.ts';
import { useFileTestStack } from './files-support.ts';
import { Browser, expectGif } from './support.ts';

/**
 * The accounting of a file-mode platform (99998 of the local config), as an operator reads it:
 * users sent to it are `pending-file` in `dmp why` and `pendingFile` in `dmp stats` while their
 * window's file is not published, and delivered exactly once after, whatever crashed in between.
 */

const PLATFORM = 99998;
let stack: LocalStack;
let s3: S3Client;
let dynamodb: DynamoDBClient;
let workDir: string;
let cliEnv: Record<string, string>;

useFileTestStack('dmp-files-accounting-', (files) => {
  ({ stack, s3, dynamodb, workDir, cliEnv } = files);
});

interface StatsRow {
  platformId: number;
  segmentId: string;
  delivered?: number;
  pending?: number;
  superseded?: number;
  pendingFile?: number;
}

async function dmpJson<T>(args: string[]): Promise<T> {
  // Options before a `--`: a DMP id may start with '-' (base64url), and after `--` it is read as one.
  const end = args.indexOf('--');
  const withJson = end < 0 ? [...args, '--json'] : [...args.slice(0, end), '--json', ...args.slice(end)];
  const result = await runDmpInProcess(withJson, cliEnv);
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as T;
}

async function statsOf(segmentId: string): Promise<StatsRow | undefined> {
  const { rows } = await dmpJson<{ rows: StatsRow[] }>(['stats', '--platform', String(PLATFORM)]);
  return rows.find((row) => row.platformId === PLATFORM && row.segmentId === segmentId);
}

interface WhySegment {
  segmentId: string;
  state: string;
  window?: string;
  files?: string[];
  why: string;
}

async function whyOf(dmpUserId: string): Promise<WhySegment[]> {
  return (await dmpJson<{ segments: WhySegment[] }>(['why', '--platform', String(PLATFORM), '--', dmpUserId]))
    .segments;
}

async function syncedUser(name: string): Promise<{ dmpUserId: string; partnerUserId: string }> {
  const browser = new Browser(name);
  const hops = await browser.follow(`${stack.apiUrl}/sync?pl=${PLATFORM}`);
  expectGif(hops.at(-1)!, 200);
  return { dmpUserId: browser.cookie('dmp_uid')!, partnerUserId: browser.cookie('partner_uid')! };
}

describe('file-mode accounting through the local stack (dmp why, dmp stats)', () => {
  it('counts a sent user as pending-file until its file is published, then delivered once', async () => {
    const synced = await syncedUser('files-accounting');
    const unsynced = 'files-accounting-never-synced-0001';
    const users = join(workDir, 'users.txt');
    writeFileSync(users, `${synced.dmpUserId}\n${unsynced}\n`);
    const sent = await runDmpInProcess(
      [
        'send',
        '--audience',
        'aud-files-accounting',
        '--name',
        'Files accounting',
        '--platform',
        String(PLATFORM),
        '--file',
        users,
      ],
      cliEnv,
    );
    expect(sent.code, sent.stderr).toBe(0);
    await stack.whenIdle();

    const [staged] = await whyOf(synced.dmpUserId);
    expect(staged).toMatchObject({ state: 'pending-file', files: [] });
    expect(staged!.why).toContain('counted as delivered once that file is published');
    const segmentId = staged!.segmentId;
    expect(await statsOf(segmentId)).toMatchObject({ pendingFile: 1, delivered: 0, pending: 1 });
    expect((await whyOf(unsynced)).map((segment) => segment.state)).toEqual(['pending']);

    // The exporter takes a window once it has closed and its grace period passed: wait for that
    // instant (the window is one minute long for 99998), then run the schedule as Scheduler would.
    const graceMs = Number(stack.env[FILE_EXPORT_GRACE_ENV]) * 1000;
    const exportableAt = windowEndMs(parseWindowKey(staged!.window!)) + graceMs;
    await sleep(Math.max(0, exportableAt - Date.now() + 50));
    await stack.runSchedule(exportFilesScheduleName(PLATFORM));

    const [published] = await whyOf(synced.dmpUserId);
    expect(published).toMatchObject({ segmentId, state: 'member' });
    const [name] = published!.files!;
    expect(name).toMatch(new RegExp(`^Mapp_dmp_${segmentId}_\\d{4}_\\d{2}_\\d{2}_\\d{2}_\\d{2}\\.tsv\\.gz$`));
    const object = await s3.send(
      new GetObjectCommand({ Bucket: FILE_OUTBOX_BUCKET.localName, Key: `${PLATFORM}/${name}` }),
    );
    expect(gunzipSync(Buffer.from(await object.Body!.transformToByteArray())).toString('utf8')).toBe(
      `${synced.partnerUserId}\n`,
    );
    expect(await statsOf(segmentId)).toMatchObject({ pendingFile: 0, delivered: 1, pending: 1 });
    // Another run publishes nothing again and counts nothing twice.
    await stack.runSchedule(exportFilesScheduleName(PLATFORM));
    expect(await statsOf(segmentId)).toMatchObject({ pendingFile: 0, delivered: 1, pending: 1 });
  }, 180_000);

  for (const step of ['uploading', 'uploaded', 'committed', 'published', 'manifest']) {
    it(`counts every staged change exactly once when a run crashes at "${step}" and the next one finishes`, async () => {
      // A partner segment obtained as the route step obtains it, so that `dmp why` finds it.
      const { partnerSegmentId: segmentId } = await dmpJson<{ partnerSegmentId: string }>([
        'segments',
        'ensure',
        '--platform',
        String(PLATFORM),
        '--audience',
        `aud-acct-${step}`,
        '--name',
        `Accounting ${step}`,
      ]);
      const stagedAt = Date.now() - 30 * 60_000;
      const store = fileStore(stack.config, dynamodb, FILE_STAGING_TABLE.localName, {
        now: () => stagedAt,
        graceMs: 5000,
      });
      const change = (user: number, op: 'add' | 'remove', ms: number) => ({
        platformId: PLATFORM,
        segmentId,
        audienceId: `aud-acct-${step}`,
        dmpUserId: `acct-user-${step}-${user}`,
        partnerUserId: `acct-partner-${user}`,
        op,
        ts: new Date(stagedAt - 1000 + ms).toISOString(),
      });
      // Three users added; the third removed again later in the same window (its add superseded;
      // without an op column the removal is delivered by leaving the user out of the file).
      await store.stage([
        change(1, 'add', 0),
        change(2, 'add', 1),
        change(3, 'add', 2),
        change(3, 'remove', 3),
      ]);
      expect(await statsOf(segmentId)).toMatchObject({ pendingFile: 4, delivered: 0 });

      const settings = stack.config.platforms.find((platform) => platform.id === PLATFORM)!.connector!.files!;
      const target = new S3Target(s3, { bucket: FILE_OUTBOX_BUCKET.localName, prefix: `acct-${step}/` });
      const run = (crashAt?: string) =>
        new FileExporter({
          store,
          now: Date.now,
          owner: `acct-${step}-${crashAt ?? 'clean'}`,
          checkpoint: (reached) => {
            if (reached === crashAt) throw new Error(`crash at ${reached}`);
          },
        }).run({ platformId: PLATFORM, files: settings, target }, { graceMs: 5000 });

      expect((await run(step)).windows.find((window) => window.segmentId === segmentId)?.outcome).toBe(
        'failed',
      );
      expect(await statsOf(segmentId)).toMatchObject({ pendingFile: 4, delivered: 0 });
      expect((await run()).windows.find((window) => window.segmentId === segmentId)?.outcome).toBe(
        'published',
      );
      const settled = { pendingFile: 0, delivered: 3, superseded: 1 };
      expect(await statsOf(segmentId)).toMatchObject(settled);
      await run();
      expect(await statsOf(segmentId)).toMatchObject(settled);
      expect((await whyOf(`acct-user-${step}-3`)).find((entry) => entry.segmentId === segmentId)?.state).toBe(
        'removed',
      );
    });
  }
});

describe('the local SFTP platform 99997, served by the embedded SFTP server', () => {
  const SFTP_PLATFORM = 99997;

  it('publishes a window over SFTP into the local directory dmp files names, with its op column', async () => {
    const sftp = stack.sftp!;
    expect(sftp.platformIds).toEqual([SFTP_PLATFORM]);
    const destination = stack.config.platforms.find((platform) => platform.id === SFTP_PLATFORM)!.connector!
      .files!.destination;
    // Pointed at the running server and pinned to its generated host key.
    expect(destination).toMatchObject({ type: 'sftp', port: sftp.port, hostKeySha256: [sftp.hostKeySha256] });

    const stagedAt = Date.now() - 20 * 60_000;
    const store = fileStore(stack.config, dynamodb, FILE_STAGING_TABLE.localName, {
      now: () => stagedAt,
      graceMs: 5000,
    });
    const change = (user: number, op: 'add' | 'remove', ms: number) => ({
      platformId: SFTP_PLATFORM,
      segmentId: '9797',
      audienceId: 'aud-sftp-local',
      dmpUserId: `sftp-local-user-${user}`,
      partnerUserId: `sftp-partner-${user}`,
      op,
      ts: new Date(stagedAt - 1000 + ms).toISOString(),
    });
    await store.stage([change(1, 'add', 0), change(2, 'add', 1), change(3, 'remove', 2)]);

    const result = (await stack.runSchedule(exportFilesScheduleName(SFTP_PLATFORM))) as {
      ok: boolean;
      report: { windows: { outcome: string; files: string[] }[] };
    };
    expect(result.ok).toBe(true);
    const [window] = result.report.windows;
    expect(window?.outcome).toBe('published');
    const [name] = window!.files;

    const { platforms } = await dmpJson<{
      platforms: { platformId: number; destination: string; localDirectory?: string }[];
    }>(['files', '--platform', String(SFTP_PLATFORM)]);
    const view = platforms[0]!;
    expect(view.destination).toBe(`sftp://127.0.0.1:${sftp.port}/incoming`);
    expect(view.localDirectory).toBe(join(sftp.root, 'incoming'));
    const lines = gunzipSync(readFileSync(join(view.localDirectory!, name!)))
      .toString('utf8')
      .trim()
      .split('\n')
      .sort();
    expect(lines).toEqual(['sftp-partner-1\tadd', 'sftp-partner-2\tadd', 'sftp-partner-3\tremove']);
    // Renamed into place: no temporary file left; the manifest came last.
    expect(readdirSync(view.localDirectory!).sort()).toEqual(
      [name!, name!.replace('.tsv.gz', '.manifest.json')].sort(),
    );
    const text = await runDmpInProcess(['files', '--platform', String(SFTP_PLATFORM)], cliEnv);
    expect(text.stdout).toContain(`read one: gunzip -c ${join(view.localDirectory!, name!)}`);
    expect(text.stdout).toContain(`sftp -i ${sftp.clientKeyFile} -P ${sftp.port}`);
    expect(text.stdout).toContain(sftp.hostKeySha256);
  });

  it('leaves the S3 export function to S3 platforms: it refuses an SFTP one', async () => {
    // What the S3 function would say if a schedule named an SFTP platform (they never do).
    const { handler } = await import('../../lambdas/export-files/handler.ts');
    const answer = (await handler({ platformId: SFTP_PLATFORM }, {
      awsRequestId: 'wrong-kind',
      getRemainingTimeInMillis: () => 60_000,
    } as never)) as { ok: boolean; error?: string };
    expect(answer).toMatchObject({ ok: false });
    expect(answer.error).toContain('delivers files by sftp, not by s3');
  });
});

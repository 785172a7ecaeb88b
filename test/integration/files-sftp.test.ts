import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ensureTable, type LocalDynamoDb, startDynalite } from '../../local/dynamodb.ts';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from '../../local/endpoints.ts';
import { FilesSchema, type FilesSettings } from '../../src/config/connector.ts';
import { DynamoFileStore } from '../../src/files/dynamo-store.ts';
import { type Checkpoint, FileExporter } from '../../src/files/exporter.ts';
import { renderFileName, windowOf } from '../../src/files/naming.ts';
import type { StagedMembership } from '../../src/files/staging.ts';
import { SftpTarget } from '../../src/files/targets/sftp.ts';
import { FILE_STAGING_TABLE } from '../../src/infra/resources.ts';
import {
  availableSftpServer,
  startCuttingProxy,
  startSftpServer,
  type TestSftpServer,
} from '../support/sftp-server.ts';

/**
 * File delivery over SFTP against a real OpenSSH sshd on loopback (or, where sshd is not
 * installed, ssh2's in-process server: the describe names which), staged in dynalite.
 */

const KIND = availableSftpServer();
const SERVER_NAME = KIND === 'openssh' ? 'OpenSSH sshd' : 'in-process ssh2 SFTP server';
/** Each test its own platform: its own pending windows. */
let PLATFORM = 77000;
const STAGED_AT = Date.parse('2026-11-30T10:00:30Z');
const TEMPLATE = 'Mapp_dmp_{segmentId}_{yyyy}_{MM}_{dd}_{HH}_{mm}.tsv.gz';

let server: TestSftpServer;
let dynamo: LocalDynamoDb;
let client: DynamoDBClient;
let store: DynamoFileStore;
let clock = STAGED_AT + 10 * 60_000;

beforeAll(async () => {
  server = await startSftpServer(KIND);
  dynamo = await startDynalite({});
  client = new DynamoDBClient({ region: LOCAL_REGION, endpoint: dynamo.url, credentials: LOCAL_CREDENTIALS });
  await ensureTable(client, { ...FILE_STAGING_TABLE, localName: 'files-sftp-test' });
  store = new DynamoFileStore(client, 'files-sftp-test', {
    settings: () => ({ everyMinutes: 1, stagingShards: 4 }),
    now: () => STAGED_AT,
  });
});

beforeEach(() => {
  PLATFORM += 1;
});

afterAll(async () => {
  client?.destroy();
  await dynamo?.stop();
  await server?.stop();
});

function settings(overrides: { hostKeySha256?: string[] } = {}): FilesSettings {
  return FilesSchema.parse({
    destination: {
      type: 'sftp',
      host: server.host,
      port: server.port,
      directory: server.uploadPath,
      hostKeySha256: overrides.hostKeySha256 ?? [server.hostKeySha256],
      timeoutMs: 10_000,
    },
    everyMinutes: 1,
  });
}

function target(files: FilesSettings, port = server.port): SftpTarget {
  if (files.destination.type !== 'sftp') throw new Error('sftp only');
  return new SftpTarget({ ...files.destination, port }, async () => ({
    username: server.username,
    privateKey: server.privateKey,
  }));
}

async function stage(segmentId: string, count: number, idBytes = 8): Promise<string[]> {
  const memberships: StagedMembership[] = Array.from({ length: count }, (_, index) => ({
    platformId: PLATFORM,
    segmentId,
    audienceId: 'aud-sftp',
    dmpUserId: `dmp-user-${String(index).padStart(7, '0')}`,
    partnerUserId: `${index}-${randomBytes(idBytes).toString('base64url')}`,
    op: 'add',
    ts: '2026-11-30T10:00:00Z',
  }));
  await store.stage(memberships);
  return memberships.map((membership) => membership.partnerUserId);
}

async function exportOnce(files: FilesSettings, options: { port?: number; checkpoint?: Checkpoint } = {}) {
  clock += 60_000;
  const exporter = new FileExporter({
    store,
    now: () => clock,
    owner: randomUUID(),
    ...(options.checkpoint ? { checkpoint: options.checkpoint } : {}),
  });
  return exporter.run(
    { platformId: PLATFORM, files, target: target(files, options.port) },
    { graceMs: 5000 },
  );
}

const nameOf = (segmentId: string) =>
  renderFileName(TEMPLATE, { segmentId, platformId: PLATFORM, window: windowOf(STAGED_AT, 1), part: 1 });

function filesOf(segmentId: string): string[] {
  return readdirSync(server.uploadPath)
    .filter((name) => name.startsWith(`Mapp_dmp_${segmentId}_`))
    .sort();
}

function linesIn(name: string): string[] {
  return gunzipSync(readFileSync(join(server.uploadPath, name)))
    .toString('utf8')
    .trim()
    .split('\n');
}

describe(`file delivery over SFTP (${SERVER_NAME})`, () => {
  it('publishes the file under a temporary name, then renames it: only the whole file is ever visible', async () => {
    const ids = await stage('101', 300);
    const report = await exportOnce(settings());
    expect(report.windows.map((window) => window.outcome)).toEqual(['published']);
    expect(filesOf('101')).toEqual([nameOf('101')]);
    expect(linesIn(nameOf('101')).sort()).toEqual(ids.sort());
    const record = await store.getRecord(PLATFORM, '101', windowOf(STAGED_AT, 1));
    expect(record).toMatchObject({
      state: 'published',
      destination: `sftp://127.0.0.1:${server.port}${server.uploadPath}`,
    });
    expect(record?.files).toEqual([
      expect.objectContaining({ name: nameOf('101'), step: 'published', rows: 300 }),
    ]);
  });

  it('refuses a server whose host key is not the pinned one, before authenticating', async () => {
    await stage('102', 5);
    const logBefore = server.log().length;
    const other = `SHA256:${Buffer.alloc(32, 7).toString('base64').replace(/=+$/, '')}`;
    const report = await exportOnce(settings({ hostKeySha256: [other] }));
    expect(report.windows).toEqual([expect.objectContaining({ outcome: 'failed' })]);
    const error = report.windows[0]!.error ?? '';
    expect(error).toContain(
      `host key of 127.0.0.1:${server.port} is ${server.hostKeySha256}, which is not pinned`,
    );
    expect(error).toContain('refused');
    expect(filesOf('102')).toEqual([]);
    expect(server.log().slice(logBefore)).not.toMatch(/Accepted publickey/);

    // Pinned again (say, after checking the new key with the partner): published at the next run.
    const retried = await exportOnce(settings());
    expect(retried.windows.map((window) => window.outcome)).toEqual(['published']);
    expect(filesOf('102')).toEqual([nameOf('102')]);
  });

  it('leaves no partial file visible when the connection is cut mid-upload; the next run publishes it whole', async () => {
    // ~800 KB of gzip (barely compressible ids); the proxy cuts after 256 KB from the client.
    const ids = await stage('103', 2000, 384);
    const proxy = await startCuttingProxy(server.port, 256 * 1024);
    try {
      const report = await exportOnce(settings(), { port: proxy.port });
      await proxy.cut;
      expect(report.windows.map((window) => window.outcome)).toEqual(['failed']);
      expect(filesOf('103')).not.toContain(nameOf('103'));
    } finally {
      await proxy.stop();
    }
    const retried = await exportOnce(settings());
    expect(retried.windows.map((window) => window.outcome)).toEqual(['published']);
    expect(filesOf('103')).toEqual([nameOf('103')]);
    const lines = linesIn(nameOf('103'));
    expect(lines).toHaveLength(2000);
    expect(lines.sort()).toEqual(ids.sort());
  });

  it.each([
    ['before the upload', 'uploading', []],
    ['after the upload, before the rename', 'uploaded', ['.part']],
    ['after the rename, before it is recorded', 'committed', ['']],
    ['after it is recorded', 'published', ['']],
  ])('a crash %s is finished by the next run, publishing every row once', async (_label, step, visible) => {
    const segmentId = `2${['uploading', 'uploaded', 'committed', 'published'].indexOf(step)}0`;
    const ids = await stage(segmentId, 120);
    const name = nameOf(segmentId);
    let crashed = false;
    const crash: Checkpoint = (at) => {
      if (at === step && !crashed) {
        crashed = true;
        throw new Error(`simulated crash at ${at}`);
      }
    };
    const first = await exportOnce(settings(), { checkpoint: crash });
    expect(crashed).toBe(true);
    expect(first.windows.map((window) => window.outcome)).toEqual(['failed']);
    expect(filesOf(segmentId)).toEqual(visible.map((suffix) => `${name}${suffix}`));
    const before = visible.includes('') ? statSync(join(server.uploadPath, name)) : undefined;

    const second = await exportOnce(settings());
    expect(second.windows.map((window) => window.outcome)).toEqual(['published']);
    expect(filesOf(segmentId)).toEqual([name]);
    expect(linesIn(name).sort()).toEqual(ids.sort());
    // A file already renamed is not sent again.
    if (before) expect(statSync(join(server.uploadPath, name)).mtimeMs).toBe(before.mtimeMs);

    const third = await exportOnce(settings());
    expect(third.windows).toEqual([]);
  });

  it('never sends a file again that the partner took away after the rename', async () => {
    await stage('301', 10);
    const name = nameOf('301');
    const first = await exportOnce(settings(), {
      checkpoint: (at) => {
        if (at === 'committed') throw new Error('simulated crash after the rename');
      },
    });
    expect(first.windows.map((window) => window.outcome)).toEqual(['failed']);
    unlinkSync(join(server.uploadPath, name));
    const second = await exportOnce(settings());
    expect(second.windows.map((window) => window.outcome)).toEqual(['published']);
    expect(existsSync(join(server.uploadPath, name))).toBe(false);
    expect(filesOf('301')).toEqual([]);
  });
});

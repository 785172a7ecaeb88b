import { join as joinPath } from 'node:path';
import { localEndpointsFile, readEndpointsFile } from '../../local/endpoints.ts';
import { windowKey } from '../../src/files/naming.ts';
import { type FilePlatform, filePlatforms } from '../../src/files/platforms.ts';
import { type PublicationRecord, totalRows } from '../../src/files/publication.ts';
import { FILE_STAGING_TABLE } from '../../src/infra/resources.ts';
import { environmentName, loadEnvironmentConfig, parsePlatformId } from '../context.ts';
import { renderTable } from '../format.ts';
import { CliError, type Command, UsageError } from '../framework.ts';
import { resolveTable, TARGET_OPTIONS, targetFlags } from '../target.ts';

/**
 * `dmp files`: the files published for file-mode platforms (newest window first), the windows
 * still waiting or failing, and where to read the files.
 */

export interface FileView {
  readonly name: string;
  /** Where the partner reads it: `s3://bucket/key` or `sftp://host:port/dir/name`. */
  readonly location: string;
  readonly rows: number | null;
  readonly bytes: number | null;
  readonly sha256: string | null;
  readonly step: string;
}

export interface WindowView {
  readonly segmentId: string;
  readonly window: string;
  readonly windowStart: string;
  readonly state: PublicationRecord['state'];
  readonly rows: number;
  readonly files: readonly FileView[];
  readonly manifest: FileView | null;
  readonly failures: number;
  readonly lastError: string | null;
  readonly nextAttemptAt: string | null;
  readonly publishedAt: string | null;
}

export interface PlatformFilesView {
  readonly platformId: number;
  readonly name: string;
  readonly destination: string;
  /** Windows with staged rows not yet published (open, in their grace period, waiting or failing). */
  readonly pendingWindows: number;
  readonly windows: readonly WindowView[];
}

function join(destination: string, name: string): string {
  return destination.endsWith('/') ? `${destination}${name}` : `${destination}/${name}`;
}

function fileView(destination: string, file: PublicationRecord['files'][number]): FileView {
  return {
    name: file.name,
    location: join(destination, file.name),
    rows: file.rows ?? null,
    bytes: file.bytes ?? null,
    sha256: file.sha256 ?? null,
    step: file.step,
  };
}

function windowView(record: PublicationRecord): WindowView {
  return {
    segmentId: record.segmentId,
    window: windowKey(record.window),
    windowStart: new Date(record.window.startMs).toISOString(),
    state: record.state,
    rows: totalRows(record),
    files: record.files.map((file) => fileView(record.destination, file)),
    manifest: record.manifest ? fileView(record.destination, record.manifest) : null,
    failures: record.failures,
    lastError: record.lastError ?? null,
    nextAttemptAt: record.nextAttemptAt === undefined ? null : new Date(record.nextAttemptAt).toISOString(),
    publishedAt: record.publishedAt ?? null,
  };
}

/** How the destination is described before anything was published there. */
function destinationOf(platform: FilePlatform, outbox: string): string {
  const destination = platform.files.destination;
  if (destination.type === 'sftp')
    return `sftp://${destination.host}:${destination.port}${destination.directory}`;
  return `s3://${destination.bucket ?? outbox}/${destination.prefix}`;
}

export const filesCommand: Command = {
  name: 'files',
  summary: 'List the files published to file-mode platforms, failing windows, and where to read them',
  usage:
    '[--platform N] [--limit N] [--json] [--env <name>] [--endpoint <url>] [--table <name>] [--region <region>]',
  help: [
    'options:',
    '  --platform N       one platform (default: every file-mode platform of the environment)',
    '  --limit N          windows per platform, newest first (default 20)',
    '  --env <name>       local (default: the running `npm start` stack) or a deployed environment',
    '  --endpoint <url>   DynamoDB endpoint; --table <name> the staging table; --region <region>',
    '  --json             {"environment": ..., "platforms": [{"platformId", "destination", "pendingWindows", "windows": [...]}]}',
  ].join('\n'),
  options: { ...TARGET_OPTIONS, platform: { type: 'string' }, limit: { type: 'string' } },
  positionals: { min: 0, max: 0 },
  async run({ values, json, io }) {
    const flags = targetFlags(values);
    const environment = environmentName(flags);
    const config = loadEnvironmentConfig(environment);
    let platforms = filePlatforms(config);
    if (typeof values['platform'] === 'string') {
      const platformId = parsePlatformId(values['platform']);
      platforms = platforms.filter((platform) => platform.platformId === platformId);
      if (platforms.length === 0)
        throw new CliError(
          `platform ${platformId} does not deliver files in environment ${environment} (file-mode platforms: ${
            filePlatforms(config)
              .map((platform) => platform.platformId)
              .join(', ') || 'none'
          })`,
        );
    }
    const limitText = typeof values['limit'] === 'string' ? values['limit'] : '20';
    if (!/^[1-9]\d{0,3}$/.test(limitText)) throw new UsageError('--limit must be a number from 1 to 9999');
    const limit = Number(limitText);

    const target = await resolveTable(flags, FILE_STAGING_TABLE, 'fileStagingTableName', io.env);
    // Loaded here: `dmp --help` and the other commands load no AWS SDK client.
    const { DynamoFileStore } = await import('../../src/files/dynamo-store.ts');
    const store = new DynamoFileStore(target.client, target.tableName, { settings: () => undefined });
    const local = environment === 'local' ? readEndpointsFile(localEndpointsFile(io.env)) : undefined;
    const outbox = environment === 'local' ? 'dmp-local-file-outbox' : '<outbox bucket>';
    const views: PlatformFilesView[] = [];
    try {
      for (const platform of platforms) {
        const records = await store.listRecords(platform.platformId, limit);
        const pending = await store.pendingWindows(platform.platformId, Date.now() + 86_400_000);
        views.push({
          platformId: platform.platformId,
          name: platform.name,
          destination: records[0]?.destination ?? destinationOf(platform, outbox),
          pendingWindows: pending.length,
          windows: records.map(windowView),
        });
      }
    } catch (error) {
      throw new CliError(
        `cannot read ${target.description}: ${(error as Error).name}: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    } finally {
      target.client.destroy();
    }
    const s3Endpoint = local?.found ? local.endpoints.s3Endpoint : undefined;
    const sftp = local?.found ? local.endpoints.sftp : undefined;
    /** The embedded SFTP server's directory of a destination it serves (`sftp://host:port/dir`). */
    const localDirectory = (destination: string): string | undefined => {
      const prefix = sftp ? `sftp://${sftp.host}:${sftp.port}` : undefined;
      if (!sftp || !prefix || !destination.startsWith(`${prefix}/`)) return undefined;
      return joinPath(sftp.root, destination.slice(prefix.length));
    };

    if (json) {
      io.stdout(
        JSON.stringify(
          {
            environment,
            ...(s3Endpoint ? { s3Endpoint } : {}),
            ...(sftp ? { sftp } : {}),
            platforms: views.map((view) => {
              const directory = localDirectory(view.destination);
              return directory ? { ...view, localDirectory: directory } : view;
            }),
          },
          null,
          2,
        ),
      );
      return 0;
    }
    if (views.length === 0) {
      io.stdout(`No file-mode platform in environment ${environment}.`);
      return 0;
    }
    for (const view of views) {
      io.stdout(`Platform ${view.platformId} (${view.name}): files go to ${view.destination}`);
      io.stdout(`  windows staged and not yet published: ${view.pendingWindows}\n`);
      const directory = localDirectory(view.destination);
      if (view.windows.length === 0) {
        io.stdout(`  nothing published yet${directory ? ` (files will appear in ${directory})` : ''}\n`);
        continue;
      }
      io.stdout(
        renderTable(
          ['WINDOW (UTC)', 'SEGMENT', 'STATE', 'ROWS', 'FILES', 'PROBLEM'],
          view.windows.map((window) => [
            window.window,
            window.segmentId,
            window.state === 'publishing' && window.failures > 0
              ? `failing (${window.failures})`
              : window.state,
            String(window.rows),
            [...window.files, ...(window.manifest ? [window.manifest] : [])]
              .map((file) => file.name)
              .join(' ') || '-',
            window.lastError && window.state === 'publishing'
              ? `${window.lastError.slice(0, 120)}${window.nextAttemptAt ? ` (next try ${window.nextAttemptAt})` : ''}`
              : '',
          ]),
        ),
      );
      const example = view.windows.flatMap((window) => window.files)[0];
      if (example?.location.startsWith('s3://') && s3Endpoint) {
        // The embedded S3 answers path-style GETs without signing: curl is enough.
        const path = example.location.slice('s3://'.length);
        io.stdout(`\n  read one: curl -s ${s3Endpoint}/${path} | gunzip | head`);
        io.stdout(`  (or: aws --endpoint-url ${s3Endpoint} s3 cp ${example.location} - | gunzip | head)`);
      } else if (example?.location.startsWith('s3://')) {
        io.stdout(`\n  read one: aws s3 cp ${example.location} - | gunzip | head`);
      } else if (example && directory && sftp) {
        // The embedded SFTP server of `npm start`: its files are on this machine.
        io.stdout(`\n  read one: gunzip -c ${joinPath(directory, example.name)} | head`);
        io.stdout(
          `  (or over SFTP: sftp -i ${sftp.clientKeyFile} -P ${sftp.port} ${sftp.username}@${sftp.host}:${example.location.slice(`sftp://${sftp.host}:${sftp.port}`.length)} . && gunzip -c ${example.name} | head;`,
        );
        io.stdout(`   the server's host key is ${sftp.hostKeySha256})`);
      } else if (example) {
        io.stdout(`\n  on the partner's SFTP server: ${example.location}`);
      }
      io.stdout('');
    }
    return 0;
  },
};

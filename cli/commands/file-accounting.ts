import { parseWindowKey, windowEndMs } from '../../src/files/naming.ts';
import type { FileAccounting } from '../../src/files/publication.ts';
import { FILE_STAGING_TABLE } from '../../src/infra/resources.ts';
import type { CliContext } from '../context.ts';

/**
 * File-mode platforms in `dmp why` and `dmp stats`: the route step stages their memberships (no
 * delivery queue, no per-membership state in the population table), so where a user stands and
 * what is delivered come from the file staging table. A staged change is `pending-file` until the
 * file of its window is published, then delivered (or superseded by a later change of the same
 * user in that window).
 */

async function stagingTableStore(context: CliContext) {
  const table = await context.table(FILE_STAGING_TABLE, 'fileStagingTableName');
  // Loaded on use: other commands load no AWS SDK client.
  const { DynamoFileStore } = await import('../../src/files/dynamo-store.ts');
  return new DynamoFileStore(table.client, table.tableName, { settings: () => undefined });
}

/** Counts per segment of each file-mode platform (`pendingFile`, `delivered`, `superseded`). */
export async function fileAccounting(
  context: CliContext,
  platformIds: readonly number[],
): Promise<Map<number, Map<string, FileAccounting>>> {
  const result = new Map<number, Map<string, FileAccounting>>();
  if (platformIds.length === 0) return result;
  const store = await stagingTableStore(context);
  for (const platformId of platformIds) result.set(platformId, await store.accounting(platformId));
  return result;
}

export interface FileSegmentState {
  readonly segmentId: string;
  readonly audienceId: string;
  /** `pending-file` (staged, its file not published yet), `member` or `removed` (published). */
  readonly state: 'pending-file' | 'member' | 'removed';
  readonly eventTime: string;
  readonly op: 'add' | 'remove';
  readonly window: string;
  readonly files: readonly string[];
  readonly publishedAt: string | null;
  readonly why: string;
}

/**
 * Where a user stands in each partner segment of a file-mode platform: the user's newest staged
 * change per segment and the state of its window's file.
 */
export async function fileWhy(
  context: CliContext,
  platformId: number,
  opColumn: boolean,
  dmpUserId: string,
): Promise<FileSegmentState[]> {
  const { store: segments } = await context.segmentStore();
  const store = await stagingTableStore(context);
  const states: FileSegmentState[] = [];
  for (const segment of await segments.list(platformId)) {
    if (!segment.partnerSegmentId) continue;
    const changes = await store.membershipDelivery(platformId, segment.partnerSegmentId, dmpUserId);
    const newest = changes.sort((a, b) => a.ts.localeCompare(b.ts)).at(-1);
    if (!newest) continue;
    const older = changes.length - 1;
    const olderNote = older > 0 ? `; ${older} older change(s) of this user are superseded` : '';
    const where = newest.destination ? ` in ${newest.destination}` : '';
    const change = `${newest.op === 'add' ? 'add' : 'removal'} of ${newest.ts}`;
    let state: FileSegmentState['state'];
    let why: string;
    if (newest.state === 'staged') {
      state = 'pending-file';
      const closes = new Date(windowEndMs(parseWindowKey(newest.window))).toISOString();
      why = `the ${change} is staged for the file of window ${newest.window} (closes ${closes}, published by the first export run after its grace period; dmp files); counted as delivered once that file is published${olderNote}`;
    } else if (newest.op === 'add') {
      state = 'member';
      why = `the ${change} was published at ${newest.publishedAt ?? '?'}${where}: ${newest.files.join(', ')}${olderNote}`;
    } else {
      state = 'removed';
      why = opColumn
        ? `the ${change} was published at ${newest.publishedAt ?? '?'}${where}${newest.files.length > 0 ? `: ${newest.files.join(', ')}` : ''}${olderNote}`
        : `the ${change} was delivered by leaving the user out of the file of window ${newest.window} (no op column: the partner lets the membership expire)${olderNote}`;
    }
    states.push({
      segmentId: segment.partnerSegmentId,
      audienceId: segment.audienceId,
      state,
      eventTime: newest.ts,
      op: newest.op,
      window: newest.window,
      files: newest.files,
      publishedAt: newest.publishedAt ?? null,
      why,
    });
  }
  return states;
}

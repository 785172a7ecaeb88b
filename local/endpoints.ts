import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Where a running local stack says it listens: `npm start` writes `.local-data/endpoints.json`
 * and removes it when it stops; the `dmp` CLI reads it to target the local stack.
 */

export const LOCAL_REGION = 'eu-west-1';
/** Fake static credentials: the stand-ins accept anything, and real ones must never be used. */
export const LOCAL_CREDENTIALS = { accessKeyId: 'local', secretAccessKey: 'local' } as const;

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const DEFAULT_DATA_DIR = join(REPO_ROOT, '.local-data');
/** Overrides the endpoints file the CLI reads. */
export const ENDPOINTS_FILE_ENV_VAR = 'DMP_LOCAL_ENDPOINTS';
/** Overrides `.local-data/` for `npm start` and the CLI (a second stack, tests). */
export const DATA_DIR_ENV_VAR = 'DMP_LOCAL_DATA_DIR';

export function localDataDir(env: NodeJS.ProcessEnv = process.env): string {
  const configured = env[DATA_DIR_ENV_VAR];
  return configured ? resolve(configured) : DEFAULT_DATA_DIR;
}

/** The endpoints file of the local stack the CLI should talk to. */
export function localEndpointsFile(env: NodeJS.ProcessEnv = process.env): string {
  return env[ENDPOINTS_FILE_ENV_VAR] || endpointsFilePath(localDataDir(env));
}

export interface LocalEndpoints {
  readonly pid: number;
  readonly startedAt: string;
  readonly region: string;
  readonly apiUrl: string;
  readonly syncPixelUrl: string;
  readonly partnerUrl: string;
  readonly dynamodbEndpoint: string;
  readonly sqsEndpoint: string;
  readonly s3Endpoint: string;
  readonly secretsEndpoint: string;
  /** Table construct id (e.g. MappingTable) -> local table name. */
  readonly tableNames: Readonly<Record<string, string>>;
  /** The embedded SFTP server (local/local-sftp.ts), when a local platform delivers files to it. */
  readonly sftp?: {
    readonly host: string;
    readonly port: number;
    readonly username: string;
    readonly hostKeySha256: string;
    /** Remote `/` on this machine. */
    readonly root: string;
    readonly clientKeyFile: string;
  };
}

export function endpointsFilePath(dataDir: string = DEFAULT_DATA_DIR): string {
  return join(dataDir, 'endpoints.json');
}

export function writeEndpointsFile(path: string, endpoints: LocalEndpoints): void {
  mkdirSync(dirname(path), { recursive: true });
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(endpoints, null, 2)}\n`);
  renameSync(temporary, path);
}

export function removeEndpointsFile(path: string): void {
  rmSync(path, { force: true });
}

export type EndpointsLookup =
  | { readonly found: true; readonly endpoints: LocalEndpoints; readonly path: string }
  | { readonly found: false; readonly reason: string; readonly path: string };

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Reads the endpoints of a running local stack; refuses a file left by a stack that is gone. */
export function readEndpointsFile(path: string): EndpointsLookup {
  let endpoints: LocalEndpoints;
  try {
    endpoints = JSON.parse(readFileSync(path, 'utf8')) as LocalEndpoints;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return { found: false, path, reason: code === 'ENOENT' ? 'no local stack is running' : 'unreadable' };
  }
  if (typeof endpoints.pid !== 'number' || typeof endpoints.dynamodbEndpoint !== 'string') {
    return { found: false, path, reason: 'not an endpoints file' };
  }
  if (!isRunning(endpoints.pid)) {
    return {
      found: false,
      path,
      reason: `the local stack that wrote it (pid ${endpoints.pid}) is not running`,
    };
  }
  return { found: true, endpoints, path };
}

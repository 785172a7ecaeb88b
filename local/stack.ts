import { join, resolve } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { FauxqsServer } from 'fauxqs';
import { SHARED_CLIENT_SOCKETS_ENV } from '../src/aws/clients.ts';
import { CONFIG_ENV_VAR, loadEnvironmentFile } from '../src/config/load.ts';
import type { EnvironmentConfig } from '../src/config/schema.ts';
import { PlatformSecretSchema, platformSecretName } from '../src/config/secrets.ts';
import {
  EVENT_SOURCES,
  type EventSourceDeclarations,
  type EventSourceDefinition,
  eventSourcesOf,
} from '../src/infra/event-sources.ts';
import { POPULATION_ENV, populationEnvironment } from '../src/infra/population.ts';
import {
  BUCKETS,
  commonEnvironment,
  FILE_EXPORT_GRACE_ENV,
  FUNCTIONS,
  type FunctionDefinition,
  type FunctionKey,
  ROUTES,
  type RouteDefinition,
  stackName,
  TABLES,
  type TableDefinition,
} from '../src/infra/resources.ts';
import { provisionBuckets } from './buckets.ts';
import { ensureTable, sweepExpiredItems, type TtlMode } from './dynamodb.ts';
import { LOCAL_CREDENTIALS, LOCAL_REGION, type LocalEndpoints, REPO_ROOT } from './endpoints.ts';
import {
  type DynamoDbStreams,
  markAsTtlSweeper,
  startDynamoDbEndpoint,
} from './event-sources/dynamodb-stream.ts';
import {
  type ProvisionedQueue,
  provisionQueues,
  queueEnvironment,
  startEventSources,
  streamedTables,
} from './event-sources/runner.ts';

export { LOCAL_CREDENTIALS, LOCAL_REGION };

import { resolveLocalhostSubdomains, startLocalFauxqs } from './fauxqs.ts';
import { startHttpApi } from './http-api.ts';
import { entryLoader, type FunctionLoader, LocalFunction } from './lambda.ts';
import { type LocalSftp, startLocalSftp } from './local-sftp.ts';
import { type PartnerPlatform, type ReferencePartner, startReferencePartner } from './reference-partner.ts';
import { loadLocalSecrets, startSecretsManager } from './secrets-manager.ts';

/**
 * The whole service in one process on 127.0.0.1: DynamoDB (dynalite), SQS and S3 (fauxqs), a
 * Secrets Manager stand-in, the reference partner, and the Lambda handlers behind a local HTTP API,
 * with the environment variables Lambda would give them. Resources come from the same definitions
 * the CDK stack uses (src/infra/resources.ts). See docs/local-stack.md.
 */

import { rewritePartnerOrigin } from './partner-origin.ts';

export { REFERENCE_PARTNER_ORIGIN, rewritePartnerOrigin } from './partner-origin.ts';

export const DEFAULT_CONFIG_PATH = join(REPO_ROOT, 'config', 'environments', 'local.json');
export const DEFAULT_SECRETS_PATH = join(REPO_ROOT, 'config', 'local-secrets.json');

export interface LocalStackOptions {
  /** HTTP API port; 0 (default) picks a free one. `npm start` uses 3000. */
  readonly port?: number;
  /** Reference partner port; 0 (default) picks a free one. `npm start` uses 3001. */
  readonly partnerPort?: number;
  /** Ports of the stand-ins; 0 (default) picks free ones. */
  readonly dynamodbPort?: number;
  readonly sqsS3Port?: number;
  readonly secretsPort?: number;
  /** Port of the embedded SFTP server (docs/local-stack.md); 0 (default) picks a free one. */
  readonly sftpPort?: number;
  /** Keep DynamoDB (LevelDB) and SQS/S3 (SQLite) data here; in memory when absent. */
  readonly dataDir?: string;
  readonly configPath?: string;
  /** Only these platforms of the environment (tests written for a given set of partners). */
  readonly platformIds?: readonly number[];
  readonly secretsPath?: string;
  /** What invokes the functions besides routes (default: EVENT_SOURCES, src/infra/event-sources.ts). */
  readonly eventSources?: readonly EventSourceDeclarations[];
  /** No request or handler-error lines (tests). */
  readonly quiet?: boolean;
  /** Where log lines go when not quiet (default: console.log). */
  readonly log?: (line: string) => void;
  /** Supplies each function's handler; default: import FUNCTIONS[key].entry from the repo root. */
  readonly loadFunction?: FunctionLoader;
  /** How often expired items are deleted (dynalite has no TTL); 0 disables. Default 60 s. */
  readonly ttlSweepIntervalMs?: number;
  /**
   * Interval of every schedule (the file exporter per platform); 0 disables the schedules (tests
   * invoke instead). Default: DMP_LOCAL_SCHEDULE_SECONDS when set, else each schedule's own.
   */
  readonly scheduleEveryMs?: number;
  /** First retry delay of a failed population record, doubling per receive (default 1 s locally). */
  readonly populationRetryBaseSeconds?: number;
}

export interface LocalStack {
  readonly region: string;
  readonly apiUrl: string;
  readonly partnerUrl: string;
  readonly dynamodbEndpoint: string;
  /** fauxqs at 127.0.0.1, for clients given an explicit endpoint (other processes, tests). */
  readonly sqsEndpoint: string;
  readonly s3Endpoint: string;
  readonly secretsEndpoint: string;
  /** The embedded SFTP server, when a local platform delivers files to it. */
  readonly sftp: LocalSftp | undefined;
  /** Table construct id (e.g. MappingTable) -> local table name. */
  readonly tableNames: Readonly<Record<string, string>>;
  /** The environment variables the stack set for the handlers. */
  readonly env: Readonly<Record<string, string>>;
  /** The environment configuration the handlers run with (partner origin rewritten). */
  readonly config: EnvironmentConfig;
  readonly partner: ReferencePartner;
  /** fauxqs' programmatic API (queues, buckets, message spy). */
  readonly fauxqs: FauxqsServer;
  /** One human-readable line per resource and route, for `npm start`. */
  readonly summary: readonly string[];
  /** Declared queue name -> queue URL. */
  readonly queueUrls: Readonly<Record<string, string>>;
  /**
   * Resolves once every event source (queues, table streams, schedules) has nothing left to
   * deliver and no invocation runs: what tests await instead of sleeping.
   */
  whenIdle(): Promise<void>;
  /** Runs a declared schedule now; resolves with the function's result. */
  runSchedule(name: string): Promise<unknown>;
  /** Deletes items whose TTL has passed, now (also runs on an interval). */
  sweepExpiredItems(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * What `npm start` writes to the endpoints file for a started stack (local/endpoints.ts), so the
 * `dmp` CLI can find it; `pid` is the process that runs the stack (default: this one).
 */
export function endpointsOf(stack: LocalStack, pid: number = process.pid): LocalEndpoints {
  return {
    pid,
    startedAt: new Date().toISOString(),
    region: stack.region,
    apiUrl: stack.apiUrl,
    syncPixelUrl: `${stack.apiUrl}/sync`,
    partnerUrl: stack.partnerUrl,
    dynamodbEndpoint: stack.dynamodbEndpoint,
    sqsEndpoint: stack.sqsEndpoint,
    s3Endpoint: stack.s3Endpoint,
    secretsEndpoint: stack.secretsEndpoint,
    tableNames: stack.tableNames,
    ...(stack.sftp
      ? {
          sftp: {
            host: stack.sftp.host,
            port: stack.sftp.port,
            username: stack.sftp.username,
            hostKeySha256: stack.sftp.hostKeySha256,
            root: stack.sftp.root,
            clientKeyFile: stack.sftp.clientKeyFile,
          },
        }
      : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// Resources: one step per kind, each driven by the shared definitions. Queues and buckets join
// this list when src/infra/resources.ts defines them.

export interface ProvisionContext {
  readonly dynamodb: DynamoDBClient;
  readonly fauxqs: FauxqsServer;
  readonly sqs: SQSClient;
  readonly eventSources: readonly EventSourceDefinition[];
  readonly region: string;
}

export interface ProvisionedResource {
  readonly kind: string;
  readonly name: string;
  readonly created: boolean;
  readonly note?: string;
  /** Queues: their URL and ARN. */
  readonly queue?: ProvisionedQueue;
}

export interface ProvisionStep {
  readonly name: string;
  run(context: ProvisionContext): Promise<ProvisionedResource[]>;
}

const TTL_NOTES: Record<TtlMode, string | undefined> = {
  native: 'TTL on',
  swept: 'TTL emulated: expired items swept by the local stack',
  none: undefined,
};

export const PROVISION_STEPS: readonly ProvisionStep[] = [
  {
    name: 'dynamodb tables',
    async run({ dynamodb }) {
      const results: ProvisionedResource[] = [];
      for (const table of TABLES as readonly TableDefinition[]) {
        const ensured = await ensureTable(dynamodb, table);
        const note = TTL_NOTES[ensured.ttl];
        results.push({
          kind: 'table',
          name: table.localName,
          created: ensured.created,
          ...(note ? { note } : {}),
        });
      }
      return results;
    },
  },
  {
    name: 's3 buckets',
    async run({ fauxqs }) {
      return (await provisionBuckets(fauxqs)).map((bucket) => ({ kind: 'bucket', ...bucket }));
    },
  },
  {
    name: 'sqs queues',
    async run({ sqs, eventSources }) {
      const queues = await provisionQueues(sqs, eventSources);
      return queues.map((queue) => ({
        kind: 'queue',
        name: queue.name,
        created: queue.created,
        note: queue.note,
        queue,
      }));
    },
  },
];

// ---------------------------------------------------------------------------------------------
// Runners: what invokes the functions. The HTTP API now; SQS event sources and schedules later.

export interface RunnerContext {
  readonly options: LocalStackOptions;
  readonly routes: readonly RouteDefinition[];
  readonly functions: ReadonlyMap<FunctionKey, LocalFunction>;
  readonly fauxqs: FauxqsServer;
  readonly log: (line: string) => void;
  readonly eventSources: readonly EventSourceDefinition[];
  readonly queues: readonly ProvisionedQueue[];
  readonly sqs: SQSClient;
  readonly streams: DynamoDbStreams | undefined;
}

export interface RunningRunner {
  readonly name: string;
  readonly url?: string;
  readonly summary: readonly string[];
  /** Event sources: resolves once nothing is left to deliver. */
  whenIdle?(): Promise<void>;
  /** Schedules: runs one now. */
  runSchedule?(name: string): Promise<unknown>;
  stop(): Promise<void>;
}

export interface LocalRunner {
  readonly name: string;
  start(context: RunnerContext): Promise<RunningRunner>;
}

export const RUNNERS: readonly LocalRunner[] = [
  {
    name: 'http-api',
    async start({ options, routes, functions, log }) {
      const api = await startHttpApi({ routes, functions, port: options.port ?? 0, log });
      const width = Math.max(...routes.map((route) => `${route.method} ${route.path}`.length));
      return {
        name: 'http-api',
        url: api.url,
        summary: routes.map((route) => {
          const fn = FUNCTIONS[route.function];
          return `${`${route.method} ${route.path}`.padEnd(width)}  -> ${route.function} (${fn.entry})`;
        }),
        stop: () => api.stop(),
      };
    },
  },
  {
    name: 'event-sources',
    async start({ options, eventSources, queues, functions, sqs, streams, log }) {
      const fromEnv = Number(process.env[LOCAL_SCHEDULE_ENV]);
      const scheduleEveryMs =
        options.scheduleEveryMs ?? (Number.isFinite(fromEnv) && fromEnv > 0 ? fromEnv * 1000 : undefined);
      const running = startEventSources({
        sources: eventSources,
        queues,
        functions,
        sqs,
        streams,
        log,
        ...(scheduleEveryMs !== undefined ? { scheduleEveryMs } : {}),
      });
      return { name: 'event-sources', ...running };
    },
  },
];

/** Every schedule's period in seconds, instead of its own (demos and tests). */
export const LOCAL_SCHEDULE_ENV = 'DMP_LOCAL_SCHEDULE_SECONDS';

// ---------------------------------------------------------------------------------------------

/** Platforms as the reference partner knows them: macro, signing keys and algorithm. */
function partnerPlatforms(config: EnvironmentConfig, secrets: Record<string, unknown>): PartnerPlatform[] {
  return config.platforms.flatMap((platform) => {
    if (!platform.sync) return [];
    const parsed = PlatformSecretSchema.safeParse(
      secrets[platformSecretName(config.name, platform.id)] ?? {},
    );
    return [
      {
        id: platform.id,
        userIdMacro: platform.sync.userIdMacro,
        signingKeys: parsed.success ? parsed.data.signingKeys : {},
        algorithm: platform.sync.signature.algorithm,
      },
    ];
  });
}

/** Variables the stack removes so nothing from the developer's shell reaches real AWS. */
const CLEARED_ENV = [
  'AWS_PROFILE',
  'AWS_SESSION_TOKEN',
  'AWS_ENDPOINT_URL',
  'AWS_IGNORE_CONFIGURED_ENDPOINT_URLS',
];

class EnvironmentPatch {
  private readonly saved = new Map<string, string | undefined>();

  set(values: Record<string, string>): void {
    for (const [name, value] of Object.entries(values)) {
      this.remember(name);
      process.env[name] = value;
    }
  }

  clear(names: readonly string[]): void {
    for (const name of names) {
      this.remember(name);
      delete process.env[name];
    }
  }

  restore(): void {
    for (const [name, value] of this.saved) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    this.saved.clear();
  }

  private remember(name: string): void {
    if (!this.saved.has(name)) this.saved.set(name, process.env[name]);
  }
}

let running = false;

export async function startLocalStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  if (running) throw new Error('a local stack is already running in this process (process.env is shared)');
  running = true;
  const log = options.quiet ? () => {} : (options.log ?? ((line: string) => console.log(line)));
  const cleanups: (() => Promise<void> | void)[] = [];
  const envPatch = new EnvironmentPatch();
  const cleanup = async () => {
    const errors: unknown[] = [];
    for (const step of cleanups.reverse()) {
      try {
        await step();
      } catch (error) {
        errors.push(error);
      }
    }
    cleanups.length = 0;
    envPatch.restore();
    running = false;
    if (errors.length > 0) throw new AggregateError(errors, 'local stack did not stop cleanly');
  };

  try {
    const region = LOCAL_REGION;
    const loaded = loadEnvironmentFile(resolve(options.configPath ?? DEFAULT_CONFIG_PATH));
    const only = options.platformIds;
    const fileConfig = only
      ? { ...loaded, platforms: loaded.platforms.filter((platform) => only.includes(platform.id)) }
      : loaded;
    const secretValues = loadLocalSecrets(
      resolve(options.secretsPath ?? DEFAULT_SECRETS_PATH),
      fileConfig.name,
    );
    const dataDir = options.dataDir ? resolve(options.dataDir) : undefined;
    // Declarations may depend on the platforms, not on the partner's URL: the file's config will do.
    const eventSources = eventSourcesOf(fileConfig, options.eventSources ?? EVENT_SOURCES);

    const dynamo = await startDynamoDbEndpoint({
      ...(dataDir ? { path: join(dataDir, 'dynamodb') } : {}),
      port: options.dynamodbPort ?? 0,
      region,
      streamedTables: streamedTables(TABLES, eventSources),
    });
    cleanups.push(() => dynamo.stop());
    const fauxqs = await startLocalFauxqs({
      region,
      ...(dataDir ? { dataDir: join(dataDir, 'fauxqs') } : {}),
      port: options.sqsS3Port ?? 0,
    });
    cleanups.push(() => fauxqs.stop());
    cleanups.push(resolveLocalhostSubdomains());
    // Platforms that deliver files to the embedded SFTP server: started, pinned, keyed.
    const localSftp = await startLocalSftp(fileConfig, secretValues, {
      dataDir,
      port: options.sftpPort ?? 0,
    });
    cleanups.push(() => localSftp.stop());
    const secrets = await startSecretsManager({
      values: localSftp.secrets,
      region,
      port: options.secretsPort ?? 0,
    });
    cleanups.push(() => secrets.stop());
    const partner = await startReferencePartner({
      platforms: partnerPlatforms(fileConfig, secretValues),
      port: options.partnerPort ?? 0,
      log,
      // The partner's segments live beside our segment table: a restart keeps both, --fresh wipes both.
      ...(dataDir ? { stateFile: join(dataDir, 'reference-partner', 'state.json') } : {}),
    });
    cleanups.push(() => partner.stop());
    const config = rewritePartnerOrigin(localSftp.config, partner.url);

    const dynamodb = new DynamoDBClient({ region, endpoint: dynamo.url, credentials: LOCAL_CREDENTIALS });
    cleanups.push(() => dynamodb.destroy());
    const sqs = new SQSClient({ region, endpoint: fauxqs.url, credentials: LOCAL_CREDENTIALS });
    cleanups.push(() => sqs.destroy());
    const provisioned: ProvisionedResource[] = [];
    for (const step of PROVISION_STEPS) {
      provisioned.push(...(await step.run({ dynamodb, fauxqs: fauxqs.server, sqs, eventSources, region })));
    }
    const queues = provisioned.flatMap((resource) => (resource.queue ? [resource.queue] : []));

    // The environment Lambda gives the handlers (endpoints aside, which AWS needs no variable for).
    const tableEnv = Object.fromEntries(
      (TABLES as readonly TableDefinition[]).map((t) => [t.envVar, t.localName]),
    );
    const baseEnv: Record<string, string> = {
      AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs24.x',
      AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
      TZ: 'UTC',
      AWS_REGION: region,
      AWS_DEFAULT_REGION: region,
      AWS_ACCESS_KEY_ID: LOCAL_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: LOCAL_CREDENTIALS.secretAccessKey,
      AWS_ENDPOINT_URL_DYNAMODB: dynamo.url,
      AWS_ENDPOINT_URL_SQS: fauxqs.sqsUrl,
      AWS_ENDPOINT_URL_S3: fauxqs.url,
      AWS_ENDPOINT_URL_SECRETS_MANAGER: secrets.url,
      ...tableEnv,
      ...Object.fromEntries(BUCKETS.map((bucket) => [bucket.envVar, bucket.localName])),
      // Windows close quickly locally: see docs/files.md.
      [FILE_EXPORT_GRACE_ENV]: process.env[FILE_EXPORT_GRACE_ENV] ?? '5',
      ...queueEnvironment(eventSources, queues),
      [CONFIG_ENV_VAR]: JSON.stringify(config),
      ...populationEnvironment(config.name),
      [POPULATION_ENV.retryBaseSeconds]: String(options.populationRetryBaseSeconds ?? 1),
      // Every function shares the SDK clients here (src/aws/clients.ts): a pool for all of them.
      [SHARED_CLIENT_SOCKETS_ENV]: '512',
    };
    envPatch.clear(CLEARED_ENV);
    envPatch.set(baseEnv);

    // Cold starts: import each function with its own common environment (DMP_ENVIRONMENT,
    // POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE) set, as its module-level code
    // (loggers, clients) would see it in its own Lambda.
    const load = options.loadFunction ?? entryLoader(REPO_ROOT);
    const functions = new Map<FunctionKey, LocalFunction>();
    let functionEnv: Record<string, string> = {};
    for (const [key, definition] of Object.entries(FUNCTIONS) as [FunctionKey, FunctionDefinition][]) {
      const functionName = `${stackName(config.name)}-${definition.id}`;
      functionEnv = {
        ...commonEnvironment(definition, config.name),
        AWS_LAMBDA_FUNCTION_NAME: functionName,
        AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(definition.memorySizeMb),
        AWS_LAMBDA_LOG_GROUP_NAME: `/aws/lambda/${functionName}`,
      };
      envPatch.set(functionEnv);
      const handler = await load(key, definition);
      functions.set(key, new LocalFunction(key, definition, handler, { functionName, region }));
    }
    const env = { ...baseEnv, ...functionEnv };

    const runners: RunningRunner[] = [];
    for (const runner of RUNNERS) {
      const started = await runner.start({
        options,
        routes: ROUTES,
        functions,
        fauxqs: fauxqs.server,
        log,
        eventSources,
        queues,
        sqs,
        streams: dynamo.streams,
      });
      runners.push(started);
      cleanups.push(() => started.stop());
    }
    const apiUrl = runners.find((runner) => runner.name === 'http-api')?.url ?? '';

    // A client of its own, so that stream records of its deletions carry TTL's identity.
    const sweeper = new DynamoDBClient({ region, endpoint: dynamo.url, credentials: LOCAL_CREDENTIALS });
    markAsTtlSweeper(sweeper);
    cleanups.push(() => sweeper.destroy());
    const sweep = async () => {
      let deleted = 0;
      for (const table of TABLES as readonly TableDefinition[])
        deleted += await sweepExpiredItems(sweeper, table);
      return deleted;
    };
    let sweeping: Promise<unknown> = Promise.resolve();
    const interval = options.ttlSweepIntervalMs ?? 60_000;
    if (interval > 0) {
      const timer = setInterval(() => {
        sweeping = sweep().then(
          (deleted) => deleted > 0 && log(`ttl: deleted ${deleted} expired item(s)`),
          (error: unknown) => log(`ttl: sweep failed: ${(error as Error).message}`),
        );
      }, interval);
      timer.unref();
      // Runs before the DynamoDB client and dynalite are stopped (cleanups run in reverse).
      cleanups.push(async () => {
        clearInterval(timer);
        await sweeping;
      });
    }

    const summary = [
      ...provisioned.map(
        (resource) =>
          `${resource.kind} ${resource.name}${resource.created ? ' (created)' : ' (existing)'}${
            resource.note ? `: ${resource.note}` : ''
          }`,
      ),
      ...runners.flatMap((runner) => runner.summary),
    ];

    let stopped: Promise<void> | undefined;
    return {
      region,
      apiUrl,
      partnerUrl: partner.url,
      dynamodbEndpoint: dynamo.url,
      sqsEndpoint: fauxqs.url,
      s3Endpoint: fauxqs.url,
      secretsEndpoint: secrets.url,
      sftp: localSftp.sftp,
      tableNames: Object.fromEntries((TABLES as readonly TableDefinition[]).map((t) => [t.id, t.localName])),
      env,
      config,
      partner,
      fauxqs: fauxqs.server,
      summary,
      queueUrls: Object.fromEntries(queues.map((queue) => [queue.name, queue.url])),
      async whenIdle() {
        await Promise.all(runners.map((runner) => runner.whenIdle?.()));
      },
      runSchedule(name) {
        const runner = runners.find((candidate) => candidate.runSchedule);
        return runner?.runSchedule
          ? runner.runSchedule(name)
          : Promise.reject(new Error(`no schedule ${name}`));
      },
      sweepExpiredItems: sweep,
      stop() {
        stopped ??= cleanup();
        return stopped;
      },
    };
  } catch (error) {
    await cleanup().catch(() => {});
    throw error;
  }
}

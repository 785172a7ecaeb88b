import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  LOCAL_CREDENTIALS,
  type LocalEndpoints,
  localEndpointsFile,
  REPO_ROOT,
  readEndpointsFile,
} from '../local/endpoints.ts';
import { rewritePartnerOrigin } from '../local/partner-origin.ts';
import type { JsonSecrets } from '../src/aws/secrets.ts';
import type { Connector } from '../src/config/connector.ts';
import { ConfigError, loadEnvironmentFile } from '../src/config/load.ts';
import type { EnvironmentConfig, PlatformConfig } from '../src/config/schema.ts';
import {
  ApiCredentialsSchema,
  PrivacyKeySchema,
  platformApiSecretName,
  privacyKeySecretName,
} from '../src/config/secrets.ts';
import type { CredentialsSource, PartnerClients } from '../src/connectors/partner-clients.ts';
import { SEGMENT_TABLE, type STACK_OUTPUTS, type TableDefinition } from '../src/infra/resources.ts';
import type { UserDigests } from '../src/privacy/digest.ts';
import type { SegmentService } from '../src/segments/segment-service.ts';
import type { DynamoSegmentStore } from '../src/segments/segment-store.ts';
import { CliError, UsageError } from './framework.ts';
import {
  environmentFile,
  knownEnvironments,
  resolveTable,
  type TableTarget,
  type TargetFlags,
} from './target.ts';

export { environmentFile, knownEnvironments };

/**
 * The wiring commands share once they act on an environment rather than on one table: its
 * configuration, the platform credentials (Secrets Manager), the segment store and the
 * SegmentService, built exactly as the handlers build them, so that what an operator does with
 * the CLI is what the service would do.
 *
 * - local (default): the running local stack, found through its endpoints file
 *   (.local-data/endpoints.json, DMP_LOCAL_ENDPOINTS or DMP_LOCAL_DATA_DIR), with
 *   `config/environments/local.json` pointed at the stack's reference partner and the secrets read
 *   from the stack's Secrets Manager stand-in with fake credentials;
 * - a deployed environment: `config/environments/<name>.json`, the stack's outputs and the real
 *   Secrets Manager, with the default AWS credential chain.
 *
 * Open one with {@link CliContext.open} and `close()` it when done (clients, process.env).
 */

export const CONFIG_DIR = join(REPO_ROOT, 'config');
const ENVIRONMENT_NAME = /^[a-z][a-z0-9-]{1,20}$/;

export type ConnectedPlatform = PlatformConfig & { readonly connector: Connector };

/** The environment named by `--env` (default local); usage error when it cannot be one. */
export function environmentName(flags: Pick<TargetFlags, 'env'>): string {
  const name = flags.env ?? 'local';
  if (!ENVIRONMENT_NAME.test(name)) throw new UsageError(`invalid environment name '${name}'`);
  return name;
}

/** One problem of a configuration, split into the file, the field and the message. */
export interface ConfigProblem {
  readonly file: string;
  /** Dotted field path (`connector.api.baseUrl`), `(root)`, or null when not about one field. */
  readonly path: string | null;
  readonly message: string;
}

/** Splits ConfigError's `field.path: message` problems (see formatIssues in src/config/load.ts). */
export function problemsOf(error: ConfigError): ConfigProblem[] {
  return error.problems.map((problem) => {
    const match = /^(\(root\)|[^\s:]+): ([\s\S]*)$/.exec(problem);
    return match
      ? { file: error.source, path: match[1]!, message: match[2]! }
      : { file: error.source, path: null, message: problem };
  });
}

export function formatProblem(problem: ConfigProblem, file: string = problem.file): string {
  return problem.path === null
    ? `${file}: ${problem.message}`
    : `${file}: ${problem.path}: ${problem.message}`;
}

/** Thrown by {@link loadEnvironmentConfig}: the CLI prints every problem, then exits 1. */
export class ConfigProblemsError extends CliError {
  constructor(
    readonly file: string,
    readonly problems: readonly ConfigProblem[],
  ) {
    super(`invalid configuration:\n${problems.map((problem) => `  ${formatProblem(problem)}`).join('\n')}`);
  }
}

/** `config/environments/<name>.json` with its platform files, validated; CliError otherwise. */
export function loadEnvironmentConfig(name: string): EnvironmentConfig {
  const file = environmentFile(name);
  if (!existsSync(file)) {
    const known = knownEnvironments();
    throw new CliError(
      `no configuration for environment '${name}' (${file})${known.length > 0 ? `; known: ${known.join(', ')}` : ''}`,
    );
  }
  try {
    return loadEnvironmentFile(file);
  } catch (error) {
    if (error instanceof ConfigError) throw new ConfigProblemsError(file, problemsOf(error));
    throw error;
  }
}

/** The running local stack's endpoints; CliError naming the endpoints file when there is none. */
export function requireLocalEndpoints(env: NodeJS.ProcessEnv): LocalEndpoints {
  const lookup = readEndpointsFile(localEndpointsFile(env));
  if (!lookup.found) {
    throw new CliError(
      `cannot find the local stack: ${lookup.reason} (${lookup.path}). ` +
        "Start it with 'npm start', or target a deployed environment with --env <name>.",
    );
  }
  return lookup.endpoints;
}

/** The platform with this id; CliError listing the known ones otherwise. */
export function findPlatform(config: EnvironmentConfig, platformId: number): PlatformConfig {
  const platform = config.platforms.find((candidate) => candidate.id === platformId);
  if (!platform) {
    const known = config.platforms.map((candidate) => candidate.id).join(', ');
    throw new CliError(
      `unknown platform ${platformId} in environment ${config.name}${known ? ` (platforms: ${known})` : ' (no platforms)'}`,
    );
  }
  return platform;
}

/** The platform with this id, which must have a connector (an API the service calls). */
export function findConnectedPlatform(config: EnvironmentConfig, platformId: number): ConnectedPlatform {
  const platform = findPlatform(config, platformId);
  if (!platform.connector) {
    throw new CliError(
      `platform ${platformId} (${platform.name}) in environment ${config.name} has no connector: ` +
        'the service does not call its API (sync only)',
    );
  }
  return platform as ConnectedPlatform;
}

/** A positive integer platform id from an option; usage error otherwise. */
export function parsePlatformId(value: string, option = '--platform'): number {
  if (!/^[1-9]\d{0,9}$/.test(value) || Number(value) > 2_147_483_647) {
    throw new UsageError(`${option} must be a platform id (a positive integer), got '${value.slice(0, 40)}'`);
  }
  return Number(value);
}

/** Sets variables of process.env (what the AWS SDK reads) and puts them back on restore(). */
class ProcessEnvPatch {
  private readonly saved = new Map<string, string | undefined>();

  set(name: string, value: string | undefined): void {
    if (!this.saved.has(name)) this.saved.set(name, process.env[name]);
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }

  restore(): void {
    for (const [name, value] of this.saved) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    this.saved.clear();
  }
}

export class CliContext {
  private readonly patch = new ProcessEnvPatch();
  private readonly closers: (() => void)[] = [];
  private fileConfigCache: EnvironmentConfig | undefined;
  private localCache: LocalEndpoints | undefined;
  private credentialsCache: CredentialsSource | undefined;
  private secretsCache:
    | Promise<{ reader: JsonSecrets; SecretError: typeof import('../src/aws/secrets.ts').SecretError }>
    | undefined;
  private clientsCache: Promise<PartnerClients> | undefined;
  private segmentTableCache: Promise<TableTarget> | undefined;

  private constructor(
    /** `local` or a deployed environment's name. */
    readonly environment: string,
    readonly flags: TargetFlags,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  static open(flags: TargetFlags, env: NodeJS.ProcessEnv): CliContext {
    return new CliContext(environmentName(flags), flags, env);
  }

  get isLocal(): boolean {
    return this.environment === 'local';
  }

  /** The running local stack (local environment only). */
  localEndpoints(): LocalEndpoints {
    if (!this.isLocal) throw new Error(`environment ${this.environment} is not the local stack`);
    this.localCache ??= requireLocalEndpoints(this.env);
    return this.localCache;
  }

  /** The environment's configuration as its files say (no partner origin rewritten). */
  fileConfig(): EnvironmentConfig {
    this.fileConfigCache ??= loadEnvironmentConfig(this.environment);
    return this.fileConfigCache;
  }

  /**
   * The configuration the handlers run with: for the local stack, the platform URLs that name
   * the reference partner's default origin point at the running one (as local/stack.ts does).
   */
  runtimeConfig(): EnvironmentConfig {
    const config = this.fileConfig();
    return this.isLocal ? rewritePartnerOrigin(config, this.localEndpoints().partnerUrl) : config;
  }

  /** The region of a deployed environment: --region, else its config, else the SDK's default. */
  private deployedRegion(): string | undefined {
    if (this.flags.region) return this.flags.region;
    return existsSync(environmentFile(this.environment)) ? this.fileConfig().aws.region : undefined;
  }

  /**
   * Reads a secret of the environment through JsonSecrets, as the handlers do. Local: the stack's
   * Secrets Manager stand-in with fake credentials; deployed: Secrets Manager with the default
   * credential chain. CliError (naming the secret and where it was looked for) when it is missing,
   * unreadable or malformed; the value never appears in an error.
   */
  private readSecret<S extends import('zod/v4/core').$ZodType>(
    name: string,
    schema: S,
    missing: string,
  ): Promise<import('zod/v4/core').output<S>> {
    let where: string;
    if (this.isLocal) {
      const local = this.localEndpoints();
      // Nothing from the operator's shell may take the SDK to real AWS.
      for (const variable of ['AWS_PROFILE', 'AWS_SESSION_TOKEN', 'AWS_ENDPOINT_URL'])
        this.patch.set(variable, undefined);
      this.patch.set('AWS_ENDPOINT_URL_SECRETS_MANAGER', local.secretsEndpoint);
      this.patch.set('AWS_REGION', local.region);
      this.patch.set('AWS_ACCESS_KEY_ID', LOCAL_CREDENTIALS.accessKeyId);
      this.patch.set('AWS_SECRET_ACCESS_KEY', LOCAL_CREDENTIALS.secretAccessKey);
      where = `the local stack's Secrets Manager (${local.secretsEndpoint})`;
    } else {
      const region = this.deployedRegion();
      if (region) this.patch.set('AWS_REGION', region);
      const effective = region ?? process.env['AWS_REGION'] ?? process.env['AWS_DEFAULT_REGION'];
      where = `Secrets Manager${effective ? ` (${effective})` : ''}`;
    }
    // Loaded on first use (the Secrets Manager client is a large module) and created after
    // process.env is set: the SDK client reads its endpoint and region from there.
    this.secretsCache ??= import('../src/aws/secrets.ts').then((module) => ({
      reader: new module.JsonSecrets(),
      SecretError: module.SecretError,
    }));
    return this.secretsCache.then(async ({ reader, SecretError }) => {
      let secret: import('zod/v4/core').output<S> | undefined;
      try {
        secret = await reader.read(name, schema);
      } catch (error) {
        if (error instanceof SecretError)
          throw new CliError(`${error.message} from ${where}`, { cause: error });
        throw error;
      }
      if (secret === undefined) throw new CliError(`no secret ${name} in ${where}: ${missing}`);
      return secret;
    });
  }

  /** A platform's API credentials (its `…/platforms/<id>/api` secret). */
  credentialsSource(): CredentialsSource {
    this.credentialsCache ??= (platformId) =>
      this.readSecret(
        platformApiSecretName(this.environment, platformId),
        ApiCredentialsSchema,
        "the platform's API credentials live there",
      );
    return this.credentialsCache;
  }

  /**
   * The environment's keyed user digest (src/privacy/digest.ts), with the privacy key the stack
   * created in Secrets Manager: what tombstones, audit and rejection records hold instead of an id.
   */
  async userDigests(): Promise<UserDigests> {
    const { UserDigests } = await import('../src/privacy/digest.ts');
    return new UserDigests(this.environment, async () => {
      const secret = await this.readSecret(
        privacyKeySecretName(this.environment),
        PrivacyKeySchema,
        'the privacy key the stack creates (docs/privacy.md)',
      );
      return secret.key;
    });
  }

  /**
   * One PartnerClient per platform, with its credentials (src/connectors/partner-clients.ts),
   * loaded on first use: it brings the connectors, their auth schemes and schemas.
   */
  partnerClients(): Pick<PartnerClients, 'for'> {
    const credentials = this.credentialsSource();
    this.clientsCache ??= import('../src/connectors/partner-clients.ts').then(
      ({ PartnerClients }) => new PartnerClients(credentials),
    );
    const clients = this.clientsCache;
    return { for: async (platform) => (await clients).for(platform) };
  }

  /** The segment table of the environment (its endpoint, name and a client). */
  segmentTable(): Promise<TableTarget> {
    this.segmentTableCache ??= resolveTable(this.flags, SEGMENT_TABLE, 'segmentTableName', this.env).then(
      (target) => {
        this.closers.push(() => target.client.destroy());
        return target;
      },
    );
    return this.segmentTableCache;
  }

  async segmentStore(): Promise<{ readonly store: DynamoSegmentStore; readonly table: TableTarget }> {
    const table = await this.segmentTable();
    const { DynamoSegmentStore } = await import('../src/segments/segment-store.ts');
    return { store: new DynamoSegmentStore(table.client, table.tableName), table };
  }

  /** The SegmentService the population step uses, on this environment's table, partner and secrets. */
  async segmentService(): Promise<{ readonly service: SegmentService; readonly table: TableTarget }> {
    const { store, table } = await this.segmentStore();
    const clients = this.partnerClients();
    const { SegmentService } = await import('../src/segments/segment-service.ts');
    const service = new SegmentService({
      environment: this.runtimeConfig().name,
      store,
      partnerFor: (platform) => clients.for(platform),
    });
    return { service, table };
  }

  /** A table of the environment (its endpoint, name and a client), closed with the context. */
  async table(table: TableDefinition, output: keyof typeof STACK_OUTPUTS): Promise<TableTarget> {
    const target = await resolveTable(this.flags, table, output, this.env);
    this.closers.push(() => target.client.destroy());
    return target;
  }

  /** An SQS client for the environment: the local stack's fauxqs, or SQS in the deployed region. */
  async sqsClient(): Promise<import('@aws-sdk/client-sqs').SQSClient> {
    // Loaded on use: most commands never touch SQS.
    const { SQSClient } = await import('@aws-sdk/client-sqs');
    const client = this.isLocal
      ? new SQSClient({
          region: this.localEndpoints().region,
          endpoint: this.localEndpoints().sqsEndpoint,
          credentials: LOCAL_CREDENTIALS,
        })
      : new SQSClient({ ...(this.deployedRegion() ? { region: this.deployedRegion() } : {}) });
    this.closers.push(() => client.destroy());
    return client;
  }

  close(): void {
    for (const closer of this.closers.splice(0).reverse()) closer();
    this.patch.restore();
  }
}

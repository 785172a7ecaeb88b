import { existsSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  LOCAL_CREDENTIALS,
  LOCAL_REGION,
  localEndpointsFile,
  REPO_ROOT,
  readEndpointsFile,
} from '../local/endpoints.ts';
import { ConfigError, loadEnvironmentFile } from '../src/config/load.ts';
import type { EnvironmentConfig } from '../src/config/schema.ts';
import { STACK_OUTPUTS, stackName, type TableDefinition } from '../src/infra/resources.ts';
import { CliError, UsageError } from './framework.ts';

/**
 * Which environment a command talks to. Default (or `--env local`): the running local stack, found
 * through `.local-data/endpoints.json` (or `--endpoint`). `--env <name>`: the deployed stack
 * `DmpActivation-<name>`, its resource names read from its CloudFormation outputs, with the default
 * AWS credential chain.
 */

export const TARGET_OPTIONS = {
  env: { type: 'string' },
  endpoint: { type: 'string' },
  table: { type: 'string' },
  region: { type: 'string' },
} as const;

export interface TargetFlags {
  readonly env?: string | undefined;
  readonly endpoint?: string | undefined;
  readonly table?: string | undefined;
  readonly region?: string | undefined;
}

export interface TableTarget {
  readonly client: DynamoDBClient;
  readonly tableName: string;
  /** e.g. `local (http://127.0.0.1:8000)` or `dev (stack DmpActivation-dev, eu-west-1)`. */
  readonly description: string;
}

export function targetFlags(values: Record<string, unknown>): TargetFlags {
  const pick = (name: string) => (typeof values[name] === 'string' ? (values[name] as string) : undefined);
  return { env: pick('env'), endpoint: pick('endpoint'), table: pick('table'), region: pick('region') };
}

function checkEndpoint(endpoint: string): string {
  try {
    const url = new URL(endpoint);
    if (url.protocol === 'http:' || url.protocol === 'https:') return endpoint;
  } catch {
    // fall through
  }
  throw new UsageError(`--endpoint must be an http(s) URL, got '${endpoint}'`);
}

/** Resolves the DynamoDB client and table name for `table` in the targeted environment. */
export async function resolveTable(
  flags: TargetFlags,
  table: TableDefinition,
  outputName: keyof typeof STACK_OUTPUTS,
  env: NodeJS.ProcessEnv,
): Promise<TableTarget> {
  const environment = flags.env ?? 'local';
  if (!/^[a-z][a-z0-9-]{1,20}$/.test(environment))
    throw new UsageError(`invalid environment name '${environment}'`);
  // Loaded here, not at the top: `dmp --help` and commands without a table do not pay for it.
  const { DynamoDBClient } = await import('@aws-sdk/client-dynamodb');

  if (environment === 'local') {
    let endpoint = flags.endpoint ? checkEndpoint(flags.endpoint) : undefined;
    let region = flags.region ?? LOCAL_REGION;
    let tableName = flags.table;
    if (!endpoint) {
      const lookup = readEndpointsFile(localEndpointsFile(env));
      if (!lookup.found) {
        throw new CliError(
          `cannot find the local stack: ${lookup.reason} (${lookup.path}). ` +
            "Start it with 'npm start', pass --endpoint <url>, or target a deployed environment with --env <name>.",
        );
      }
      endpoint = lookup.endpoints.dynamodbEndpoint;
      region = flags.region ?? lookup.endpoints.region;
      tableName ??= lookup.endpoints.tableNames[table.id];
    }
    tableName ??= table.localName;
    return {
      client: new DynamoDBClient({ region, endpoint, credentials: LOCAL_CREDENTIALS }),
      tableName,
      description: `local (${endpoint}, table ${tableName})`,
    };
  }

  const config = deployedEnvironment(environment);
  const region = flags.region ?? config.aws.region;
  const regionConfig = region ? { region } : {};
  const stack = stackName(environment);
  const tableName =
    flags.table ??
    (await readStackOutput(flags, outputName, { hint: 'pass --table <name>', environment, config }));
  const client = new DynamoDBClient({
    ...regionConfig,
    ...(flags.endpoint ? { endpoint: checkEndpoint(flags.endpoint) } : {}),
  });
  return {
    client,
    tableName,
    description: `${environment} (stack ${stack}${region ? `, ${region}` : ''}, table ${tableName})`,
  };
}

/**
 * One output of the deployed stack `DmpActivation-<env>` (DescribeStacks, default credential
 * chain); CliError saying what to do when it cannot be read. `hint` says how to do without it.
 */
export async function readStackOutput(
  flags: TargetFlags,
  outputName: keyof typeof STACK_OUTPUTS,
  options: { readonly hint: string; readonly environment?: string; readonly config?: EnvironmentConfig },
): Promise<string> {
  const environment = options.environment ?? flags.env ?? 'local';
  const config = options.config ?? deployedEnvironment(environment);
  const region = flags.region ?? config.aws.region;
  const stack = stackName(environment);
  // Loaded only for deployed environments: it would add a second to every local command's start.
  const { CloudFormationClient, DescribeStacksCommand } = await import('@aws-sdk/client-cloudformation');
  const cloudFormation = new CloudFormationClient(region ? { region } : {});
  try {
    const { Stacks } = await cloudFormation.send(new DescribeStacksCommand({ StackName: stack }));
    const output = Stacks?.[0]?.Outputs?.find(
      (candidate) => candidate.OutputKey === STACK_OUTPUTS[outputName],
    );
    if (!output?.OutputValue) {
      throw new CliError(`stack ${stack} has no output ${STACK_OUTPUTS[outputName]}; ${options.hint}`);
    }
    return output.OutputValue;
  } catch (error) {
    if (error instanceof CliError) throw error;
    throw awsError(error, { environment, stack, region, account: config.aws.account });
  } finally {
    cloudFormation.destroy();
  }
}

export const ENVIRONMENTS_DIR = join(REPO_ROOT, 'config', 'environments');

export function environmentFile(name: string): string {
  return join(ENVIRONMENTS_DIR, `${name}.json`);
}

/** Names of the environments that have a config file. */
export function knownEnvironments(): string[] {
  if (!existsSync(ENVIRONMENTS_DIR)) return [];
  return readdirSync(ENVIRONMENTS_DIR)
    .filter((file) => file.endsWith('.json'))
    .map((file) => file.slice(0, -'.json'.length))
    .sort();
}

/**
 * The file of a deployed environment, before any AWS call: a name without a file, or a file that
 * is not deployed, is the operator's typo and is said so, not reported as a missing stack.
 */
function deployedEnvironment(name: string): EnvironmentConfig {
  const file = environmentFile(name);
  if (!existsSync(file)) {
    throw new CliError(
      `unknown environment '${name}': no ${relative(process.cwd(), file) || file}; known: ${knownEnvironments().join(', ') || 'none'}`,
    );
  }
  let config: EnvironmentConfig;
  try {
    config = loadEnvironmentFile(file);
  } catch (error) {
    if (error instanceof ConfigError) throw new CliError(error.message, { cause: error });
    throw error;
  }
  if (!config.deploy) {
    throw new CliError(
      `environment '${name}' is not deployed (deploy: false in ${file}); it runs with npm start`,
    );
  }
  return config;
}

interface AwsErrorContext {
  readonly environment: string;
  readonly stack: string;
  readonly region: string | undefined;
  readonly account: string | undefined;
}

/** An AWS SDK failure as one sentence that says what to do (no stack trace, no credential value). */
export function awsError(error: unknown, context: AwsErrorContext): CliError {
  const { environment, stack, region, account } = context;
  const name = (error as Error).name ?? 'Error';
  const message = (error as Error).message ?? String(error);
  const where = `${region ?? 'the default region'}${account ? `, account ${account}` : ''}`;
  if (name === 'CredentialsProviderError' || /could not load credentials/i.test(message)) {
    return new CliError(
      `no AWS credentials for --env ${environment}: the standard AWS chain found none. Set AWS_PROFILE ` +
        '(after `aws sso login` for SSO), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, for ' +
        `account ${account ?? '(see the environment file)'}`,
      { cause: error },
    );
  }
  if (/ExpiredToken|TokenRefreshRequired|expired/i.test(name) || /token .*expired/i.test(message)) {
    return new CliError(
      `the AWS credentials have expired (${name}): renew them (\`aws sso login\`, or new keys) and retry`,
      { cause: error },
    );
  }
  if (name === 'ValidationError' && /does not exist/i.test(message)) {
    return new CliError(
      `stack ${stack} not found in ${where}: is '${environment}' deployed there, and are these ` +
        `credentials for account ${account ?? '(see the environment file)'}?`,
      { cause: error },
    );
  }
  if (
    /AccessDenied|UnauthorizedOperation|InvalidClientTokenId|UnrecognizedClient|SignatureDoesNotMatch/i.test(
      name,
    )
  ) {
    return new CliError(
      `AWS refused the credentials for ${where} (${name}): they are invalid or lack the permission ` +
        `(${message.slice(0, 200)})`,
      { cause: error },
    );
  }
  if (/\bregion\b/i.test(message)) {
    return new CliError(`no usable AWS region for --env ${environment}: pass --region or set AWS_REGION`, {
      cause: error,
    });
  }
  return new CliError(`cannot read stack ${stack} (${where}): ${name}: ${message}`, { cause: error });
}

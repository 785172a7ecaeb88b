import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  LOCAL_CREDENTIALS,
  LOCAL_REGION,
  localEndpointsFile,
  REPO_ROOT,
  readEndpointsFile,
} from '../local/endpoints.ts';
import { loadEnvironmentFile } from '../src/config/load.ts';
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

  const configFile = join(REPO_ROOT, 'config', 'environments', `${environment}.json`);
  const region =
    flags.region ?? (existsSync(configFile) ? loadEnvironmentFile(configFile).aws.region : undefined);
  const regionConfig = region ? { region } : {};
  const stack = stackName(environment);
  let tableName = flags.table;
  if (!tableName) {
    // Loaded only for deployed environments: it would add a second to every local command's start.
    const { CloudFormationClient, DescribeStacksCommand } = await import('@aws-sdk/client-cloudformation');
    const cloudFormation = new CloudFormationClient(regionConfig);
    try {
      const { Stacks } = await cloudFormation.send(new DescribeStacksCommand({ StackName: stack }));
      const output = Stacks?.[0]?.Outputs?.find(
        (candidate) => candidate.OutputKey === STACK_OUTPUTS[outputName],
      );
      if (!output?.OutputValue) {
        throw new CliError(`stack ${stack} has no output ${STACK_OUTPUTS[outputName]}; pass --table <name>`);
      }
      tableName = output.OutputValue;
    } catch (error) {
      if (error instanceof CliError) throw error;
      const name = (error as Error).name;
      if (name === 'ValidationError') {
        throw new CliError(`stack ${stack} not found (is '${environment}' deployed?)`, { cause: error });
      }
      if (/\bregion\b/i.test((error as Error).message)) {
        throw new CliError(`no usable AWS region for --env ${environment}: pass --region or set AWS_REGION`, {
          cause: error,
        });
      }
      if (name === 'CredentialsProviderError' || /credential/i.test(name)) {
        throw new CliError(`no AWS credentials for --env ${environment} (${(error as Error).message})`, {
          cause: error,
        });
      }
      throw new CliError(`cannot read stack ${stack}: ${name}: ${(error as Error).message}`, {
        cause: error,
      });
    } finally {
      cloudFormation.destroy();
    }
  }
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

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { deploymentProblems } from '../../lib/deployment.ts';
import { localEndpointsFile, readEndpointsFile } from '../../local/endpoints.ts';
import { rewritePartnerOrigin } from '../../local/partner-origin.ts';
import {
  ConfigError,
  loadEnvironmentFile,
  parseEnvironment,
  parsePlatform,
  platformDirectoryOf,
} from '../../src/config/load.ts';
import type { EnvironmentConfig, PlatformConfig } from '../../src/config/schema.ts';
import {
  type ConfigProblem,
  environmentFile,
  environmentName,
  formatProblem,
  loadEnvironmentConfig,
  problemsOf,
} from '../context.ts';
import { renderTable } from '../format.ts';
import type { Command } from '../framework.ts';

/**
 * `dmp platforms list`: the execution platforms of an environment as its config files define
 * them; `dmp platforms validate <file>`: checks a platform or environment file against the schema
 * the service validates it with at synth time and cold start. Both read files only (no AWS).
 */

export interface PlatformView {
  readonly id: number;
  readonly name: string;
  /** null when the platform takes no part in user syncing. */
  readonly sync: {
    readonly enabled: boolean;
    /** Host (and port) of the sync URL template: where browsers are sent. */
    readonly templateHost: string;
    readonly signatureRequired: boolean;
  } | null;
  /** null when the service does not call the platform's API. */
  readonly connector: {
    readonly auth: string;
    /** `api` (a create call answers with the id) or `implicit` (the name is the id). */
    readonly segmentCreation: 'api' | 'implicit';
    readonly populationMode: 'batch' | 'single' | 'file';
    /** Users per call; null unless the mode is batch. */
    readonly batchSize: number | null;
    readonly removalVia: 'call' | 'opColumn' | 'ttl';
    readonly apiHost: string;
  } | null;
}

function hostOf(template: string): string {
  try {
    return new URL(template.replaceAll(/\{[A-Za-z_.]+\}/g, 'x')).host;
  } catch {
    return '?';
  }
}

export function platformView(platform: PlatformConfig): PlatformView {
  const { sync, connector } = platform;
  return {
    id: platform.id,
    name: platform.name,
    sync: sync
      ? {
          enabled: sync.enabled,
          templateHost: hostOf(sync.urlTemplate),
          signatureRequired: sync.signature.required,
        }
      : null,
    connector: connector
      ? {
          auth: connector.api.auth.type,
          segmentCreation: connector.segments.creation,
          populationMode: connector.population.mode,
          batchSize: connector.population.mode === 'batch' ? connector.population.batchSize : null,
          removalVia: connector.population.removal.via,
          apiHost: hostOf(connector.api.baseUrl),
        }
      : null,
  };
}

/** The local environment with the reference partner's URLs where it listens (as local/stack.ts rewrites them). */
function withLocalPartnerOrigin(config: EnvironmentConfig, env: NodeJS.ProcessEnv): EnvironmentConfig {
  if (config.name !== 'local') return config;
  const running = readEndpointsFile(localEndpointsFile(env));
  if (running.found) return rewritePartnerOrigin(config, running.endpoints.partnerUrl);
  const port = Number(env['PARTNER_PORT']);
  return Number.isInteger(port) && port > 0 && port < 65_536
    ? rewritePartnerOrigin(config, `http://127.0.0.1:${port}`)
    : config;
}

export const platformsListCommand: Command = {
  name: 'platforms list',
  summary: "List an environment's execution platforms as its config files define them",
  usage: '[--env <name>] [--json]',
  help: [
    'options:',
    '  --env <name>  the environment (default local): config/environments/<name>.json',
    '                and config/platforms/<name>/*.json',
    '  --json        {"environment": ..., "platforms": [{"id", "name", "sync", "connector"}]}',
    '',
    'Reads the config files only: no AWS call, no running stack needed. For the local environment,',
    'URLs that name the reference partner show where it listens: the running stack (npm start),',
    'else PARTNER_PORT, else 127.0.0.1:3001.',
  ].join('\n'),
  options: { env: { type: 'string' } },
  run({ values, json, io }) {
    const name = environmentName({ env: typeof values['env'] === 'string' ? values['env'] : undefined });
    const config: EnvironmentConfig = withLocalPartnerOrigin(loadEnvironmentConfig(name), io.env);
    const platforms = config.platforms.map(platformView);
    if (json) {
      io.stdout(JSON.stringify({ environment: config.name, platforms }, null, 2));
      return 0;
    }
    const source = relative(process.cwd(), environmentFile(name)) || environmentFile(name);
    if (platforms.length === 0) {
      io.stdout(`Environment ${config.name} (${source}) has no platforms.`);
      return 0;
    }
    io.stdout(`Platforms of environment ${config.name} (${source}):\n`);
    io.stdout(
      renderTable(
        ['ID', 'NAME', 'SYNC', 'SYNC HOST', 'AUTH', 'SEGMENTS', 'POPULATION', 'BATCH', 'REMOVAL', 'API HOST'],
        platforms.map((platform) => {
          const { sync, connector } = platform;
          return [
            String(platform.id),
            platform.name,
            sync ? `${sync.enabled ? 'on' : 'off'}${sync.signatureRequired ? ' (signed)' : ''}` : '-',
            sync?.templateHost ?? '-',
            connector?.auth ?? '-',
            connector?.segmentCreation ?? '-',
            connector?.populationMode ?? '-',
            connector?.batchSize === null || connector === null ? '-' : String(connector.batchSize),
            connector?.removalVia ?? '-',
            connector?.apiHost ?? '-',
          ];
        }),
      ),
    );
    return 0;
  },
};

// ---------------------------------------------------------------------------------------------

type FileKind = 'platform' | 'environment';

type Validation =
  | { readonly valid: true; readonly kind: 'platform'; readonly platform: PlatformConfig }
  | { readonly valid: true; readonly kind: 'environment'; readonly environment: EnvironmentConfig }
  | { readonly valid: false; readonly kind: FileKind | null; readonly problems: readonly ConfigProblem[] };

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Which schema a file is for: by its folder (config/environments/, config/platforms/), else by
 * its content (an environment has `platforms`, or a `name` and no `id`).
 */
function kindOf(path: string, document: unknown): FileKind {
  const folders = dirname(path).split(sep);
  if (folders.at(-1) === 'environments') return 'environment';
  if (folders.includes('platforms')) return 'platform';
  if (isObject(document) && ('platforms' in document || ('name' in document && !('id' in document)))) {
    return 'environment';
  }
  return 'platform';
}

function readDocument(path: string): { document: unknown } | { problem: string } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EISDIR'
          ? 'is a directory'
          : code === 'EACCES'
            ? 'permission denied'
            : (error as Error).message;
    return { problem: `cannot read file: ${reason}` };
  }
  try {
    return { document: JSON.parse(text) };
  } catch (error) {
    return { problem: `not valid JSON: ${(error as Error).message}` };
  }
}

function collect(problems: ConfigProblem[], action: () => void): void {
  try {
    action();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    problems.push(...problemsOf(error));
  }
}

/**
 * Validates an environment file together with its platform files: every platform file on its
 * own (so that each bad file is named), the environment's own settings, then the whole (what
 * loadEnvironmentFile checks, duplicate ids included).
 */
function validateEnvironment(path: string, document: unknown): Validation {
  const problems: ConfigProblem[] = [];
  const directory = platformDirectoryOf(path);
  if (isObject(document) && existsSync(directory)) {
    for (const file of readdirSync(directory)
      .filter((name) => name.endsWith('.json'))
      .sort()) {
      const platformPath = join(directory, file);
      const read = readDocument(platformPath);
      if ('problem' in read) problems.push({ file: platformPath, path: null, message: read.problem });
      else collect(problems, () => parsePlatform(read.document, platformPath));
    }
    if (problems.length > 0) {
      const inline = Array.isArray(document['platforms']) ? document['platforms'] : [];
      collect(problems, () => parseEnvironment({ ...document, platforms: inline }, path));
      return { valid: false, kind: 'environment', problems };
    }
  }
  let environment: EnvironmentConfig | undefined;
  collect(problems, () => {
    environment = loadEnvironmentFile(path);
    // A deployed environment must also be deployable: what `cdk synth` would refuse, said here.
    const deployment = environment.deploy ? deploymentProblems(environment) : [];
    if (deployment.length > 0) throw new ConfigError(path, deployment);
  });
  return environment && problems.length === 0
    ? { valid: true, kind: 'environment', environment }
    : { valid: false, kind: 'environment', problems };
}

export function validateConfigFile(path: string): Validation {
  const read = readDocument(path);
  if ('problem' in read)
    return { valid: false, kind: null, problems: [{ file: path, path: null, message: read.problem }] };
  if (kindOf(path, read.document) === 'environment') return validateEnvironment(path, read.document);
  const problems: ConfigProblem[] = [];
  let platform: PlatformConfig | undefined;
  collect(problems, () => {
    platform = parsePlatform(read.document, path);
  });
  return platform
    ? { valid: true, kind: 'platform', platform }
    : { valid: false, kind: 'platform', problems };
}

export const platformsValidateCommand: Command = {
  name: 'platforms validate',
  summary: 'Validate a platform file, or an environment file with its platform files',
  usage: '<file> [--json]',
  help: [
    'arguments:',
    '  <file>  a platform file (config/platforms/<env>/*.json) or an environment file',
    '          (config/environments/<name>.json: its platform files are validated too)',
    '',
    'options:',
    '  --json  {"file": ..., "valid": true|false, "problems": [{"file", "path", "message"}]}',
    '',
    'Exit status: 0 valid, 1 invalid or unreadable.',
  ].join('\n'),
  positionals: { min: 1, max: 1 },
  run({ positionals, json, io }) {
    const given = positionals[0]!;
    const path = resolve(given);
    const shown = (file: string) => {
      if (file === path) return given;
      const relativePath = relative(process.cwd(), file);
      return relativePath && !relativePath.startsWith('..') && !isAbsolute(relativePath)
        ? relativePath
        : file;
    };
    const result = validateConfigFile(path);

    if (!result.valid) {
      const problems = result.problems.map((problem) => ({ ...problem, file: shown(problem.file) }));
      if (json) {
        io.stdout(JSON.stringify({ file: given, valid: false, kind: result.kind, problems }, null, 2));
      } else {
        io.stderr(
          [
            `invalid: ${given} (${problems.length} problem${problems.length === 1 ? '' : 's'})`,
            ...problems.map((problem) => formatProblem(problem)),
          ].join('\n'),
        );
      }
      return 1;
    }

    if (result.kind === 'platform') {
      const { id, name } = result.platform;
      if (json) {
        io.stdout(
          JSON.stringify(
            {
              file: given,
              valid: true,
              kind: 'platform',
              platform: platformView(result.platform),
              problems: [],
            },
            null,
            2,
          ),
        );
      } else {
        io.stdout(`ok: ${given} (platform ${id} ${JSON.stringify(name)})`);
      }
      return 0;
    }
    const { environment } = result;
    if (json) {
      io.stdout(
        JSON.stringify(
          {
            file: given,
            valid: true,
            kind: 'environment',
            environment: environment.name,
            platforms: environment.platforms.map(platformView),
            problems: [],
          },
          null,
          2,
        ),
      );
    } else {
      const platforms = environment.platforms.map(
        (platform) => `platform ${platform.id} ${JSON.stringify(platform.name)}`,
      );
      io.stdout(
        `ok: ${given} (environment ${environment.name}: ${
          platforms.length === 0 ? 'no platforms' : platforms.join(', ')
        })`,
      );
    }
    return 0;
  },
};

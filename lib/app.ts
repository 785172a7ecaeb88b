import { readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { type App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ConfigError, loadEnvironmentFile } from '../src/config/load.ts';
import type { EnvironmentConfig } from '../src/config/schema.ts';
import { deploymentProblems, forDeployment } from './deployment.ts';
import { DmpActivationStack } from './dmp-activation-stack.ts';

/**
 * The environments to synthesize: every `<dir>/*.json` with `deploy: true`, or only `<only>` (the
 * `-c env=<name>` context). Every file read is validated; a bad one throws a ConfigError naming
 * the file and the fields, and so does a deployable one that does not name its account, region
 * and alarm topic (lib/deployment.ts). What is returned is the configuration as deployed.
 */
export function selectEnvironments(dir: string, only?: string): EnvironmentConfig[] {
  if (only !== undefined) {
    if (!/^[a-z][a-z0-9-]{1,20}$/.test(only)) {
      throw new ConfigError('-c env', [
        `"${only}" is not an environment name (config/environments/<name>.json)`,
      ]);
    }
    const path = join(dir, `${only}.json`);
    const config = loadNamed(path);
    if (!config.deploy) {
      throw new ConfigError(path, [
        'deploy: is false, this environment is not deployed (it runs on this machine with npm start)',
      ]);
    }
    return [deployable(path, config)];
  }
  const files = readdirSync(dir)
    .filter((file) => file.endsWith('.json'))
    .sort();
  return files
    .map((file) => [join(dir, file), loadNamed(join(dir, file))] as const)
    .filter(([, config]) => config.deploy)
    .map(([path, config]) => deployable(path, config));
}

function deployable(path: string, config: EnvironmentConfig): EnvironmentConfig {
  const problems = deploymentProblems(config);
  if (problems.length > 0) throw new ConfigError(path, problems);
  return forDeployment(config);
}

/** A config file is named after its environment, so `-c env=<name>` and the stack name agree. */
function loadNamed(path: string): EnvironmentConfig {
  const config = loadEnvironmentFile(path);
  const expected = basename(path, '.json');
  if (config.name !== expected) {
    throw new ConfigError(path, [`name: "${config.name}" must match the file name "${expected}"`]);
  }
  return config;
}

/**
 * One stack per environment, pinned to the account and region its file names: `cdk deploy` with
 * another account's credentials stops before changing anything.
 */
export function addEnvironmentStacks(app: App, configs: readonly EnvironmentConfig[]): DmpActivationStack[] {
  return configs.map((config) => {
    const { account, region } = config.aws;
    return new DmpActivationStack(app, DmpActivationStack.idFor(config), {
      config,
      env: { account, region },
    });
  });
}

/**
 * cdk-nag 3 (AWS Solutions pack) as a CDK policy-validation plugin: findings that are not
 * acknowledged fail the synth. (Tags `project` and `environment` are set by each stack.)
 */
export function addNagChecks(app: App): void {
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
}

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, Duration, Stack, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { AwsSolutionsChecks } from 'cdk-nag';
import { Monitoring } from '../../lib/constructs/monitoring.ts';
import { UserSyncApi } from '../../lib/constructs/user-sync-api.ts';
import { ENVIRONMENTS_DIR } from '../../lib/repo.ts';
import { loadEnvironmentFile } from '../../src/config/load.ts';
import type { EnvironmentConfig } from '../../src/config/schema.ts';
import { ROUTES } from '../../src/infra/resources.ts';

/**
 * A small stack for testing one construct against its neighbours: the dev environment's config,
 * a plain function (own role, no managed policy), the environment's monitoring, and cdk-nag when
 * asked. `cleanUpCdkTestStacks` removes their output folders.
 */

export interface CdkTestStack {
  readonly app: App;
  readonly stack: Stack;
  readonly config: EnvironmentConfig;
  readonly function: lambda.Function;
  readonly monitoring: Monitoring;
}

const outdirs: string[] = [];

export function cdkTestStack(
  options: { timeoutSeconds?: number; monitoring?: EnvironmentConfig['monitoring']; nag?: boolean } = {},
): CdkTestStack {
  const outdir = mkdtempSync(join(tmpdir(), 'dmp-cdk-construct-'));
  outdirs.push(outdir);
  const app = new App({ outdir });
  const stack = new Stack(app, 'ConstructTest');
  const config: EnvironmentConfig = {
    ...loadEnvironmentFile(join(ENVIRONMENTS_DIR, 'dev.json')),
    ...(options.monitoring ? { monitoring: options.monitoring } : {}),
  };
  const role = new iam.Role(stack, 'Role', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') });
  const fn = new lambda.Function(stack, 'Consumer', {
    runtime: lambda.Runtime.NODEJS_24_X,
    handler: 'index.handler',
    code: lambda.Code.fromInline('exports.handler = async () => ({ batchItemFailures: [] })'),
    timeout: Duration.seconds(options.timeoutSeconds ?? 30),
    role,
  });
  const api = new UserSyncApi(stack, 'Api', {
    config,
    routes: ROUTES.filter((route) => route.function === 'userSync'),
    functions: { userSync: fn },
  });
  const monitoring = new Monitoring(stack, 'Monitoring', { config, api: api.api, functions: {} });
  if (options.nag) Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return { app, stack, config, function: fn, monitoring };
}

/** Synthesizes (which throws on an unacknowledged finding) and returns the nag errors reported. */
export function nagErrors(app: App): string[] {
  app.synth();
  const report = JSON.parse(readFileSync(join(app.outdir, 'validation-report.json'), 'utf8')) as {
    pluginReports: { violations: { ruleName: string; severity: string }[] }[];
  };
  return report.pluginReports.flatMap((plugin) =>
    plugin.violations.filter((v) => v.severity === 'error').map((v) => v.ruleName),
  );
}

export function cleanUpCdkTestStacks(): void {
  for (const dir of outdirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

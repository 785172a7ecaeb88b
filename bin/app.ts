import { App } from 'aws-cdk-lib';
import { addEnvironmentStacks, addNagChecks, selectEnvironments } from '../lib/app.ts';
import { ENVIRONMENTS_DIR } from '../lib/repo.ts';
import { ConfigError } from '../src/config/load.ts';

/**
 * The CDK app: one `DmpActivation-<name>` stack per config/environments/<name>.json with
 * `deploy: true`, or only the one named by `-c env=<name>`. `DMP_ENVIRONMENTS_DIR` points it at
 * environment files kept elsewhere (their platform files in `<dir>/../platforms/<name>/`).
 */
const app = new App();
const only: unknown = app.node.tryGetContext('env');
if (only !== undefined && typeof only !== 'string') {
  console.error('context env must be an environment name, e.g. -c env=dev');
  process.exit(1);
}

try {
  addEnvironmentStacks(
    app,
    selectEnvironments(process.env['DMP_ENVIRONMENTS_DIR'] || ENVIRONMENTS_DIR, only),
  );
} catch (error) {
  if (error instanceof ConfigError) {
    console.error(error.message);
    process.exit(1);
  }
  throw error;
}
addNagChecks(app);
app.synth();

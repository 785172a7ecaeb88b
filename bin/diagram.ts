import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { addEnvironmentStacks, selectEnvironments } from '../lib/app.ts';
import { DIAGRAM_ENVIRONMENT, resourceDiagram, type StackTemplate, withDiagram } from '../lib/diagram.ts';
import { ENVIRONMENTS_DIR, REPO_ROOT } from '../lib/repo.ts';

/**
 * `npm run docs:diagram`: synthesizes the prod example (the environment with every optional
 * resource, the custom domain included) and rewrites the diagram block of docs/architecture.md.
 */
const outdir = mkdtempSync(join(tmpdir(), 'dmp-diagram-'));
try {
  const app = new App({ outdir });
  const [stack] = addEnvironmentStacks(app, selectEnvironments(ENVIRONMENTS_DIR, DIAGRAM_ENVIRONMENT));
  const template = Template.fromStack(stack!).toJSON() as StackTemplate;
  const path = join(REPO_ROOT, 'docs', 'architecture.md');
  writeFileSync(path, withDiagram(readFileSync(path, 'utf8'), resourceDiagram(template)));
  console.log(`docs/architecture.md: diagram of ${stack!.stackName} written`);
} finally {
  rmSync(outdir, { recursive: true, force: true });
}

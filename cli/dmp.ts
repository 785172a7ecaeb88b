#!/usr/bin/env -S node --import tsx
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * `dmp`, the operator CLI. This file only makes sure it runs on Node.js 24 (the Lambda runtime,
 * whose APIs the service code uses) and then loads cli/main.ts. It imports nothing but Node.js
 * built-ins, so that an older Node.js (the system's, through the `#!` line) gets this far: it hands
 * over to the project's own Node.js 24 (the `node` dev dependency) when installed, and otherwise
 * says what to do instead of failing on the first newer API.
 */
const REQUIRED_MAJOR = 24;
const major = Number(process.versions.node.split('.')[0]);

if (major < REQUIRED_MAJOR) {
  const self = fileURLToPath(import.meta.url);
  const projectNode = join(dirname(self), '..', 'node_modules', 'node', 'bin', 'node');
  if (process.env['DMP_NODE_REEXEC'] !== '1' && existsSync(projectNode)) {
    const loader = join(dirname(self), '..', 'node_modules', 'tsx', 'dist', 'loader.mjs');
    const result = spawnSync(projectNode, ['--import', loader, self, ...process.argv.slice(2)], {
      stdio: 'inherit',
      env: { ...process.env, DMP_NODE_REEXEC: '1' },
    });
    process.exit(result.status ?? 1);
  }
  process.stderr.write(
    `dmp needs Node.js ${REQUIRED_MAJOR} or later; this is Node.js ${process.versions.node} (${process.execPath}).\n` +
      "Run it as 'npm run dmp -- <command>' after 'npm install' (npm scripts use the project's Node.js 24), " +
      `or install Node.js ${REQUIRED_MAJOR}.\n`,
  );
  process.exit(1);
}

await import('./main.ts');

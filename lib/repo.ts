import { join, resolve } from 'node:path';

/** The repository root: entries, the lock file and the config files are resolved from here. */
export const REPO_ROOT = resolve(import.meta.dirname, '..');

export const ENVIRONMENTS_DIR = join(REPO_ROOT, 'config', 'environments');

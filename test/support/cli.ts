import { spawn } from 'node:child_process';
import { COMMANDS } from '../../cli/commands/index.ts';
import { runCli } from '../../cli/framework.ts';
import { REPO_ROOT } from '../../local/endpoints.ts';

/** The `dmp` CLI in tests: in its own process as the operator runs it, or in this one (fast). */

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunDmpOptions {
  /** Added to the minimal environment (PATH, HOME, NO_COLOR=1); nothing else of this process leaks in. */
  readonly env?: Record<string, string>;
  /** Default: the repository root. */
  readonly cwd?: string;
  /** Extra Node.js options before the script (e.g. another `--import`). */
  readonly nodeArgs?: readonly string[];
}

/** Runs `dmp` (node --import tsx cli/dmp.ts) in its own process, with only the given environment. */
export function runDmp(args: readonly string[], options: RunDmpOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', ...(options.nodeArgs ?? []), 'cli/dmp.ts', ...args],
      {
        cwd: options.cwd ?? REPO_ROOT,
        env: {
          PATH: process.env['PATH'] ?? '',
          HOME: process.env['HOME'] ?? '/tmp',
          NO_COLOR: '1',
          ...options.env,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Runs `dmp` in this process through runCli (fast; stdout and stderr joined by newlines). */
export async function runDmpInProcess(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(argv, COMMANDS, {
    stdout: (text) => out.push(text),
    stderr: (text) => err.push(text),
    env,
  });
  return { code, stdout: out.join('\n'), stderr: err.join('\n') };
}

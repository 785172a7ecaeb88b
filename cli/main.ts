import { COMMANDS } from './commands/index.ts';
import { runCli } from './framework.ts';

/** `dmp`, once cli/dmp.ts has checked the Node.js version. See `dmp --help` and docs/local-stack.md. */
const code = await runCli(process.argv.slice(2), COMMANDS, {
  stdout: (text) => process.stdout.write(`${text}\n`),
  stderr: (text) => process.stderr.write(`${text}\n`),
  env: process.env,
});
process.exitCode = code;

import { type ParseArgsOptionsConfig, parseArgs } from 'node:util';

/**
 * A small command framework for `dmp`: commands register themselves in a list (cli/commands/),
 * may have multi-word names (`platforms validate`), declare their options for node:util parseArgs
 * and get the global ones (--json, --debug, --help). Exit codes: 0 ok, 1 error, 2 usage.
 */

export const EXIT_OK = 0;
export const EXIT_ERROR = 1;
export const EXIT_USAGE = 2;

/** Wrong invocation: printed with the command's usage, exit 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** An expected failure with a message meant for the operator (no stack trace), exit 1. */
export class CliError extends Error {
  override readonly name = 'CliError';
}

export interface CliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly env: NodeJS.ProcessEnv;
}

export const GLOBAL_OPTIONS = {
  json: { type: 'boolean', default: false },
  debug: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const satisfies ParseArgsOptionsConfig;

export type OptionValues = Record<string, string | boolean | (string | boolean)[] | undefined>;

export interface CommandContext {
  readonly values: OptionValues;
  readonly positionals: readonly string[];
  readonly json: boolean;
  readonly debug: boolean;
  readonly io: CliIo;
}

export interface Command {
  /** One or more words: `mappings`, `platforms validate`. */
  readonly name: string;
  readonly summary: string;
  /** Arguments and options after the name, for help and usage errors. */
  readonly usage: string;
  /** Longer help: option descriptions, examples. */
  readonly help?: string;
  readonly options?: ParseArgsOptionsConfig;
  readonly positionals?: { readonly min: number; readonly max: number };
  run(context: CommandContext): Promise<number | undefined> | number | undefined;
}

function usageOf(command: Command): string {
  return `usage: dmp ${command.name} ${command.usage}`.trimEnd();
}

export function overview(commands: readonly Command[]): string {
  const width = Math.max(...commands.map((command) => command.name.length));
  return [
    'usage: dmp <command> [options]',
    '',
    'commands:',
    ...commands.map((command) => `  ${command.name.padEnd(width)}  ${command.summary}`),
    '',
    'global options: --json (machine-readable output), --debug (stack traces), --help',
    "run 'dmp <command> --help' for a command's options",
  ].join('\n');
}

/** The registered command whose name is the longest prefix of the leading words of argv. */
function findCommand(argv: readonly string[], commands: readonly Command[]): [Command, number] | undefined {
  let best: [Command, number] | undefined;
  for (const command of commands) {
    const words = command.name.split(' ');
    if (words.length > argv.length) continue;
    if (words.every((word, index) => argv[index] === word) && (!best || words.length > best[1])) {
      best = [command, words.length];
    }
  }
  return best;
}

/** Hides the values of credentials that happen to be in the environment. */
function redact(text: string, env: NodeJS.ProcessEnv): string {
  let result = text;
  for (const name of ['AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN']) {
    const value = env[name];
    if (value && value.length >= 8) result = result.split(value).join('***');
  }
  return result;
}

export async function runCli(
  argv: readonly string[],
  commands: readonly Command[],
  io: CliIo,
): Promise<number> {
  const debug = argv.includes('--debug');
  if (argv.length === 0 || argv[0] === 'help' || argv[0] === '--help' || argv[0] === '-h') {
    if (argv.length === 0) {
      io.stderr(overview(commands));
      return EXIT_USAGE;
    }
    const found = argv[0] === 'help' ? findCommand(argv.slice(1), commands) : undefined;
    io.stdout(found ? commandHelp(found[0]) : overview(commands));
    return EXIT_OK;
  }
  const found = findCommand(argv, commands);
  if (!found) {
    io.stderr(`dmp: unknown command '${argv[0]}'\n\n${overview(commands)}`);
    return EXIT_USAGE;
  }
  const [command, consumed] = found;
  try {
    let parsed: ReturnType<typeof parseArgs>;
    try {
      parsed = parseArgs({
        args: argv.slice(consumed) as string[],
        options: { ...GLOBAL_OPTIONS, ...command.options },
        allowPositionals: true,
        strict: true,
      });
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
    const values = parsed.values as OptionValues;
    if (values['help']) {
      io.stdout(commandHelp(command));
      return EXIT_OK;
    }
    const limits = command.positionals ?? { min: 0, max: 0 };
    if (parsed.positionals.length < limits.min) throw new UsageError('missing argument');
    if (parsed.positionals.length > limits.max) {
      throw new UsageError(`unexpected argument '${parsed.positionals[limits.max]}'`);
    }
    const code = await command.run({
      values,
      positionals: parsed.positionals,
      json: values['json'] === true,
      debug: values['debug'] === true,
      io,
    });
    return code ?? EXIT_OK;
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr(`dmp ${command.name}: ${redact(error.message, io.env)}\n${usageOf(command)}`);
      return EXIT_USAGE;
    }
    const message =
      error instanceof CliError
        ? error.message
        : `${(error as Error).name ?? 'Error'}: ${(error as Error).message}`;
    io.stderr(`dmp ${command.name}: ${redact(message, io.env)}`);
    if (debug) {
      for (let cause: unknown = error; cause instanceof Error; cause = cause.cause) {
        if (cause.stack) io.stderr(redact(cause.stack, io.env));
      }
    }
    return EXIT_ERROR;
  }
}

export function commandHelp(command: Command): string {
  return [usageOf(command), '', command.summary, ...(command.help ? ['', command.help] : [])].join('\n');
}

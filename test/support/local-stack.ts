import { fileURLToPath } from 'node:url';
import { moduleLoader } from '../../local/lambda.ts';
import { type LocalStack, type LocalStackOptions, startLocalStack } from '../../local/stack.ts';

/** Echoes the event, context and environment it sees (test/local/fixtures/echo-handler.ts). */
export const ECHO_HANDLER = fileURLToPath(new URL('../local/fixtures/echo-handler.ts', import.meta.url));

/** A quiet local stack whose functions all run the echo handler, without TTL sweeps. */
export function startEchoStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  return startLocalStack({
    quiet: true,
    loadFunction: moduleLoader(ECHO_HANDLER),
    ttlSweepIntervalMs: 0,
    ...options,
  });
}

/**
 * Silences the handlers' Powertools logs and EMF metrics (they would flood the test output) when
 * they run in this process; returns what restores the environment.
 */
export function quietLambdaOutput(): () => void {
  const values: Record<string, string> = {
    POWERTOOLS_LOG_LEVEL: 'SILENT',
    POWERTOOLS_METRICS_DISABLED: 'true',
  };
  const saved = Object.fromEntries(Object.keys(values).map((name) => [name, process.env[name]]));
  Object.assign(process.env, values);
  return () => {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  };
}

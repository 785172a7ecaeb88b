import { writeFileSync } from 'node:fs';
import { registerHooks } from 'node:module';

/**
 * Preloaded with `--import` into a child process: records the URL of every module the process
 * loads and writes them, one a line, to the file named by DMP_RECORD_MODULES when it exits. The
 * CLI start-up tests read it to see what a command loaded.
 */
const target = process.env['DMP_RECORD_MODULES'];
const loaded = new Set<string>();
registerHooks({
  resolve(specifier, context, nextResolve) {
    const result = nextResolve(specifier, context);
    loaded.add(result.url);
    return result;
  },
});
process.on('exit', () => {
  if (target) writeFileSync(target, [...loaded].join('\n'));
});

import { expect } from 'vitest';
import { ConfigError } from '../../src/config/load.ts';

/** The ConfigError `run` throws; fails the test when it throws anything else, or nothing. */
export function configErrorOf(run: () => unknown): ConfigError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

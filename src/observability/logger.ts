import { Logger } from '@aws-lambda-powertools/logger';

/**
 * Structured JSON logs, one logger per container. Nothing logged carries a user id or a secret:
 * callers pass outcomes, reasons and platform ids only. `persistentKeys` are written on every line
 * (the user-sync function's `environment`, which its metric filters read as a dimension).
 */
export function createLogger(serviceName: string, persistentKeys: Record<string, string> = {}): Logger {
  return new Logger({ serviceName, persistentKeys });
}

import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { ConfigError } from '../../src/config/load.ts';
import type { EnvironmentConfig } from '../../src/config/schema.ts';

/** The retention periods CloudWatch Logs accepts (any other value fails at deploy time). */
const ALLOWED = new Set<number>(
  Object.values(RetentionDays).filter(
    (days): days is number => typeof days === 'number' && days !== RetentionDays.INFINITE,
  ),
);

/** `logRetentionDays` of the environment as a CloudWatch retention, refused at synth when invalid. */
export function logRetention(config: EnvironmentConfig): RetentionDays {
  const days = config.logRetentionDays;
  if (!ALLOWED.has(days)) {
    const allowed = [...ALLOWED].sort((a, b) => a - b).join(', ');
    throw new ConfigError(`environment ${config.name}`, [
      `logRetentionDays: ${days} is not a CloudWatch Logs retention period (one of ${allowed})`,
    ]);
  }
  return days as RetentionDays;
}

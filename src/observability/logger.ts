import { LogFormatter, Logger, LogItem } from '@aws-lambda-powertools/logger';
import type { LogAttributes, UnformattedAttributes } from '@aws-lambda-powertools/logger/types';

/**
 * Structured JSON logs, one logger per container. Nothing logged carries a user id or a secret:
 * callers pass outcomes, reasons and platform ids only. `persistentKeys` are written on every line
 * (the user-sync function's `environment`, which its metric filters read as a dimension).
 */
export function createLogger(
  serviceName: string,
  options: { persistentKeys?: Record<string, string>; compact?: boolean } = {},
): Logger {
  return new Logger({
    serviceName,
    persistentKeys: options.persistentKeys ?? {},
    ...(options.compact ? { logFormatter: new CompactLogFormatter() } : {}),
  });
}

/**
 * Lines for a function whose log is paid per request (user sync: one line per browser request).
 * Left out is what the log group and stream already say: the function's name, ARN and memory, the
 * service and the sampling rate (about 270 bytes of Powertools' default line). Kept: level,
 * message, timestamp, the request id (to find a request's lines), `cold_start` on a container's
 * first line, the X-Ray trace id when there is one, then the caller's attributes.
 */
export class CompactLogFormatter extends LogFormatter {
  override formatAttributes(attributes: UnformattedAttributes, additional: LogAttributes): LogItem {
    const context = attributes.lambdaContext;
    return new LogItem({
      attributes: {
        level: attributes.logLevel,
        message: attributes.message,
        timestamp: this.formatTimestamp(attributes.timestamp),
        function_request_id: context?.awsRequestId,
        cold_start: context?.coldStart === true ? true : undefined,
        xray_trace_id: attributes.xRayTraceId,
      },
    }).addAttributes(additional);
  }
}

/**
 * What a failed HTTP exchange (no answer at all) means for a retry: whether trying again can
 * help, and whether the partner may have received, and acted on, the request.
 */

export interface TransportFailure {
  /** The first error code found on the error or its causes: `ECONNRESET`, `UND_ERR_SOCKET`, ... */
  readonly code: string;
  readonly retryable: boolean;
  /** True unless the request certainly never reached the partner. */
  readonly outcomeUnknown: boolean;
  readonly aborted: boolean;
  readonly message: string;
}

/** Failed before a connection existed: the partner never saw the request. */
const NOT_SENT = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'ENETDOWN',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** Failed on a connection that may have carried the request: worth retrying, outcome unknown. */
const MAYBE_SENT = new Set([
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
]);

const ABORTED = new Set(['UND_ERR_ABORTED', 'ABORT_ERR']);

/** Refused before sending (a bad header or path, an untrusted certificate): retrying cannot help. */
function rejectedLocally(code: string): boolean {
  return (
    code === 'UND_ERR_INVALID_ARG' ||
    code === 'UND_ERR_NOT_SUPPORTED' ||
    code === 'ERR_INVALID_URL' ||
    code.startsWith('ERR_TLS_') ||
    code.startsWith('CERT_') ||
    /^(UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED|SELF_SIGNED_CERT)/.test(code)
  );
}

function codes(error: unknown): string[] {
  const found: string[] = [];
  const queue: unknown[] = [error];
  for (let i = 0; i < queue.length && i < 16; i++) {
    const item = queue[i];
    if (typeof item !== 'object' || item === null) continue;
    const { code, cause, errors, name } = item as {
      code?: unknown;
      cause?: unknown;
      errors?: unknown;
      name?: unknown;
    };
    if (typeof code === 'string') found.push(code);
    if (name === 'AbortError' || name === 'TimeoutError')
      found.push(name === 'AbortError' ? 'ABORT_ERR' : name);
    if (cause !== undefined) queue.push(cause);
    if (Array.isArray(errors)) queue.push(...errors);
  }
  return found;
}

export function classifyTransportError(error: unknown): TransportFailure {
  const all = codes(error);
  const message = error instanceof Error ? error.message : String(error);
  const aborted = all.find((code) => ABORTED.has(code));
  if (aborted) return { code: aborted, retryable: false, outcomeUnknown: true, aborted: true, message };
  const notSent = all.find((code) => NOT_SENT.has(code));
  if (notSent) return { code: notSent, retryable: true, outcomeUnknown: false, aborted: false, message };
  const local = all.find(rejectedLocally);
  if (local) return { code: local, retryable: false, outcomeUnknown: false, aborted: false, message };
  const maybeSent = all.find((code) => MAYBE_SENT.has(code));
  if (maybeSent) return { code: maybeSent, retryable: true, outcomeUnknown: true, aborted: false, message };
  return { code: all[0] ?? 'UNKNOWN', retryable: false, outcomeUnknown: true, aborted: false, message };
}

/**
 * What a failed HTTP exchange (no answer at all) means for a retry: whether trying again can
 * help, and whether the partner may have received, and acted on, the request. The codes are
 * Node's (`node:http`, `node:net`, `node:tls`, OpenSSL) and the transport's own `DMP_*` ones
 * (see send.ts).
 */

export interface TransportFailure {
  /** The first error code found on the error or its causes: `ECONNRESET`, `DMP_HEADERS_TIMEOUT`, ... */
  readonly code: string;
  readonly retryable: boolean;
  /** True unless the request certainly never reached the partner. */
  readonly outcomeUnknown: boolean;
  readonly aborted: boolean;
  readonly message: string;
}

/** Set by the transport on any failure before the connection was up (send.ts NotConnectedError). */
const NOT_CONNECTED = 'DMP_NOT_CONNECTED';

/** Failed before a connection existed: the partner never saw the request. */
const NOT_SENT = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'ENETDOWN',
  'DMP_CONNECT_TIMEOUT',
]);

/**
 * Failed on a connection that may have carried the request: worth retrying, outcome unknown.
 * A keep-alive connection the server closed just as it was reused is one of these ("socket hang
 * up" is ECONNRESET): the request may or may not have arrived.
 */
const MAYBE_SENT = new Set([
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'DMP_HEADERS_TIMEOUT',
  'DMP_BODY_TIMEOUT',
]);

const ABORTED = new Set(['ABORT_ERR']);

/** Thrown by `http.request` for input it will not put on the wire. */
const INVALID_INPUT = new Set([
  'ERR_INVALID_URL',
  'ERR_INVALID_PROTOCOL',
  'ERR_INVALID_CHAR',
  'ERR_INVALID_HTTP_TOKEN',
  'ERR_HTTP_INVALID_HEADER_VALUE',
  'ERR_UNESCAPED_CHARACTERS',
  'ERR_INVALID_ARG_TYPE',
  'ERR_INVALID_ARG_VALUE',
]);

/** A certificate the client refused: only ever found during the TLS handshake, before sending. */
function certificateRefused(code: string): boolean {
  return (
    code.startsWith('ERR_TLS_CERT') ||
    code.startsWith('CERT_') ||
    /^(UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED|SELF_SIGNED_CERT|HOSTNAME_MISMATCH)/.test(code)
  );
}

/**
 * Refused before sending (a bad header or path, an untrusted certificate, a failed handshake):
 * retrying cannot help. Any other TLS error counts only before the connection was up: on a
 * connection that carried the request (a reused one, an alert after the handshake, a corrupt
 * record mid-answer) the partner may have acted on it.
 */
function rejectedLocally(code: string, neverConnected: boolean): boolean {
  return (
    INVALID_INPUT.has(code) ||
    certificateRefused(code) ||
    (neverConnected && (code.startsWith('ERR_TLS_') || code.startsWith('ERR_SSL_')))
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
    else if (name === 'AbortError' || name === 'TimeoutError')
      found.push(name === 'AbortError' ? 'ABORT_ERR' : name);
    if (cause !== undefined) queue.push(cause);
    if (Array.isArray(errors)) queue.push(...errors);
  }
  return found;
}

export function classifyTransportError(error: unknown): TransportFailure {
  const found = codes(error);
  const neverConnected = found.includes(NOT_CONNECTED);
  /** The codes that say what happened; the marker only says when. */
  const all = found.filter((code) => code !== NOT_CONNECTED);
  const message = error instanceof Error ? error.message : String(error);
  const result = (code: string, retryable: boolean, outcomeUnknown: boolean, aborted = false) => ({
    code,
    retryable,
    outcomeUnknown,
    aborted,
    message,
  });
  const aborted = all.find((code) => ABORTED.has(code));
  if (aborted) return result(aborted, false, true, true);
  const local = all.find((code) => rejectedLocally(code, neverConnected));
  if (local) return result(local, false, false);
  const notSent = all.find((code) => NOT_SENT.has(code));
  if (notSent) return result(notSent, true, false);
  // A reset during the TLS handshake, say: retryable like any failed connect, and never sent.
  if (neverConnected) return result(all[0] ?? NOT_CONNECTED, true, false);
  const maybeSent = all.find((code) => MAYBE_SENT.has(code));
  if (maybeSent) return result(maybeSent, true, true);
  return result(all[0] ?? 'UNKNOWN', false, true);
}

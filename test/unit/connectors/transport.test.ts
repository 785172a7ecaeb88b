import { describe, expect, it } from 'vitest';
import { classifyTransportError } from '../../../src/connectors/http/errors.ts';
import {
  HttpAbortError,
  HttpTimeoutError,
  NotConnectedError,
  ResponseTooLargeError,
} from '../../../src/connectors/http/send.ts';

/**
 * The table of what each failure means for a retry. send.test.ts shows, against real servers,
 * which of these a given failure produces.
 */

function coded(code: string, message = code): Error {
  return Object.assign(new Error(message), { code });
}

describe('classifyTransportError', () => {
  it.each([
    // error, code, retryable, outcomeUnknown
    ['reset (socket hang up)', coded('ECONNRESET', 'socket hang up'), 'ECONNRESET', true, true],
    ['broken pipe', coded('EPIPE'), 'EPIPE', true, true],
    ['system timeout', coded('ETIMEDOUT'), 'ETIMEDOUT', true, true],
    ['headers timeout', new HttpTimeoutError('DMP_HEADERS_TIMEOUT', 5000), 'DMP_HEADERS_TIMEOUT', true, true],
    ['body timeout', new HttpTimeoutError('DMP_BODY_TIMEOUT', 5000), 'DMP_BODY_TIMEOUT', true, true],
    [
      'connect timeout',
      new HttpTimeoutError('DMP_CONNECT_TIMEOUT', 5000),
      'DMP_CONNECT_TIMEOUT',
      true,
      false,
    ],
    ['refused', new NotConnectedError(coded('ECONNREFUSED')), 'ECONNREFUSED', true, false],
    ['refused, bare', coded('ECONNREFUSED'), 'ECONNREFUSED', true, false],
    ['dns', new NotConnectedError(coded('ENOTFOUND')), 'ENOTFOUND', true, false],
    ['dns again', coded('EAI_AGAIN'), 'EAI_AGAIN', true, false],
    [
      'reset before the connection was up',
      new NotConnectedError(coded('ECONNRESET')),
      'ECONNRESET',
      true,
      false,
    ],
    ['system timeout while connecting', new NotConnectedError(coded('ETIMEDOUT')), 'ETIMEDOUT', true, false],
    ['bad header value', coded('ERR_INVALID_CHAR'), 'ERR_INVALID_CHAR', false, false],
    ['bad header name', coded('ERR_INVALID_HTTP_TOKEN'), 'ERR_INVALID_HTTP_TOKEN', false, false],
    [
      'header value missing',
      coded('ERR_HTTP_INVALID_HEADER_VALUE'),
      'ERR_HTTP_INVALID_HEADER_VALUE',
      false,
      false,
    ],
    ['bad path', coded('ERR_UNESCAPED_CHARACTERS'), 'ERR_UNESCAPED_CHARACTERS', false, false],
    ['bad URL', coded('ERR_INVALID_URL'), 'ERR_INVALID_URL', false, false],
    ['tls', new NotConnectedError(coded('CERT_HAS_EXPIRED')), 'CERT_HAS_EXPIRED', false, false],
    ['self-signed', coded('DEPTH_ZERO_SELF_SIGNED_CERT'), 'DEPTH_ZERO_SELF_SIGNED_CERT', false, false],
    ['wrong host', coded('ERR_TLS_CERT_ALTNAME_INVALID'), 'ERR_TLS_CERT_ALTNAME_INVALID', false, false],
    [
      'not TLS',
      new NotConnectedError(coded('ERR_SSL_WRONG_VERSION_NUMBER')),
      'ERR_SSL_WRONG_VERSION_NUMBER',
      false,
      false,
    ],
    [
      'TLS failure on a connection that carried the request',
      coded('ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC'),
      'ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC',
      false,
      true,
    ],
    [
      'TLS alert after the handshake',
      coded('ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED'),
      'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED',
      false,
      true,
    ],
    ['too large', new ResponseTooLargeError(200, 10), 'DMP_RESPONSE_TOO_LARGE', false, true],
    ['unparsable answer', coded('HPE_INVALID_CONSTANT'), 'HPE_INVALID_CONSTANT', false, true],
    ['unknown', new Error('something odd'), 'UNKNOWN', false, true],
    [
      'unknown, before the connection was up',
      new NotConnectedError(new Error('odd')),
      'DMP_NOT_CONNECTED',
      true,
      false,
    ],
  ] as const)('%s -> %s', (_, error, code, retryable, outcomeUnknown) => {
    const failure = classifyTransportError(error);
    expect(failure).toMatchObject({ code, retryable, outcomeUnknown, aborted: false });
  });

  it('finds codes in causes and in AggregateError members (happy eyeballs)', () => {
    const aggregate = new AggregateError([coded('ECONNREFUSED'), coded('ECONNREFUSED')], 'x');
    expect(classifyTransportError(aggregate)).toMatchObject({ code: 'ECONNREFUSED', retryable: true });
    const wrapped = new Error('failed', { cause: coded('ECONNRESET') });
    expect(classifyTransportError(wrapped)).toMatchObject({ code: 'ECONNRESET', outcomeUnknown: true });
  });

  it('reports an abort as such, never retryable', () => {
    expect(classifyTransportError(new HttpAbortError(undefined))).toMatchObject({
      code: 'ABORT_ERR',
      aborted: true,
      retryable: false,
    });
    const abort = new DOMException('This operation was aborted', 'AbortError');
    expect(classifyTransportError(abort)).toMatchObject({ aborted: true, retryable: false });
  });
});

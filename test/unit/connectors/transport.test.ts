import { errors } from 'undici';
import { describe, expect, it } from 'vitest';
import { classifyTransportError } from '../../../src/connectors/http/errors.ts';
import { ResponseTooLargeError } from '../../../src/connectors/http/send.ts';

function coded(code: string, message = code): Error {
  return Object.assign(new Error(message), { code });
}

describe('classifyTransportError', () => {
  it.each([
    // error, code, retryable, outcomeUnknown
    ['reset', coded('ECONNRESET'), 'ECONNRESET', true, true],
    ['broken pipe', coded('EPIPE'), 'EPIPE', true, true],
    ['undici socket', new errors.SocketError('other side closed'), 'UND_ERR_SOCKET', true, true],
    ['headers timeout', new errors.HeadersTimeoutError(), 'UND_ERR_HEADERS_TIMEOUT', true, true],
    ['body timeout', new errors.BodyTimeoutError(), 'UND_ERR_BODY_TIMEOUT', true, true],
    ['connect timeout', new errors.ConnectTimeoutError(), 'UND_ERR_CONNECT_TIMEOUT', true, false],
    ['refused', coded('ECONNREFUSED'), 'ECONNREFUSED', true, false],
    ['dns', coded('ENOTFOUND'), 'ENOTFOUND', true, false],
    ['dns again', coded('EAI_AGAIN'), 'EAI_AGAIN', true, false],
    [
      'bad header',
      new errors.InvalidArgumentError('invalid x-api-key header'),
      'UND_ERR_INVALID_ARG',
      false,
      false,
    ],
    ['tls', coded('CERT_HAS_EXPIRED'), 'CERT_HAS_EXPIRED', false, false],
    ['self-signed', coded('DEPTH_ZERO_SELF_SIGNED_CERT'), 'DEPTH_ZERO_SELF_SIGNED_CERT', false, false],
    ['too large', new ResponseTooLargeError(200, 10), 'DMP_RESPONSE_TOO_LARGE', false, true],
    ['unknown', new Error('something odd'), 'UNKNOWN', false, true],
  ] as const)('%s -> %s', (_, error, code, retryable, outcomeUnknown) => {
    const failure = classifyTransportError(error);
    expect(failure).toMatchObject({ code, retryable, outcomeUnknown, aborted: false });
  });

  it('finds codes in causes and in AggregateError members (happy eyeballs)', () => {
    const aggregate = Object.assign(
      new AggregateError([coded('ECONNREFUSED'), coded('ECONNREFUSED')], 'x'),
      {},
    );
    expect(classifyTransportError(aggregate)).toMatchObject({ code: 'ECONNREFUSED', retryable: true });
    const wrapped = new Error('fetch failed', { cause: coded('ECONNRESET') });
    expect(classifyTransportError(wrapped)).toMatchObject({ code: 'ECONNRESET', outcomeUnknown: true });
  });

  it('reports an abort as such, never retryable', () => {
    expect(classifyTransportError(new errors.RequestAbortedError())).toMatchObject({
      aborted: true,
      retryable: false,
    });
    const abort = new DOMException('This operation was aborted', 'AbortError');
    expect(classifyTransportError(abort)).toMatchObject({ aborted: true, retryable: false });
  });
});

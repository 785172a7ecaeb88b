export {
  BODY_SNIPPET_CHARS,
  type PartnerAnswer,
  PartnerCallError,
  type PartnerCallErrorKind,
  PartnerClient,
  type PartnerClientOptions,
  type PartnerRequest,
} from './client.ts';
export { classifyTransportError, type TransportFailure } from './errors.ts';
export { REDACTED, redact, secretForms } from './redact.ts';
export {
  createHttpSend,
  DEFAULT_MAX_RESPONSE_BYTES,
  type HttpRequest,
  type HttpResponse,
  type HttpSend,
  type HttpSendOptions,
  ResponseTooLargeError,
  sharedAgent,
} from './send.ts';

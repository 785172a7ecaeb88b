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
  type AgentSettings,
  type Agents,
  createAgents,
  createHttpSend,
  DEFAULT_MAX_RESPONSE_BYTES,
  HttpAbortError,
  type HttpRequest,
  type HttpResponse,
  type HttpSend,
  type HttpSendOptions,
  HttpTimeoutError,
  NotConnectedError,
  ResponseTooLargeError,
  sharedAgents,
} from './send.ts';

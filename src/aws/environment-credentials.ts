/**
 * Stands in for `@aws-sdk/credential-provider-node` in every function's bundle (an esbuild alias,
 * BUNDLE_ALIASES in src/infra/bundling.ts). Lambda hands every function its role's credentials in
 * `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`, which the default chain's
 * first link (`fromEnv`) reads; its other links (SSO, shared files, a credential process, web
 * identity, container and instance metadata) and the STS/SSO clients they load are never reached
 * there, yet they are a third of a bundle of the DynamoDB and Secrets Manager clients.
 *
 * Only deployed bundles use it: the local stack and the tests import the SDK unchanged.
 */
export { fromEnv as defaultProvider } from '@aws-sdk/credential-provider-env';

/**
 * Secrets live in AWS Secrets Manager under predictable names, one per platform and one for the
 * key that signs the tokens `/sync` mints. The CDK stack creates them with generated values; the
 * local stack serves the same names from `config/local-secrets.json`.
 */
export function platformSecretName(environment: string, platformId: number): string {
  return `dmp-activation/${environment}/platforms/${platformId}`;
}

/**
 * The partner API's credentials live in a secret of their own, so that the public-facing
 * user-sync function, which reads the platform secret, can never read them.
 */
export function platformApiSecretName(environment: string, platformId: number): string {
  return `dmp-activation/${environment}/platforms/${platformId}/api`;
}

export function syncTokenKeySecretName(environment: string): string {
  return `dmp-activation/${environment}/sync-token-key`;
}

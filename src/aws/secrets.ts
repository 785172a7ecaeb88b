import { SecretsProvider } from '@aws-lambda-powertools/parameters/secrets';
// zod's core `safeParse` takes any schema (full or mini build) and is what both builds run: a
// function whose schemas are mini ones carries no full zod for reading a secret.
import * as z from 'zod/v4/core';
import { formatIssues } from '../config/issues.ts';
import { SDK_CLIENT_SETTINGS } from './clients.ts';

/**
 * Reads JSON secrets from AWS Secrets Manager through Powertools' SecretsProvider, which caches
 * each value in the container for `maxAgeSeconds`: a rotated secret is picked up within that
 * bound without a Secrets Manager call per request. Values are validated; a secret's content
 * never appears in an error message.
 */
export class SecretError extends Error {
  override readonly name = 'SecretError';
}

export class JsonSecrets {
  private readonly provider: SecretsProvider;
  /**
   * The provider hands back its cached object until `maxAgeSeconds` pass: each value is validated
   * once, not on every request that reads it (a new value is a new object, validated again).
   */
  private readonly validated = new WeakMap<object, { schema: z.$ZodType; data: unknown }>();

  constructor(private readonly maxAgeSeconds = 300) {
    this.provider = new SecretsProvider({ clientConfig: { ...SDK_CLIENT_SETTINGS } });
  }

  /** The parsed secret, or undefined when no secret of that name exists. */
  async read<S extends z.$ZodType>(name: string, schema: S): Promise<z.output<S> | undefined> {
    let raw: unknown;
    try {
      raw = await this.provider.get(name, { maxAge: this.maxAgeSeconds, transform: 'json' });
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw new SecretError(`secret ${name} could not be read: ${errorName(error)}`);
    }
    if (raw === undefined) return undefined;
    const cacheable = typeof raw === 'object' && raw !== null ? raw : undefined;
    const known = cacheable ? this.validated.get(cacheable) : undefined;
    if (known?.schema === schema) return known.data as z.output<S>;
    const parsed = z.safeParse(schema, raw);
    if (!parsed.success)
      throw new SecretError(`secret ${name} is malformed: ${formatIssues(parsed.error).join('; ')}`);
    if (cacheable) this.validated.set(cacheable, { schema, data: parsed.data });
    return parsed.data;
  }
}

function isNotFound(error: unknown): boolean {
  for (let cause: unknown = error; cause instanceof Error; cause = cause.cause) {
    if (cause.name === 'ResourceNotFoundException') return true;
  }
  return false;
}

function errorName(error: unknown): string {
  const names: string[] = [];
  for (let cause: unknown = error; cause instanceof Error && names.length < 3; cause = cause.cause)
    names.push(cause.name);
  return names.join(' <- ') || 'unknown error';
}

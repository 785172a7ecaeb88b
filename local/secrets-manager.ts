import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { ConfigError, formatIssues } from '../src/config/load.ts';
import {
  PlatformSecretSchema,
  PrivacyKeySchema,
  platformSecretName,
  privacyKeySecretName,
  SyncTokenKeySchema,
  syncTokenKeySecretName,
} from '../src/config/secrets.ts';
import { close, listen, originOf, readBody } from './http-util.ts';
import { LOCAL_ACCOUNT_ID } from './lambda.ts';

/**
 * A Secrets Manager stand-in: the one action the handlers use, `GetSecretValue`, over the AWS JSON
 * 1.1 protocol, answering from `config/local-secrets.json` (secret name -> JSON value). Values are
 * read and validated once at start.
 */

export interface LocalSecret {
  readonly name: string;
  readonly arn: string;
  readonly secretString: string;
  readonly versionId: string;
  readonly createdDate: number;
}

export interface SecretsManagerStandIn {
  readonly url: string;
  readonly port: number;
  readonly server: Server;
  readonly secrets: ReadonlyMap<string, LocalSecret>;
  stop(): Promise<void>;
}

/** Reads the local secrets file and checks the secrets this service knows against their schemas. */
export function loadLocalSecrets(path: string, environmentName: string): Record<string, unknown> {
  let document: unknown;
  try {
    document = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new ConfigError(path, [(error as Error).message]);
  }
  if (typeof document !== 'object' || document === null || Array.isArray(document)) {
    throw new ConfigError(path, ['must be an object of secret name -> value']);
  }
  const problems: string[] = [];
  const platformPrefix = platformSecretName(environmentName, 0).replace(/0$/, '');
  for (const [name, value] of Object.entries(document)) {
    const schema =
      name === syncTokenKeySecretName(environmentName)
        ? SyncTokenKeySchema
        : name === privacyKeySecretName(environmentName)
          ? PrivacyKeySchema
          : name.startsWith(platformPrefix)
            ? PlatformSecretSchema
            : undefined;
    if (!schema) continue;
    const result = schema.safeParse(value);
    if (!result.success) problems.push(...formatIssues(result.error).map((issue) => `${name}: ${issue}`));
  }
  if (problems.length > 0) throw new ConfigError(path, problems);
  return document as Record<string, unknown>;
}

function arnSuffix(name: string): string {
  // Secrets Manager appends 6 random characters; a hash keeps local ARNs stable across restarts.
  return createHash('sha256').update(name).digest('base64url').replaceAll(/[-_]/g, 'x').slice(0, 6);
}

function versionIdOf(name: string, secretString: string): string {
  const hex = createHash('sha256').update(`${name}\n${secretString}`).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

export async function startSecretsManager(options: {
  readonly values: Record<string, unknown>;
  readonly region: string;
  readonly port?: number;
}): Promise<SecretsManagerStandIn> {
  const createdDate = Math.floor(Date.now() / 1000);
  const secrets = new Map<string, LocalSecret>();
  for (const [name, value] of Object.entries(options.values)) {
    const secretString = typeof value === 'string' ? value : JSON.stringify(value);
    secrets.set(name, {
      name,
      arn: `arn:aws:secretsmanager:${options.region}:${LOCAL_ACCOUNT_ID}:secret:${name}-${arnSuffix(name)}`,
      secretString,
      versionId: versionIdOf(name, secretString),
      createdDate,
    });
  }
  const byArn = new Map([...secrets.values()].map((secret) => [secret.arn, secret]));

  function find(secretId: string): LocalSecret | undefined {
    if (secrets.has(secretId)) return secrets.get(secretId);
    if (byArn.has(secretId)) return byArn.get(secretId);
    // A partial ARN (without the random suffix) names the secret too.
    const prefix = `arn:aws:secretsmanager:${options.region}:${LOCAL_ACCOUNT_ID}:secret:`;
    return secretId.startsWith(prefix) ? secrets.get(secretId.slice(prefix.length)) : undefined;
  }

  function getSecretValue(input: Record<string, unknown>): [number, Record<string, unknown>] {
    const { SecretId, VersionId, VersionStage } = input;
    if (typeof SecretId !== 'string' || SecretId.length === 0) {
      return error(400, 'InvalidParameterException', 'SecretId is required.');
    }
    const secret = find(SecretId);
    if (!secret)
      return error(400, 'ResourceNotFoundException', "Secrets Manager can't find the specified secret.");
    if (VersionId !== undefined && VersionId !== secret.versionId) {
      return error(
        400,
        'ResourceNotFoundException',
        "Secrets Manager can't find the specified secret value for VersionId",
      );
    }
    if (VersionStage !== undefined && VersionStage !== 'AWSCURRENT') {
      return error(
        400,
        'ResourceNotFoundException',
        `Secrets Manager can't find the specified secret value for staging label: ${String(VersionStage)}`,
      );
    }
    return [
      200,
      {
        ARN: secret.arn,
        Name: secret.name,
        SecretString: secret.secretString,
        VersionId: secret.versionId,
        VersionStages: ['AWSCURRENT'],
        CreatedDate: secret.createdDate,
      },
    ];
  }

  function error(status: number, type: string, message: string): [number, Record<string, unknown>] {
    return [status, { __type: type, Message: message }];
  }

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const requestId = randomUUID();
    const respond = ([status, body]: [number, Record<string, unknown>]) => {
      const text = JSON.stringify(body);
      response.writeHead(status, {
        'content-type': 'application/x-amz-json-1.1',
        'content-length': Buffer.byteLength(text),
        'x-amzn-requestid': requestId,
        ...(typeof body['__type'] === 'string' ? { 'x-amzn-errortype': body['__type'] } : {}),
      });
      response.end(text);
    };
    const target = request.headers['x-amz-target'];
    const raw = await readBody(request, 1024 * 1024);
    if (request.method !== 'POST' || typeof target !== 'string') {
      respond(error(400, 'UnknownOperationException', 'Expected a POST with an X-Amz-Target header.'));
      return;
    }
    let input: unknown;
    try {
      input = raw.length === 0 ? {} : JSON.parse(raw.toString('utf8'));
    } catch {
      respond(error(400, 'SerializationException', 'The request body is not valid JSON.'));
      return;
    }
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      respond(error(400, 'SerializationException', 'The request body must be a JSON object.'));
      return;
    }
    if (target === 'secretsmanager.GetSecretValue') {
      respond(getSecretValue(input as Record<string, unknown>));
      return;
    }
    respond(error(400, 'UnknownOperationException', `The local stand-in does not implement ${target}.`));
  }

  const server = createServer((request, response) => {
    handle(request, response).catch(() => {
      if (!response.headersSent) {
        response.writeHead(500, { 'content-type': 'application/x-amz-json-1.1' });
        response.end(JSON.stringify({ __type: 'InternalServiceError', Message: 'local stand-in failed' }));
      } else {
        response.destroy();
      }
    });
  });
  const port = await listen(server, options.port ?? 0);
  return { url: originOf(port), port, server, secrets, stop: () => close(server) };
}

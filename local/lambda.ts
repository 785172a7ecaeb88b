import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Context } from 'aws-lambda';
import type { FunctionDefinition, FunctionKey } from '../src/infra/resources.ts';

/**
 * A tiny stand-in for the Lambda runtime: one "execution environment" per function, whose module is
 * imported once (cold start) and whose exported `handler` is then invoked per event with a context
 * object shaped like Lambda's. Events and results cross a JSON boundary, as they do in AWS, so a
 * handler can neither mutate the caller's objects nor return something Lambda could not serialize.
 *
 * The Node.js 24 runtime only supports async (promise-returning) handlers, and so does this one.
 */

export const LOCAL_ACCOUNT_ID = '000000000000';

export type LambdaHandler = (event: unknown, context: Context) => unknown;

/** Supplies a function's handler; the default imports `FUNCTIONS[key].entry`. Tests inject their own. */
export type FunctionLoader = (key: FunctionKey, definition: FunctionDefinition) => Promise<LambdaHandler>;

/** Imports the entry module relative to the repository root and returns its exported `handler`. */
export function entryLoader(repoRoot: string): FunctionLoader {
  return async (key, definition) => {
    const file = resolve(repoRoot, definition.entry);
    let module: Record<string, unknown>;
    try {
      module = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
    } catch (error) {
      throw new Error(`function ${key}: cannot load ${definition.entry}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    const handler = module['handler'];
    if (typeof handler !== 'function') {
      throw new Error(`function ${key}: ${definition.entry} does not export a function named "handler"`);
    }
    return handler as LambdaHandler;
  };
}

/** Uses one module's `handler` for every function (tests: a fixture instead of the real entries). */
export function moduleLoader(file: string): FunctionLoader {
  return async (key, definition) => entryLoader('/')(key, { ...definition, entry: resolve(file) });
}

export class FunctionTimeoutError extends Error {
  override readonly name = 'FunctionTimeoutError';
}

export interface InvocationOptions {
  /** Request id for the invocation (API Gateway's and Lambda's differ in AWS; locally one is fine). */
  readonly awsRequestId?: string;
}

export class LocalFunction {
  readonly functionName: string;
  readonly invokedFunctionArn: string;

  constructor(
    readonly key: FunctionKey,
    readonly definition: FunctionDefinition,
    private readonly handler: LambdaHandler,
    options: { readonly functionName: string; readonly region: string },
  ) {
    this.functionName = options.functionName;
    this.invokedFunctionArn = `arn:aws:lambda:${options.region}:${LOCAL_ACCOUNT_ID}:function:${options.functionName}`;
  }

  /**
   * Invokes the handler with a JSON copy of the event; resolves with a JSON copy of its result.
   * Rejects with the handler's error, or with FunctionTimeoutError after the configured timeout
   * (the handler's promise cannot be cancelled and keeps running, unlike in Lambda).
   */
  async invoke(event: unknown, options: InvocationOptions = {}): Promise<unknown> {
    const timeoutMs = this.definition.timeoutSeconds * 1000;
    const deadline = Date.now() + timeoutMs;
    const context = this.createContext(options.awsRequestId ?? randomUUID(), deadline);
    const payload = JSON.parse(JSON.stringify(event)) as unknown;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new FunctionTimeoutError(
              `${context.awsRequestId} Task timed out after ${this.definition.timeoutSeconds.toFixed(2)} seconds`,
            ),
          ),
        timeoutMs,
      );
    });
    try {
      const result = await Promise.race([
        Promise.resolve().then(() => this.handler(payload, context)),
        timeout,
      ]);
      return result === undefined ? null : (JSON.parse(JSON.stringify(result)) as unknown);
    } finally {
      clearTimeout(timer);
    }
  }

  private createContext(awsRequestId: string, deadline: number): Context {
    const functionName = this.functionName;
    const unsupported = (name: string) => () => {
      throw new Error(
        `context.${name}() is not supported by the Node.js 24 runtime; return or throw instead`,
      );
    };
    return {
      callbackWaitsForEmptyEventLoop: true,
      functionName,
      functionVersion: '$LATEST',
      invokedFunctionArn: this.invokedFunctionArn,
      memoryLimitInMB: String(this.definition.memorySizeMb),
      awsRequestId,
      logGroupName: `/aws/lambda/${functionName}`,
      logStreamName: `${new Date().toISOString().slice(0, 10).replaceAll('-', '/')}/[$LATEST]local`,
      getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
      done: unsupported('done'),
      fail: unsupported('fail'),
      succeed: unsupported('succeed'),
    };
  }
}

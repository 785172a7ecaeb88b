import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import {
  ApiMapping,
  CorsHttpMethod,
  type DomainName,
  HttpApi,
  HttpMethod,
  type HttpRoute,
  HttpStage,
  LogGroupLogDestination,
  PayloadFormatVersion,
} from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpIamAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { EnvironmentConfig } from '../../src/config/schema.ts';
import type { FunctionKey, RouteDefinition } from '../../src/infra/resources.ts';
import { acknowledgeNag } from '../nag.ts';
import { logRetention } from './log-retention.ts';

export interface UserSyncApiProps {
  readonly config: EnvironmentConfig;
  /** The routes to serve (ROUTES from src/infra/resources.ts). */
  readonly routes: readonly RouteDefinition[];
  /** The function behind each function key the routes name. */
  readonly functions: Readonly<Partial<Record<FunctionKey, lambda.IFunction>>>;
  /** The custom domain the `$default` stage is mapped to (lib/constructs/sync-domain.ts). */
  readonly domainName?: DomainName | undefined;
}

/**
 * One access-log line per request, as JSON, holding nothing that identifies a browser:
 * - no `$context.path` or query string: the sync URLs carry user ids (`userid`, `dmp_uid`) and
 *   tokens (`plsec`);
 * - no client IP: API Gateway's access-log format can only copy `$context.identity.sourceIp`
 *   whole, it cannot truncate it, and a full IP address is personal data;
 * - no user agent or cookie header.
 * The route, status, latency and request id are enough to see errors and throttling per route
 * (throttled requests show as status 429).
 */
export const ACCESS_LOG_FIELDS = {
  requestId: '$context.requestId',
  requestTime: '$context.requestTime',
  httpMethod: '$context.httpMethod',
  routeKey: '$context.routeKey',
  status: '$context.status',
  protocol: '$context.protocol',
  responseLength: '$context.responseLength',
  responseLatency: '$context.responseLatency',
  domainName: '$context.domainName',
  integrationErrorMessage: '$context.integrationErrorMessage',
} as const;

const PUBLIC_ROUTE_REASON =
  'Public browser endpoint by contract: /sync and /uid are hit by a tracking pixel and by partner ' +
  'redirects, /optout by the user; a browser redirect cannot carry credentials. Requests are ' +
  'authenticated where it matters by the handler itself (partner token or HMAC signature on /uid, ' +
  "the DMP's own cookie), and the stage is throttled.";

/**
 * The HTTP API (payload format 2.0) in front of the user-sync handlers: one route per entry of
 * ROUTES, a `$default` stage with JSON access logs and default route throttling from config.
 */
export class UserSyncApi extends Construct {
  readonly api: HttpApi;
  readonly stage: HttpStage;
  readonly accessLogGroup: logs.LogGroup;
  readonly routes: HttpRoute[] = [];

  constructor(scope: Construct, id: string, props: UserSyncApiProps) {
    super(scope, id);
    const { config } = props;
    const origins = config.api.corsAllowOrigins;

    this.api = new HttpApi(this, 'HttpApi', {
      apiName: `dmp-activation-${config.name}`,
      description: `DMP activation user sync (${config.name})`,
      createDefaultStage: false,
      ...(origins.length > 0
        ? {
            corsPreflight: {
              allowOrigins: origins,
              allowMethods: corsMethods(props.routes),
              allowHeaders: ['content-type'],
              // Credentialed requests (the DMP cookie) cannot use a wildcard origin.
              allowCredentials: !origins.includes('*'),
              maxAge: Duration.days(1),
            },
          }
        : {}),
    });

    this.accessLogGroup = new logs.LogGroup(this, 'AccessLogs', {
      retention: logRetention(config),
      removalPolicy: config.retainData ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY,
    });

    this.stage = new HttpStage(this, 'DefaultStage', {
      httpApi: this.api,
      stageName: '$default',
      autoDeploy: true,
      throttle: {
        rateLimit: config.api.throttlingRateLimit,
        burstLimit: config.api.throttlingBurstLimit,
      },
      accessLogSettings: {
        destination: new LogGroupLogDestination(this.accessLogGroup),
        format: AccessLogFormat.custom(JSON.stringify(ACCESS_LOG_FIELDS)),
      },
    });

    if (props.domainName) {
      // Mapped here rather than through the stage's `domainMapping`, whose logical id embeds an
      // unresolved token name: this one reads as what it is in `cdk diff`.
      new ApiMapping(this, 'DomainMapping', {
        api: this.api,
        domainName: props.domainName,
        stage: this.stage,
      });
    }

    const integrations = new Map<FunctionKey, HttpLambdaIntegration>();
    for (const route of props.routes) {
      const handler = props.functions[route.function];
      if (!handler) throw new Error(`route ${route.method} ${route.path}: no function ${route.function}`);
      let integration = integrations.get(route.function);
      if (!integration) {
        integration = new HttpLambdaIntegration(`${route.function}Integration`, handler, {
          payloadFormatVersion: PayloadFormatVersion.VERSION_2_0,
        });
        integrations.set(route.function, integration);
      }
      for (const created of this.api.addRoutes({
        path: route.path,
        methods: [HttpMethod[route.method]],
        integration,
        ...(route.auth === 'iam' ? { authorizer: new HttpIamAuthorizer() } : {}),
      })) {
        if (route.auth !== 'iam') acknowledgeNag(created, 'AwsSolutions-APIG4', PUBLIC_ROUTE_REASON);
        this.routes.push(created);
      }
    }
  }

  /** The API's base URL, without a trailing slash (the `$default` stage has no path prefix). */
  get url(): string {
    return this.api.apiEndpoint;
  }
}

function corsMethods(routes: readonly RouteDefinition[]): CorsHttpMethod[] {
  const methods = new Set<CorsHttpMethod>(routes.map((route) => CorsHttpMethod[route.method]));
  methods.add(CorsHttpMethod.OPTIONS);
  return [...methods];
}

/**
 * Definitions of the AWS resources the handlers use, shared by the CDK stack (lib/) and the
 * embedded local stack (local/), so that the two cannot drift.
 */

export interface TableDefinition {
  /** Construct id in the CDK stack. */
  readonly id: string;
  /** Table name in the local stack. */
  readonly localName: string;
  readonly partitionKey: { readonly name: string; readonly type: 'S' | 'N' };
  readonly sortKey?: { readonly name: string; readonly type: 'S' | 'N' };
  readonly timeToLiveAttribute?: string;
  /** Environment variable through which the handlers receive the table name. */
  readonly envVar: string;
}

/**
 * One item per (DMP user, platform): pk `user#<dmpUserId>`, sk `platform#<id>`, and short-lived
 * replay guards for signed sync callbacks: pk `replay#<platformId>#<digest>`, sk `replay`.
 * Both expire through `expiresAt` (epoch seconds).
 */
export const MAPPING_TABLE: TableDefinition = {
  id: 'MappingTable',
  localName: 'dmp-local-mappings',
  partitionKey: { name: 'pk', type: 'S' },
  sortKey: { name: 'sk', type: 'S' },
  timeToLiveAttribute: 'expiresAt',
  envVar: 'MAPPING_TABLE_NAME',
};

export const TABLES = [MAPPING_TABLE] as const;

export interface RouteDefinition {
  readonly method: 'GET' | 'POST';
  readonly path: string;
  /** Key of the function (in FUNCTIONS) that serves the route. */
  readonly function: FunctionKey;
}

export type FunctionKey = 'userSync';

export interface FunctionDefinition {
  /** Construct id in the CDK stack. */
  readonly id: string;
  /** Entry file, relative to the repository root. */
  readonly entry: string;
  readonly memorySizeMb: number;
  readonly timeoutSeconds: number;
  readonly tables: readonly { readonly table: TableDefinition; readonly access: 'read' | 'readWrite' }[];
  /** Secrets the function reads (names produced by src/config/secrets.ts). */
  readonly secrets: 'platforms+syncTokenKey' | 'none';
}

export const FUNCTIONS: Record<FunctionKey, FunctionDefinition> = {
  userSync: {
    id: 'UserSyncFunction',
    entry: 'lambdas/user-sync/handler.ts',
    memorySizeMb: 512,
    timeoutSeconds: 5,
    tables: [{ table: MAPPING_TABLE, access: 'readWrite' }],
    secrets: 'platforms+syncTokenKey',
  },
};

export const ROUTES: readonly RouteDefinition[] = [
  { method: 'GET', path: '/sync', function: 'userSync' },
  { method: 'GET', path: '/uid', function: 'userSync' },
  { method: 'GET', path: '/optout', function: 'userSync' },
  { method: 'POST', path: '/optout', function: 'userSync' },
];

/** Environment variables every function gets, besides its tables'. */
export const COMMON_ENV = {
  environmentName: 'DMP_ENVIRONMENT',
  serviceName: 'POWERTOOLS_SERVICE_NAME',
  metricsNamespace: 'POWERTOOLS_METRICS_NAMESPACE',
} as const;

export const METRICS_NAMESPACE = 'DmpActivation';

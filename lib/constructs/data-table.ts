import { RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type { Construct } from 'constructs';
import type { EnvironmentConfig } from '../../src/config/schema.ts';
import type { TableDefinition } from '../../src/infra/resources.ts';

function attribute(key: { readonly name: string; readonly type: 'S' | 'N' }): dynamodb.Attribute {
  return {
    name: key.name,
    type: key.type === 'S' ? dynamodb.AttributeType.STRING : dynamodb.AttributeType.NUMBER,
  };
}

/**
 * A DynamoDB table built from its shared definition (src/infra/resources.ts), the same definition
 * the local stack creates its table from.
 *
 * - On-demand billing: sync traffic follows browser traffic (bursty, diurnal); nothing to size.
 * - Point-in-time recovery: the mappings are expensive to rebuild (every user must pass the pixel
 *   again for every partner).
 * - Encryption with the AWS-managed KMS key (`aws/dynamodb`) rather than a customer-managed key:
 *   the table holds pseudonymous ids only; the AWS-managed key still encrypts with KMS and every
 *   use of it is visible in CloudTrail, needs no key policy to maintain, no kms:* grant on the
 *   function role and costs nothing per month. A customer-managed key becomes worth it for
 *   cross-account access or crypto-shredding, which this service does not need.
 * - A stream when the definition asks for one (the local stack emulates it with the same records).
 * - retainData (prod): deletion protection and RETAIN, so neither a stack deletion nor a
 *   replacement can drop the mappings; otherwise (dev) the table goes with the stack.
 */
export function createDataTable(
  scope: Construct,
  definition: TableDefinition,
  config: EnvironmentConfig,
): dynamodb.TableV2 {
  return new dynamodb.TableV2(scope, definition.id, {
    partitionKey: attribute(definition.partitionKey),
    ...(definition.sortKey ? { sortKey: attribute(definition.sortKey) } : {}),
    ...(definition.timeToLiveAttribute ? { timeToLiveAttribute: definition.timeToLiveAttribute } : {}),
    ...(definition.stream ? { dynamoStream: dynamodb.StreamViewType[definition.stream] } : {}),
    globalSecondaryIndexes: (definition.globalIndexes ?? []).map((index) => ({
      indexName: index.name,
      partitionKey: attribute(index.partitionKey),
      ...(index.sortKey ? { sortKey: attribute(index.sortKey) } : {}),
      projectionType: dynamodb.ProjectionType.ALL,
    })),
    billing: dynamodb.Billing.onDemand(),
    pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
    encryption: dynamodb.TableEncryptionV2.awsManagedKey(),
    deletionProtection: config.retainData,
    removalPolicy: config.retainData ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY,
  });
}

import { type CfnResource, Validations } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';

/**
 * Acknowledges one cdk-nag finding on exactly one CloudFormation resource (cdk-nag 3 uses CDK's
 * native `Validations` API; an acknowledgement also covers the children of the construct it is put
 * on, so it goes on the L1 resource itself, never on a parent construct).
 */
export function acknowledgeNag(resource: IConstruct, id: string, reason: string): void {
  Validations.of(cfnResourceOf(resource)).acknowledge({ id, reason });
}

function cfnResourceOf(construct: IConstruct): CfnResource {
  const candidate = (construct.node.defaultChild ?? construct) as Partial<CfnResource>;
  if (typeof candidate.cfnResourceType !== 'string') {
    throw new Error(`${construct.node.path} is not a CloudFormation resource (nor wraps one)`);
  }
  return candidate as CfnResource;
}

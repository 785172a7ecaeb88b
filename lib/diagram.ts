/**
 * A Mermaid diagram of the resources of a synthesized stack template: what docs/architecture.md
 * shows under "Deployed resources", rewritten by `npm run docs:diagram` and compared by a test, so
 * the picture cannot drift from the stack.
 *
 * Resources that only glue others together are folded into edges: an API integration becomes
 * "API invokes function", a role's policy "role may use resource", an API mapping "domain serves
 * API"; routes become part of the API's label; Lambda permissions and CDK metadata are left out.
 */

export interface TemplateResource {
  readonly Type: string;
  readonly Properties?: Record<string, unknown>;
  readonly Metadata?: Record<string, unknown>;
}

export interface StackTemplate {
  readonly Resources: Record<string, TemplateResource>;
}

const FOLDED = new Set([
  'AWS::ApiGatewayV2::ApiMapping',
  'AWS::ApiGatewayV2::Integration',
  'AWS::ApiGatewayV2::Route',
  'AWS::CDK::Metadata',
  'AWS::IAM::Policy',
  'AWS::Lambda::Permission',
  'AWS::SQS::QueuePolicy',
]);

/** Readable names of the resource types; any other type shows as its CloudFormation name. */
const TYPE_NAMES: Record<string, string> = {
  'AWS::ApiGatewayV2::Api': 'HTTP API',
  'AWS::ApiGatewayV2::DomainName': 'API custom domain',
  'AWS::ApiGatewayV2::Stage': 'API stage',
  'AWS::CertificateManager::Certificate': 'ACM certificate',
  'AWS::CloudWatch::Alarm': 'CloudWatch alarm',
  'AWS::CloudWatch::Dashboard': 'CloudWatch dashboard',
  'AWS::DynamoDB::GlobalTable': 'DynamoDB table',
  'AWS::IAM::Role': 'IAM role',
  'AWS::Lambda::EventSourceMapping': 'Lambda event source',
  'AWS::Lambda::Function': 'Lambda function',
  'AWS::Logs::LogGroup': 'log group',
  'AWS::Route53::RecordSet': 'Route 53 record',
  'AWS::S3::Bucket': 'S3 bucket',
  'AWS::Scheduler::Schedule': 'EventBridge schedule',
  'AWS::SecretsManager::Secret': 'secret',
  'AWS::SNS::Topic': 'SNS topic',
  'AWS::SQS::Queue': 'SQS queue',
};

/** The logical ids a value refers to (`Ref`, `Fn::GetAtt`), anywhere inside it. */
export function referencesIn(value: unknown, into: Set<string> = new Set()): Set<string> {
  if (Array.isArray(value)) {
    for (const item of value) referencesIn(item, into);
  } else if (value !== null && typeof value === 'object') {
    for (const [key, inner] of Object.entries(value)) {
      if (key === 'Ref' && typeof inner === 'string') into.add(inner);
      else if (key === 'Fn::GetAtt' && Array.isArray(inner) && typeof inner[0] === 'string')
        into.add(inner[0]);
      else referencesIn(inner, into);
    }
  }
  return into;
}

/**
 * A readable name: the construct path when the template carries it, else the logical id without
 * the hash CDK appends (`UserSyncApiHttpApi51FDA614` -> `UserSyncApiHttpApi`).
 */
function nameOf(id: string, resource: TemplateResource): string {
  const path = resource.Metadata?.['aws:cdk:path'];
  if (typeof path === 'string') {
    return path
      .split('/')
      .slice(1)
      .filter((part, index, parts) => !(index === parts.length - 1 && part === 'Resource'))
      .join('/');
  }
  return id.replace(/[0-9A-F]{8}$/, '');
}

function shapeOf(type: string, label: string): string {
  if (type === 'AWS::DynamoDB::GlobalTable') return `[("${label}")]`;
  if (type === 'AWS::Lambda::Function') return `(["${label}"])`;
  if (type === 'AWS::SQS::Queue') return `[/"${label}"/]`;
  return `["${label}"]`;
}

export function resourceDiagram(template: StackTemplate): string {
  const resources = template.Resources;
  const shown = Object.keys(resources)
    .filter((id) => !FOLDED.has(resources[id]!.Type))
    .sort();
  const routesOf = new Map<string, string[]>();
  const edges = new Set<string>();
  const nodeId = (id: string) => id.replace(/[0-9A-F]{8}$/, '');
  const edge = (from: string, to: string, label: string) => {
    if (from !== to && resources[from] && resources[to] && !FOLDED.has(resources[from].Type)) {
      edges.add(`  ${nodeId(from)} -->|${label}| ${nodeId(to)}`);
    }
  };

  for (const [id, resource] of Object.entries(resources)) {
    const properties = resource.Properties ?? {};
    const refs = [...referencesIn(properties)].filter((ref) => resources[ref] !== undefined);
    switch (resource.Type) {
      case 'AWS::ApiGatewayV2::Route': {
        const api = [...referencesIn(properties['ApiId'])][0];
        if (api) routesOf.set(api, [...(routesOf.get(api) ?? []), String(properties['RouteKey'])]);
        break;
      }
      case 'AWS::ApiGatewayV2::Integration': {
        const api = [...referencesIn(properties['ApiId'])][0];
        for (const target of referencesIn(properties['IntegrationUri']))
          if (api) edge(api, target, 'invokes');
        break;
      }
      case 'AWS::ApiGatewayV2::ApiMapping': {
        for (const domain of referencesIn(properties['DomainName']))
          for (const api of referencesIn(properties['ApiId'])) edge(domain, api, 'serves');
        break;
      }
      case 'AWS::IAM::Policy': {
        const roles = [...referencesIn(properties['Roles'])];
        const targets = [...referencesIn(properties['PolicyDocument'])];
        for (const role of roles) for (const target of targets) edge(role, target, 'may use');
        break;
      }
      default:
        if (FOLDED.has(resource.Type)) break;
        // A dashboard refers to everything it graphs: that is not a dependency worth drawing.
        if (resource.Type === 'AWS::CloudWatch::Dashboard') break;
        for (const ref of refs) edge(id, ref, 'uses');
    }
  }

  const nodes = shown.map((id) => {
    const resource = resources[id]!;
    const typeName = TYPE_NAMES[resource.Type] ?? resource.Type;
    const routes = routesOf.get(id);
    const detail = routes ? `<br/>${routes.sort().join(', ')}` : '';
    return `  ${nodeId(id)}${shapeOf(resource.Type, `${nameOf(id, resource)}<br/><i>${typeName}</i>${detail}`)}`;
  });
  return ['```mermaid', 'flowchart LR', ...nodes, ...[...edges].sort(), '```'].join('\n');
}

/** The environment the diagram is drawn from: the example with a custom domain. */
export const DIAGRAM_ENVIRONMENT = 'prod';

export const DIAGRAM_BEGIN = '<!-- resources:begin (npm run docs:diagram writes this block) -->';
export const DIAGRAM_END = '<!-- resources:end -->';

/** The document with the block between the markers replaced by `diagram`. */
export function withDiagram(document: string, diagram: string): string {
  const begin = document.indexOf(DIAGRAM_BEGIN);
  const end = document.indexOf(DIAGRAM_END);
  if (begin < 0 || end < begin)
    throw new Error(`the document has no ${DIAGRAM_BEGIN} … ${DIAGRAM_END} block`);
  return `${document.slice(0, begin + DIAGRAM_BEGIN.length)}\n${diagram}\n${document.slice(end)}`;
}

/** The diagram block of the document, as written. */
export function diagramIn(document: string): string | undefined {
  const begin = document.indexOf(DIAGRAM_BEGIN);
  const end = document.indexOf(DIAGRAM_END);
  if (begin < 0 || end < begin) return undefined;
  return document.slice(begin + DIAGRAM_BEGIN.length, end).trim();
}

import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { addNagChecks } from '../../lib/app.ts';
import { DmpActivationStack } from '../../lib/dmp-activation-stack.ts';
import { ENVIRONMENTS_DIR } from '../../lib/repo.ts';
import { loadEnvironmentFile, parseEnvironment } from '../../src/config/load.ts';

/**
 * The expiry sweep in the stack (src/population/expiry.ts): dev plus one API platform that takes
 * removal calls but no lifetime, synthesized with cdk-nag attached; and dev alone, which needs none.
 */

const EXPIRING = 601;

function synth(extraPlatforms: unknown[]): Template {
  const dev = loadEnvironmentFile(join(ENVIRONMENTS_DIR, 'dev.json'));
  const config = parseEnvironment(
    { ...dev, name: 'expirytest', platforms: [...dev.platforms, ...extraPlatforms] },
    'test',
  );
  const app = new App();
  const stack = new DmpActivationStack(app, 'DmpActivation-expirytest', { config });
  addNagChecks(app);
  // Throws when cdk-nag reports an unacknowledged finding.
  app.synth();
  return Template.fromStack(stack);
}

const expiryFunctions = (template: Template) =>
  Object.keys(
    template.findResources('AWS::Lambda::Function', {
      Properties: { Environment: { Variables: { POWERTOOLS_SERVICE_NAME: 'expire-memberships' } } },
    }),
  );

let template: Template;

beforeAll(() => {
  template = synth([
    {
      id: EXPIRING,
      name: 'Removals, no lifetime',
      connector: {
        api: { baseUrl: 'https://api.partner.example', auth: { type: 'none' } },
        segments: { creation: 'implicit' },
        population: {
          mode: 'batch',
          add: { method: 'POST', path: '/members' },
          item: { id: '{userId}', segment: '{segmentId}' },
          removal: { via: 'call', request: { method: 'DELETE', path: '/members' } },
          defaultTtlSeconds: 2_592_000,
        },
      },
    },
  ]);
});

describe('the expiry sweep in the stack', () => {
  it('runs the sweep every minute with a scheduled event', () => {
    const [fn] = expiryFunctions(template);
    expect(fn).toBeDefined();
    const schedules = Object.values(template.findResources('AWS::Scheduler::Schedule')).filter((schedule) =>
      JSON.stringify(schedule).includes(fn as string),
    ) as { Properties: { ScheduleExpression: string; Target: { Input: string } } }[];
    expect(schedules).toHaveLength(1);
    expect(schedules[0]!.Properties.ScheduleExpression).toBe('rate(1 minute)');
  });

  it('lets the sweep send to that platform delivery queue only, and query the expiry index', () => {
    const [fn] = expiryFunctions(template);
    const role = (template.toJSON().Resources[fn as string].Properties.Role as { 'Fn::GetAtt': string[] })[
      'Fn::GetAtt'
    ][0];
    const policies = Object.values(template.findResources('AWS::IAM::Policy')).filter((policy) =>
      JSON.stringify(policy.Properties.Roles).includes(role as string),
    );
    const text = JSON.stringify(policies);
    const sends = policies
      .flatMap(
        (policy) => policy.Properties.PolicyDocument.Statement as { Action: unknown; Resource: unknown }[],
      )
      .filter((statement) => JSON.stringify(statement.Action).includes('sqs:SendMessage'));
    expect(sends).toHaveLength(1);
    expect(JSON.stringify(sends[0]!.Resource)).toContain(`Delivery${EXPIRING}`);
    expect(text).toContain('/index/byExpiry');
    expect(text).not.toContain('dynamodb:Scan');
  });

  it('is not built where no platform needs it', () => {
    expect(expiryFunctions(synth([]))).toEqual([]);
  });
});

import type { EnvironmentConfig } from '../src/config/schema.ts';

/**
 * What a deployed environment needs beyond a valid config file, checked at synth (lib/app.ts)
 * before any construct is built. The schema leaves these optional because the same schema
 * validates the local environment and test configurations, which deploy nothing.
 */

/** Each problem as `field: message`, the form ConfigError lists (empty when deployable). */
export function deploymentProblems(config: EnvironmentConfig): string[] {
  const problems: string[] = [];
  const { account, region } = config.aws;
  if (!account) {
    problems.push(
      'aws.account: a deployed environment names its AWS account (12 digits), so that a deploy with ' +
        "another account's credentials is refused instead of creating a second copy there",
    );
  }
  if (!region) problems.push('aws.region: a deployed environment names its AWS region (e.g. eu-west-1)');

  const topic = config.monitoring.alarmTopicArn;
  if (!topic) {
    problems.push(
      'monitoring.alarmTopicArn: a deployed environment names the SNS topic its alarms notify ' +
        '(an alarm that notifies nobody is not monitoring; create the topic once, see docs/deploy.md)',
    );
  } else if (region && arnRegion(topic) !== region) {
    problems.push(
      `monitoring.alarmTopicArn: the topic is in ${arnRegion(topic)}, the stack in ${region}: CloudWatch alarms notify topics of their own region only`,
    );
  }

  const domain = config.domain;
  if (domain) {
    if (!domain.certificateArn && !domain.hostedZone) {
      problems.push(
        'domain: give certificateArn (an ACM certificate for the name, in the stack region) or ' +
          'hostedZone (a Route 53 zone the stack validates a new certificate in)',
      );
    }
    if (domain.certificateArn && region && arnRegion(domain.certificateArn) !== region) {
      problems.push(
        `domain.certificateArn: the certificate is in ${arnRegion(domain.certificateArn)}, the API in ${region}: a regional API Gateway domain needs a certificate of its own region`,
      );
    }
    if (domain.hostedZone && !isWithin(domain.name, domain.hostedZone.name)) {
      problems.push(`domain.hostedZone.name: ${domain.hostedZone.name} does not contain ${domain.name}`);
    }
    const publicBaseUrl = config.userSync.publicBaseUrl;
    if (publicBaseUrl && new URL(publicBaseUrl).hostname !== domain.name) {
      problems.push(
        `userSync.publicBaseUrl: its host ${new URL(publicBaseUrl).hostname} is not the custom domain ${domain.name}`,
      );
    }
  }
  const cookieDomain = config.userSync.cookieDomain?.replace(/^\./, '');
  if (cookieDomain && domain && !isWithin(domain.name, cookieDomain)) {
    problems.push(
      `userSync.cookieDomain: ${cookieDomain} does not contain the sync host ${domain.name}, so browsers would refuse the cookie`,
    );
  }
  if (cookieDomain && !domain && !config.userSync.publicBaseUrl) {
    problems.push(
      `userSync.cookieDomain: ${cookieDomain} is set but the environment has no custom domain: the API's ` +
        'execute-api host is not within it, so browsers would refuse the cookie (set domain, see docs/deploy.md)',
    );
  }
  return problems;
}

/**
 * The configuration compiled into a deployed stack's bundles: settings left to "depends where it
 * runs" are made explicit for AWS (no `debug=1` traces unless the file turns them on).
 */
export function forDeployment(config: EnvironmentConfig): EnvironmentConfig {
  return { ...config, debugTraces: config.debugTraces ?? false };
}

/**
 * The expected duration of one sync request, in seconds, used to size the function's reserved
 * concurrency from the API throttle (Little's law: concurrency = arrival rate x time in system).
 * A warm request takes a few milliseconds of CPU plus one or two DynamoDB calls; 100 ms leaves
 * room for cold starts and a slow Secrets Manager refresh. Requests beyond the throttle are
 * answered 429 by API Gateway before they reach the function.
 */
export const SYNC_REQUEST_SECONDS = 0.1;

/** The reserved concurrency of the API's function: the config's, else sized to the throttle. */
export function reservedConcurrency(config: EnvironmentConfig): number {
  return config.api.reservedConcurrency ?? Math.ceil(config.api.throttlingRateLimit * SYNC_REQUEST_SECONDS);
}

function arnRegion(arn: string): string {
  return arn.split(':')[3] ?? '';
}

/** True when `name` is `zone` or a subdomain of it. */
function isWithin(name: string, zone: string): boolean {
  return name === zone || name.endsWith(`.${zone}`);
}

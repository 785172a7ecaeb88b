import { DomainName, SecurityPolicy } from 'aws-cdk-lib/aws-apigatewayv2';
import * as acm from 'aws-cdk-lib/aws-certificatemanager';
import * as route53 from 'aws-cdk-lib/aws-route53';
import { ApiGatewayv2DomainProperties } from 'aws-cdk-lib/aws-route53-targets';
import { Construct } from 'constructs';
import type { EnvironmentConfig } from '../../src/config/schema.ts';

type DomainConfig = NonNullable<EnvironmentConfig['domain']>;

/**
 * The sync API's custom domain (regional, TLS 1.2): the host the browser sees, so the host its
 * cookie belongs to (docs/deploy.md says which setups keep the cookie in today's browsers).
 *
 * - `certificateArn`: an existing ACM certificate in the stack's region; DNS is the operator's
 *   (a CNAME to the `SyncDomainTarget` output).
 * - `hostedZone`: the stack requests a certificate validated by DNS in that Route 53 zone and
 *   creates the alias record. The zone is named by id and name in the environment
 *   file, never looked up, so synth stays offline.
 */
export class SyncDomain extends Construct {
  readonly domainName: DomainName;

  constructor(scope: Construct, id: string, props: { readonly domain: DomainConfig }) {
    super(scope, id);
    const { domain } = props;
    const zone = domain.hostedZone
      ? route53.HostedZone.fromHostedZoneAttributes(this, 'Zone', {
          hostedZoneId: domain.hostedZone.id,
          zoneName: domain.hostedZone.name,
        })
      : undefined;
    const certificate = domain.certificateArn
      ? acm.Certificate.fromCertificateArn(this, 'Certificate', domain.certificateArn)
      : new acm.Certificate(this, 'Certificate', {
          domainName: domain.name,
          validation: acm.CertificateValidation.fromDns(zone),
        });

    this.domainName = new DomainName(this, 'DomainName', {
      domainName: domain.name,
      certificate,
      securityPolicy: SecurityPolicy.TLS_1_2,
    });

    if (zone) {
      const target = route53.RecordTarget.fromAlias(
        new ApiGatewayv2DomainProperties(
          this.domainName.regionalDomainName,
          this.domainName.regionalHostedZoneId,
        ),
      );
      new route53.ARecord(this, 'AliasRecord', { zone, recordName: domain.name, target });
    }
  }
}

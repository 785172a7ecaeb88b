import { RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import type { EnvironmentConfig } from '../../src/config/schema.ts';
import { platformSecretName, syncTokenKeySecretName } from '../../src/config/secrets.ts';
import { acknowledgeNag } from '../nag.ts';

const NO_ROTATION_REASON =
  'Partner-shared sync tokens and HMAC keys are rotated with the partner through the key-id mechanism ' +
  '(a new key id is added next to the old one, the partner switches, the old id is removed); a ' +
  'Secrets Manager rotation Lambda cannot coordinate that change with a third party.';

const SYNC_KEY_NO_ROTATION_REASON =
  'The sync-token signing key is rotated by key id (kid + previous keys still accepted until the tokens ' +
  'they signed expire); a Secrets Manager rotation Lambda replacing the key in place would invalidate ' +
  'tokens in flight.';

/**
 * The service's secrets, under the names src/config/secrets.ts defines: one per platform with sync
 * or connector settings (its static `plsec` token, the partner's HMAC signing keys and the
 * credentials of its API) and the key that signs the tokens `/sync` mints. Values are generated at
 * creation; operators then edit them.
 */
export class ServiceSecrets extends Construct {
  readonly syncTokenKey: secretsmanager.Secret;
  readonly platforms: ReadonlyMap<number, secretsmanager.Secret>;

  constructor(scope: Construct, id: string, props: { readonly config: EnvironmentConfig }) {
    super(scope, id);
    const { config } = props;
    const removalPolicy = config.retainData ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY;

    const platforms = new Map<number, secretsmanager.Secret>();
    for (const platform of config.platforms) {
      if (!platform.sync && !platform.connector) continue;
      const secret = new secretsmanager.Secret(this, `Platform${platform.id}`, {
        secretName: platformSecretName(config.name, platform.id),
        description: `Sync token, signing keys and API credentials of platform ${platform.id} (${platform.name})`,
        generateSecretString: {
          // `api` receives the partner API's credentials (src/config/secrets.ts), added by an operator.
          secretStringTemplate: '{"signingKeys":{},"api":{}}',
          generateStringKey: 'syncToken',
          excludePunctuation: true,
          passwordLength: 32,
        },
        removalPolicy,
      });
      acknowledgeNag(secret, 'AwsSolutions-SMG4', NO_ROTATION_REASON);
      platforms.set(platform.id, secret);
    }
    this.platforms = platforms;

    this.syncTokenKey = new secretsmanager.Secret(this, 'SyncTokenKey', {
      secretName: syncTokenKeySecretName(config.name),
      description: 'HMAC key that signs the tokens /sync mints for the partner callback',
      generateSecretString: {
        secretStringTemplate: '{"kid":"k1","previous":{}}',
        generateStringKey: 'key',
        excludePunctuation: true,
        passwordLength: 48,
      },
      removalPolicy,
    });
    acknowledgeNag(this.syncTokenKey, 'AwsSolutions-SMG4', SYNC_KEY_NO_ROTATION_REASON);
  }

  get all(): secretsmanager.Secret[] {
    return [...this.platforms.values(), this.syncTokenKey];
  }

  /** secretsmanager:GetSecretValue on exactly these secrets (no DescribeSecret, no wildcard). */
  grantGetValue(grantee: iam.IGrantable): void {
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['secretsmanager:GetSecretValue'],
        resources: this.all.map((secret) => secret.secretArn),
      }),
    );
  }
}

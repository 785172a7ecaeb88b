import { RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import type { EnvironmentConfig } from '../../src/config/schema.ts';
import {
  platformApiSecretName,
  platformSecretName,
  privacyKeySecretName,
  syncTokenKeySecretName,
} from '../../src/config/secrets.ts';
import { acknowledgeNag } from '../nag.ts';

const NO_ROTATION_REASON =
  'Partner-shared sync tokens and HMAC keys are rotated with the partner through the key-id mechanism ' +
  '(a new key id is added next to the old one, the partner switches, the old id is removed); a ' +
  'Secrets Manager rotation Lambda cannot coordinate that change with a third party.';

const API_NO_ROTATION_REASON =
  'Partner API credentials are issued by the partner (its console or account team); a rotation Lambda ' +
  'cannot obtain new ones from a third party. Operators replace the value when the partner rotates.';

const SYNC_KEY_NO_ROTATION_REASON =
  'The sync-token signing key is rotated by key id (kid + previous keys still accepted until the tokens ' +
  'they signed expire); a Secrets Manager rotation Lambda replacing the key in place would invalidate ' +
  'tokens in flight.';

const PRIVACY_KEY_NO_ROTATION_REASON =
  'The privacy key digests forgotten users (tombstones, audit and rejection records, docs/privacy.md); ' +
  'a key replaced in place would no longer find the tombstones it wrote, letting forgotten users back.';

/**
 * The service's secrets, under the names src/config/secrets.ts defines: per platform with sync
 * settings its static `plsec` token and the partner's HMAC signing keys; per platform with a
 * connector the credentials of its API, apart; and the key that signs the tokens `/sync` mints.
 * Values are generated at creation (API credentials start empty); operators then edit them.
 */
export class ServiceSecrets extends Construct {
  readonly syncTokenKey: secretsmanager.Secret;
  /** The key of the keyed user digest (src/privacy/digest.ts), generated, never shown to a partner. */
  readonly privacyKey: secretsmanager.Secret;
  readonly platforms: ReadonlyMap<number, secretsmanager.Secret>;
  /** API credentials per connected platform; read by no function yet (the delivery ones will). */
  readonly apiSecrets: ReadonlyMap<number, secretsmanager.Secret>;

  constructor(scope: Construct, id: string, props: { readonly config: EnvironmentConfig }) {
    super(scope, id);
    const { config } = props;
    const removalPolicy = config.retainData ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY;

    const platforms = new Map<number, secretsmanager.Secret>();
    const apiSecrets = new Map<number, secretsmanager.Secret>();
    for (const platform of config.platforms) {
      if (platform.connector) {
        // Partner API credentials are set by an operator; the secret starts empty and only the
        // functions that call the partner may read it (not the public-facing user-sync one).
        const api = new secretsmanager.Secret(this, `Platform${platform.id}Api`, {
          secretName: platformApiSecretName(config.name, platform.id),
          description: `API credentials of platform ${platform.id} (${platform.name})`,
          secretObjectValue: {},
          removalPolicy,
        });
        acknowledgeNag(api, 'AwsSolutions-SMG4', API_NO_ROTATION_REASON);
        apiSecrets.set(platform.id, api);
      }
      if (!platform.sync) continue;
      const secret = new secretsmanager.Secret(this, `Platform${platform.id}`, {
        secretName: platformSecretName(config.name, platform.id),
        description: `Sync token and signing keys shared with platform ${platform.id} (${platform.name})`,
        generateSecretString: {
          secretStringTemplate: '{"signingKeys":{}}',
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
    this.apiSecrets = apiSecrets;

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

    this.privacyKey = new secretsmanager.Secret(this, 'PrivacyKey', {
      secretName: privacyKeySecretName(config.name),
      description: 'HMAC key of the user digest in tombstones, privacy audit and rejection records',
      generateSecretString: {
        secretStringTemplate: '{}',
        generateStringKey: 'key',
        excludePunctuation: true,
        passwordLength: 64,
      },
      // Kept with the data: the retained tables' tombstones are found by it.
      removalPolicy,
    });
    acknowledgeNag(this.privacyKey, 'AwsSolutions-SMG4', PRIVACY_KEY_NO_ROTATION_REASON);
  }

  /** secretsmanager:GetSecretValue on the privacy key only. */
  grantPrivacyKey(grantee: iam.IGrantable): void {
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['secretsmanager:GetSecretValue'],
        resources: [this.privacyKey.secretArn],
      }),
    );
  }

  /** What the user-sync function reads: platform sync secrets and the token key, never API credentials. */
  get syncSecrets(): secretsmanager.Secret[] {
    return [...this.platforms.values(), this.syncTokenKey];
  }

  /** secretsmanager:GetSecretValue on exactly these platforms' API credentials (population functions). */
  grantApiSecrets(grantee: iam.IGrantable, platformIds: readonly number[]): void {
    const secrets = platformIds.flatMap((id) => {
      const secret = this.apiSecrets.get(id);
      return secret ? [secret] : [];
    });
    if (secrets.length === 0) return;
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['secretsmanager:GetSecretValue'],
        resources: secrets.map((secret) => secret.secretArn),
      }),
    );
  }

  /** secretsmanager:GetSecretValue on exactly the sync secrets (no DescribeSecret, no wildcard). */
  grantGetValue(grantee: iam.IGrantable): void {
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['secretsmanager:GetSecretValue'],
        resources: this.syncSecrets.map((secret) => secret.secretArn),
      }),
    );
  }
}

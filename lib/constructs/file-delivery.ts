import { Arn, ArnFormat, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as cxapi from 'aws-cdk-lib/cx-api';
import { Construct } from 'constructs';
import type { EnvironmentConfig } from '../../src/config/schema.ts';
import { exportFilesInput, type FilePlatform, filePlatforms } from '../../src/files/platforms.ts';
import {
  FILE_METRICS,
  functionServiceName,
  METRICS_NAMESPACE,
  SYNC_METRICS,
} from '../../src/infra/resources.ts';
import { acknowledgeNag } from '../nag.ts';
import { runbookLine } from '../runbook.ts';
import { FunctionSchedule } from './function-schedule.ts';
import type { Monitoring } from './monitoring.ts';
import type { ServiceFunction } from './service-function.ts';

/** Delivered files stay in the outbox this long (the partner has read them by then). */
export const OUTBOX_RETENTION_DAYS = 30;
export const ACCESS_LOG_RETENTION_DAYS = 90;

const PREFIX_NAG_REASON =
  'File names are made per segment and time window, so the exporter writes keys it cannot list in ' +
  "advance; the grant is limited to the platform's own prefix in its own bucket, with only PutObject, " +
  'GetObject (HeadObject: is a file already published?) and AbortMultipartUpload.';

const ACCESS_LOGS_NAG_REASON =
  'This bucket is the target of the file outbox server access logs; logging it into itself (or into ' +
  'yet another bucket) would loop or only move the finding. It is private, TLS-only and encrypted.';

/**
 * Legacy file delivery in AWS: the outbox bucket (with its access-log bucket), and, for the
 * export-files function, one EventBridge Scheduler schedule per file-mode platform, least-privilege
 * grants per destination and an alarm per platform on repeated publication failures.
 *
 * The outbox: all public access blocked, TLS only (TLS 1.2+), SSE-S3 encryption, objects owned by
 * the bucket owner (no ACLs), server access logs, a lifecycle that deletes delivered files after
 * OUTBOX_RETENTION_DAYS and aborts multipart uploads a crash left behind after one day. Partners
 * read only their platform's prefix, through the principals the platform file names.
 */
export class FileDelivery extends Construct {
  readonly platforms: readonly FilePlatform[];
  readonly outbox: s3.Bucket;
  readonly accessLogs: s3.Bucket;
  readonly schedules: FunctionSchedule[] = [];
  readonly alarms: cloudwatch.Alarm[] = [];

  constructor(
    scope: Construct,
    id: string,
    private readonly props: { readonly config: EnvironmentConfig },
  ) {
    super(scope, id);
    // Log delivery through a bucket policy (logging.s3.amazonaws.com), not the legacy ACL, which
    // BucketOwnerEnforced ownership forbids; the flag must be set before the buckets exist.
    this.node.setContext(cxapi.S3_SERVER_ACCESS_LOGS_USE_BUCKET_POLICY, true);
    const { config } = props;
    this.platforms = filePlatforms(config);
    const removalPolicy = config.retainData ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY;
    const privateBucket = {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      encryption: s3.BucketEncryption.S3_MANAGED,
      removalPolicy,
    };

    this.accessLogs = new s3.Bucket(this, 'OutboxAccessLogs', {
      ...privateBucket,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      lifecycleRules: [{ expiration: Duration.days(ACCESS_LOG_RETENTION_DAYS) }],
    });
    acknowledgeNag(this.accessLogs, 'AwsSolutions-S1', ACCESS_LOGS_NAG_REASON);

    this.outbox = new s3.Bucket(this, 'Outbox', {
      ...privateBucket,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      serverAccessLogsBucket: this.accessLogs,
      serverAccessLogsPrefix: 'outbox/',
      lifecycleRules: [
        {
          expiration: Duration.days(OUTBOX_RETENTION_DAYS),
          abortIncompleteMultipartUploadAfter: Duration.days(1),
        },
      ],
    });

    for (const platform of this.platforms) {
      const destination = platform.files.destination;
      if (destination.type !== 's3' || destination.bucket || destination.partnerReaders.length === 0)
        continue;
      const principals = destination.partnerReaders.map((arn) => new iam.ArnPrincipal(arn));
      this.outbox.addToResourcePolicy(
        new iam.PolicyStatement({
          sid: `Platform${platform.platformId}Read`,
          principals,
          actions: ['s3:GetObject'],
          resources: [this.outbox.arnForObjects(`${destination.prefix}*`)],
        }),
      );
      this.outbox.addToResourcePolicy(
        new iam.PolicyStatement({
          sid: `Platform${platform.platformId}List`,
          principals,
          actions: ['s3:ListBucket'],
          resources: [this.outbox.bucketArn],
          conditions: { StringLike: { 's3:prefix': [`${destination.prefix}*`] } },
        }),
      );
    }
  }

  /**
   * Grants, schedules and alarms of the export functions: `s3` serves the platforms whose files go
   * to S3 (object writes under each platform's prefix, the partner's role, its KMS key), `sftp`
   * those that go to SFTP (their API secrets: the S3 function reads no secret at all).
   */
  attachExporters(
    exporters: { readonly s3?: ServiceFunction | undefined; readonly sftp?: ServiceFunction | undefined },
    apiSecrets: ReadonlyMap<number, secretsmanager.Secret>,
    monitoring: Monitoring,
  ): void {
    const { config } = this.props;
    const stack = Stack.of(this);
    const objects = new Set<string>();
    /** cdk-nag's spelling of each object ARN pattern, for its acknowledgement. */
    const nagResources = new Set<string>();
    const keys = new Set<string>();
    const roles = new Set<string>();
    const secrets = new Set<string>();
    const exporterOf = (platform: FilePlatform): ServiceFunction => {
      const kind = platform.files.destination.type;
      const exporter = exporters[kind];
      if (!exporter) throw new Error(`no export function for ${kind} (platform ${platform.platformId})`);
      return exporter;
    };
    for (const platform of this.platforms) {
      const destination = platform.files.destination;
      if (destination.type === 'sftp') {
        const secret = apiSecrets.get(platform.platformId);
        if (secret) secrets.add(secret.secretArn);
        continue;
      }
      if (destination.roleArn) {
        roles.add(destination.roleArn);
        continue;
      }
      const outboxId = stack.getLogicalId(this.outbox.node.defaultChild as s3.CfnBucket);
      nagResources.add(
        destination.bucket
          ? `arn:<AWS::Partition>:s3:::${destination.bucket}/${destination.prefix}*`
          : `<${outboxId}.Arn>/${destination.prefix}*`,
      );
      objects.add(
        destination.bucket
          ? Arn.format(
              {
                service: 's3',
                region: '',
                account: '',
                resource: destination.bucket,
                resourceName: `${destination.prefix}*`,
                arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
              },
              stack,
            )
          : this.outbox.arnForObjects(`${destination.prefix}*`),
      );
      if (destination.kmsKeyArn) keys.add(destination.kmsKeyArn);
    }
    const s3Role = exporters.s3?.role;
    if (s3Role && objects.size > 0) {
      // PutObject and the multipart calls; GetObject for HeadObject (is a file already there?).
      s3Role.addToPrincipalPolicy(
        new iam.PolicyStatement({
          actions: ['s3:PutObject', 's3:GetObject', 's3:AbortMultipartUpload'],
          resources: [...objects],
        }),
      );
      const defaultPolicy = s3Role.node.tryFindChild('DefaultPolicy');
      for (const resource of nagResources)
        if (defaultPolicy)
          acknowledgeNag(defaultPolicy, `AwsSolutions-IAM5[Resource::${resource}]`, PREFIX_NAG_REASON);
    }
    if (s3Role && keys.size > 0) {
      s3Role.addToPrincipalPolicy(
        new iam.PolicyStatement({ actions: ['kms:GenerateDataKey', 'kms:Decrypt'], resources: [...keys] }),
      );
    }
    if (s3Role && roles.size > 0) {
      s3Role.addToPrincipalPolicy(
        new iam.PolicyStatement({ actions: ['sts:AssumeRole'], resources: [...roles] }),
      );
    }
    if (exporters.sftp && secrets.size > 0) {
      exporters.sftp.role.addToPrincipalPolicy(
        new iam.PolicyStatement({ actions: ['secretsmanager:GetSecretValue'], resources: [...secrets] }),
      );
    }

    for (const platform of this.platforms) {
      const every = platform.files.everyMinutes;
      // EventBridge Scheduler with its own role, a dead-letter queue and an alarm (plumbing's
      // construct); the input names the platform, as the local stack's declaration does.
      this.schedules.push(
        new FunctionSchedule(this, `Export${platform.platformId}`, {
          function: exporterOf(platform).function,
          everyMinutes: every,
          input: exportFilesInput(platform.platformId),
          description: `${config.name}: export files of platform ${platform.platformId} every ${every} min`,
          monitoring,
        }),
      );
      const failing = new cloudwatch.Metric({
        namespace: METRICS_NAMESPACE,
        metricName: FILE_METRICS.failing,
        dimensionsMap: {
          service: functionServiceName(exporterOf(platform).definition),
          [SYNC_METRICS.environmentDimension]: config.name,
          [SYNC_METRICS.platformDimension]: String(platform.platformId),
        },
        statistic: 'Sum',
        period: Duration.minutes(Math.max(5, every)),
      });
      this.alarms.push(
        failing.createAlarm(this, `Platform${platform.platformId}PublicationFailing`, {
          alarmDescription:
            `${config.name}: files of platform ${platform.platformId} failed to publish ` +
            `${platform.files.alarmAfterFailures} times or more (dmp files --platform ${platform.platformId}). ` +
            runbookLine('file-publication-failing'),
          threshold: 1,
          evaluationPeriods: 1,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        }),
      );
    }
    monitoring.addAlarms(...this.alarms);
  }
}

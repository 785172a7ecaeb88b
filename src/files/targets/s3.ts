import type { Readable } from 'node:stream';
import { HeadObjectCommand, NotFound, S3Client } from '@aws-sdk/client-s3';
import { fromTemporaryCredentials } from '@aws-sdk/credential-providers';
import { Upload } from '@aws-sdk/lib-storage';
import { S3_CLIENT_SETTINGS } from '../../aws/clients.ts';
import { FILE_OUTBOX_BUCKET } from '../../infra/resources.ts';
import type { FileTarget, TargetSession } from '../exporter.ts';
import type { FilePlatform } from '../platforms.ts';

/**
 * An S3 file drop: our outbox bucket, or a partner's bucket (directly through its bucket policy, or
 * through a role in its account that we assume with an external id). An S3 object appears whole or
 * not at all, so files go straight to their final key: no temporary key, nothing to rename.
 * Uploads stream through `@aws-sdk/lib-storage` (multipart above one part, 8 MiB parts, two in
 * flight: memory stays at ~16 MiB whatever the file's size; an aborted multipart upload leaves no
 * object, and the bucket's lifecycle rule removes its parts).
 */

export interface S3TargetOptions {
  readonly bucket: string;
  readonly prefix: string;
  /** A role in the partner's account to write with. */
  readonly roleArn?: string | undefined;
  readonly externalId?: string | undefined;
  /** SSE-KMS with this key (a partner bucket that demands its own key). */
  readonly kmsKeyArn?: string | undefined;
  readonly partSizeBytes?: number;
}

export const S3_PART_SIZE = 8 * 1024 * 1024;

export class S3Target implements FileTarget {
  readonly description: string;

  constructor(
    private readonly client: S3Client,
    private readonly options: S3TargetOptions,
  ) {
    this.description = `s3://${options.bucket}/${options.prefix}`;
  }

  /** A target that assumes the partner's role (credentials refreshed by the SDK as they expire). */
  static withRole(base: S3Client, options: S3TargetOptions & { roleArn: string }): S3Target {
    const client = new S3Client({
      ...S3_CLIENT_SETTINGS,
      credentials: fromTemporaryCredentials({
        params: {
          RoleArn: options.roleArn,
          RoleSessionName: 'dmp-activation-export-files',
          ...(options.externalId ? { ExternalId: options.externalId } : {}),
        },
      }),
      region: base.config.region,
    });
    return new S3Target(client, options);
  }

  async open(): Promise<TargetSession> {
    const { client, options } = this;
    const key = (name: string) => `${options.prefix}${name}`;
    return {
      async upload(name: string, body: Readable, contentType: string) {
        await new Upload({
          client,
          params: {
            Bucket: options.bucket,
            Key: key(name),
            Body: body,
            ContentType: contentType,
            ...(options.kmsKeyArn ? { ServerSideEncryption: 'aws:kms', SSEKMSKeyId: options.kmsKeyArn } : {}),
          },
          partSize: options.partSizeBytes ?? S3_PART_SIZE,
          queueSize: 2,
          leavePartsOnError: false,
        }).done();
      },
      async commit() {},
      async committed() {
        return true;
      },
      async visible(name: string) {
        try {
          await client.send(new HeadObjectCommand({ Bucket: options.bucket, Key: key(name) }));
          return true;
        } catch (error) {
          if (error instanceof NotFound || (error as { name?: string }).name === 'NotFound') return false;
          throw error;
        }
      },
      async close() {},
    };
  }
}

/**
 * The S3 target of a platform: its own bucket (directly, or through the partner's role), else the
 * outbox named by the function's environment (FILE_OUTBOX_BUCKET_NAME).
 */
export function s3TargetFor(
  platform: FilePlatform,
  s3: S3Client,
  env: NodeJS.ProcessEnv = process.env,
): FileTarget {
  const destination = platform.files.destination;
  if (destination.type !== 's3')
    throw new Error(`platform ${platform.platformId} delivers files by ${destination.type}, not s3`);
  const bucket = destination.bucket ?? env[FILE_OUTBOX_BUCKET.envVar];
  if (!bucket)
    throw new Error(
      `${FILE_OUTBOX_BUCKET.envVar} is not set (platform ${platform.platformId} uses the outbox)`,
    );
  const options = {
    bucket,
    prefix: destination.prefix,
    externalId: destination.externalId,
    kmsKeyArn: destination.kmsKeyArn,
  };
  return destination.roleArn
    ? S3Target.withRole(s3, { ...options, roleArn: destination.roleArn })
    : new S3Target(s3, options);
}

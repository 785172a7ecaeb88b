import { BUCKETS } from '../src/infra/resources.ts';

/**
 * The buckets of src/infra/resources.ts (the file outbox) in fauxqs' embedded S3, created from the
 * same definitions the CDK stack uses.
 */

export interface BucketProvisioner {
  createBucket(name: string): unknown;
}

export function provisionBuckets(fauxqs: BucketProvisioner): { name: string; created: boolean }[] {
  return BUCKETS.map((bucket) => {
    try {
      fauxqs.createBucket(bucket.localName);
      return { name: bucket.localName, created: true };
    } catch {
      // Persisted from an earlier run.
      return { name: bucket.localName, created: false };
    }
  });
}

import { BUCKETS } from '../src/infra/resources.ts';
import { LOOPBACK } from './http-util.ts';

/**
 * The buckets of src/infra/resources.ts (the file outbox) in fauxqs' embedded S3, created from the
 * same definitions the CDK stack uses. A bucket persisted by an earlier run keeps its objects.
 */

export interface BucketProvisioner {
  readonly port: number;
  createBucket(name: string): unknown;
}

export async function provisionBuckets(
  fauxqs: BucketProvisioner,
): Promise<{ name: string; created: boolean }[]> {
  const results: { name: string; created: boolean }[] = [];
  for (const bucket of BUCKETS) {
    // The embedded S3 answers unsigned path-style requests: HeadBucket is a HEAD of /<bucket>.
    const head = await fetch(`http://${LOOPBACK}:${fauxqs.port}/${bucket.localName}`, { method: 'HEAD' });
    const exists = head.status === 200;
    if (!exists) fauxqs.createBucket(bucket.localName);
    results.push({ name: bucket.localName, created: !exists });
  }
  return results;
}

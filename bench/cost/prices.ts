import { readFileSync } from 'node:fs';
import * as z from 'zod';
import { formatIssues } from '../../src/config/load.ts';

/**
 * The dated list prices the cost model uses (bench/cost/prices.json), validated: a price that is
 * missing, negative or mistyped stops the bench with the field's name instead of costing $NaN.
 */

const price = z.number().nonnegative();

export const PricesSchema = z.object({
  recorded: z.iso.date(),
  region: z.string().min(1),
  currency: z.literal('USD'),
  note: z.string(),
  sources: z.record(z.string(), z.url()),
  lambda: z.object({
    arm64PerGbSecond: price,
    requestsPerMillion: price,
    billingGranularityMs: z.number().positive(),
    memoryMbPerVcpu: z.number().positive(),
  }),
  apiGatewayHttp: z.object({
    requestsPerMillion: price,
    requestsPerMillionAbove300Million: price,
    meteringBytes: z.number().int().positive(),
  }),
  dynamodbOnDemand: z.object({
    writeUnitsPerMillion: price,
    readUnitsPerMillion: price,
    writeUnitBytes: z.number().int().positive(),
    readUnitBytes: z.number().int().positive(),
  }),
  /** Stream reads by a Lambda trigger: free (the page's words in `note`). */
  dynamodbStreams: z.object({ lambdaTriggerReadsPerMillion: price, note: z.string().min(1) }),
  sqs: z.object({ standardRequestsPerMillion: price, chunkBytes: z.number().int().positive() }),
  s3: z.object({ putPerThousand: price, getPerThousand: price }),
  secretsManager: z.object({ apiCallsPerTenThousand: price, secretPerMonth: price }),
  cloudwatchLogs: z.object({ ingestionPerGb: price }),
  xray: z.object({ tracesRecordedPerMillion: price }),
  dataTransferOut: z.object({ internetPerGb: price }),
});

export type Prices = z.infer<typeof PricesSchema>;

export const PRICES_FILE = new URL('./prices.json', import.meta.url);

export function loadPrices(file: URL | string = PRICES_FILE): Prices {
  const parsed = PricesSchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
  if (!parsed.success) {
    throw new Error(`${String(file)}: ${formatIssues(parsed.error).join('; ')}`);
  }
  return parsed.data;
}

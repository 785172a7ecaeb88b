import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MEMBERSHIP_DESIGN, perSecond, REFERENCE_LOAD } from '../../bench/cost/inputs.ts';
import { costOf, membershipWork, perMillion } from '../../bench/cost/model.ts';
import { loadPrices } from '../../bench/cost/prices.ts';
import {
  BLOCK_BEGIN,
  BLOCK_END,
  demands,
  firstBreak,
  LIMITS,
  measuredFromBlock,
  PEAK_TO_AVERAGE,
  renderScalingBlock,
  scalingInputs,
  syncMixWork,
} from '../../bench/cost/scaling.ts';

const prices = loadPrices();
const document = readFileSync(new URL('../../docs/scaling.md', import.meta.url), 'utf8');
const measured = measuredFromBlock(document);

describe('docs/scaling.md', () => {
  it('holds exactly the block the code computes from the work recorded in it (run `npm run bench` after a change)', () => {
    const block = document.slice(
      document.indexOf(BLOCK_BEGIN),
      document.indexOf(BLOCK_END) + BLOCK_END.length,
    );
    expect(block).toBe(renderScalingBlock(measured, prices));
  });

  it("uses the cost model where they overlap: per-sync and per-membership work are the cost model's", () => {
    const inputs = scalingInputs(measured, prices);
    const sync = syncMixWork(measured, prices);
    expect(inputs.syncLambdaMs).toBe(sync.lambdaBilledMs);
    expect(inputs.syncWriteUnits).toBe(sync.dynamoWriteUnits);
    expect(inputs.syncReadUnits).toBe(sync.dynamoReadUnits);
    const membership = membershipWork(MEMBERSHIP_DESIGN, prices);
    expect(inputs.membershipMappingReadUnits + inputs.membershipStateReadUnits).toBe(
      membership.dynamoReadUnits,
    );
    expect(inputs.membershipStateWriteUnits).toBe(membership.dynamoWriteUnits);
    // The write units the table limit sees are the write units the cost model bills:
    // $0.625 per million WRU x WRU per membership = the cost model's write line.
    expect(inputs.membershipStateWriteUnits * prices.dynamodbOnDemand.writeUnitsPerMillion).toBeCloseTo(
      perMillion(costOf(membership, prices)) -
        perMillion(costOf({ ...membership, dynamoWriteUnits: 0 }, prices)),
      9,
    );
  });

  it('computes demand from the monthly volume, the peak factor and the per-unit work', () => {
    const inputs = scalingInputs(measured, prices);
    const rows = demands(inputs);
    const apiRow = rows.find((row) => row.limit === 'apiGatewayRps')!;
    // 1e9 syncs / 2,592,000 s x 3 at the peak, then x10 and x1000
    const peak1x = (1e9 / 2_592_000) * 3;
    expect(PEAK_TO_AVERAGE).toBe(3);
    expect(perSecond(REFERENCE_LOAD.syncsPerMonth)).toBeCloseTo(1e9 / 2_592_000, 9);
    expect(apiRow.atScale).toEqual(
      [peak1x, peak1x * 10, peak1x * 1000].map((value) => expect.closeTo(value, 6)),
    );
    // 11,574 req/s at 10x is over the 10,000 req/s account throttle; 1,157 at 1x is not.
    expect(firstBreak(apiRow)).toBe(10);
    const writes = rows.find((row) => row.what.startsWith('mapping table writes'))!;
    expect(writes.atScale[0]).toBeCloseTo(peak1x * inputs.syncWriteUnits, 9);
    const secretsCached = rows.find((row) => row.what.startsWith('secret reads, cached'))!;
    // containers = peak syncs/s x seconds per sync; each reads 2 secrets per 300 s
    expect(secretsCached.atScale[2]).toBeCloseTo(
      ((peak1x * 1000 * inputs.syncLambdaMs) / 1000) * (2 / 300),
      9,
    );
    expect(LIMITS.sqsInFlight.value).toBe(120_000);
    expect(LIMITS.partitionWcu.value).toBe(1_000);
  });
});

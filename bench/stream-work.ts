import type { DynamoDBRecord, DynamoDBStreamEvent } from 'aws-lambda';
import type { LambdaHandler } from '../local/lambda.ts';
import { passesFilters } from '../src/infra/event-filters.ts';
import type { EventSourceDeclarations } from '../src/infra/event-sources.ts';
import { populationEventSources, RELEASE_STREAM_FILTERS } from '../src/infra/population.ts';
import { MAPPING_TABLE } from '../src/infra/resources.ts';
import type { countDynamoWork, countLogBytes } from './sync-work.ts';

/**
 * The work the mapping table's stream consumer (release-pending, its own function in AWS) does
 * for one sync request, counted apart from the request's own (bench/sync-work.ts): the records
 * the request's writes put on the stream, those that pass the event source's filter
 * (RELEASE_STREAM_FILTERS, what Lambda hands the function), the invocations, the DynamoDB calls
 * and units of the real handler, its log bytes and its wall-clock milliseconds here.
 *
 * The stack runs the stream's event source without the filter and the meter applies the same
 * patterns in front of the handler (passesFilters, what the local event source itself does;
 * test/integration/release-stream-filter.test.ts checks that path): the meter then sees the
 * records the filter drops, and invokes the handler only when some pass, as Lambda does. Each
 * invocation waits until the meter is told the request was answered (`settle`): the handler's
 * calls on the process's shared DynamoDB client are never mixed with the request's, whatever the
 * timing.
 */

/** What a handler did, as counted: DynamoDB calls and capacity units, and the bytes it logged. */
export interface CountedWork {
  /** DynamoDB calls by command name, and their capacity units (in total and by command). */
  readonly calls: Readonly<Record<string, number>>;
  readonly unitsByCommand: Readonly<Record<string, number>>;
  readonly dynamoCalls: number;
  readonly readUnits: number;
  readonly writeUnits: number;
  readonly logBytes: number;
}

export interface StreamConsumerWork extends CountedWork {
  /** Records the request's writes put on the mapping table's stream. */
  readonly records: number;
  /** Of which passed the filter and reached the function. */
  readonly delivered: number;
  readonly invocations: number;
  /** Wall-clock milliseconds of the handler on this machine, against the local stand-ins. */
  readonly ms: number;
}

export const NO_STREAM_WORK: StreamConsumerWork = {
  records: 0,
  delivered: 0,
  invocations: 0,
  calls: {},
  unitsByCommand: {},
  dynamoCalls: 0,
  readUnits: 0,
  writeUnits: 0,
  logBytes: 0,
  ms: 0,
};

/** What the meter reads the handler's DynamoDB work and log bytes from (bench/sync-work.ts). */
export interface WorkCounters {
  readonly dynamo: Pick<ReturnType<typeof countDynamoWork>, 'take'>;
  readonly log: Pick<ReturnType<typeof countLogBytes>, 'take'>;
}

export function streamConsumerMeter() {
  let records = 0;
  let delivered = 0;
  let invocations = 0;
  let ms = 0;
  let open: () => void = () => {};
  let gate: Promise<void> = Promise.resolve();

  /** Only the mapping table's stream, unfiltered (the meter filters): no queue, no schedule. */
  const eventSources: EventSourceDeclarations[] = [
    (config) =>
      populationEventSources(config).flatMap((source) =>
        source.kind === 'tableStream' && source.table.id === MAPPING_TABLE.id
          ? [{ ...source, filters: undefined }]
          : [],
      ),
  ];

  const wrap = (key: string, handler: LambdaHandler): LambdaHandler =>
    key !== 'releasePending'
      ? handler
      : async (event, context) => {
          const all = (event as DynamoDBStreamEvent).Records;
          await gate;
          records += all.length;
          const passing = all.filter((record: DynamoDBRecord) =>
            passesFilters(RELEASE_STREAM_FILTERS, record),
          );
          if (passing.length === 0) return { batchItemFailures: [] };
          delivered += passing.length;
          invocations += 1;
          const started = performance.now();
          try {
            return await handler({ Records: passing }, context);
          } finally {
            ms += performance.now() - started;
          }
        };

  return {
    eventSources,
    wrap,
    /** Before a request: the consumer waits until `settle`. */
    hold() {
      gate = new Promise<void>((resolve) => {
        open = resolve;
      });
    },
    /** After the request's answer (its own counts taken): lets the consumer run, counts its work. */
    async settle(whenIdle: () => Promise<void>, counters: WorkCounters): Promise<StreamConsumerWork> {
      counters.dynamo.take();
      counters.log.take();
      records = 0;
      delivered = 0;
      invocations = 0;
      ms = 0;
      open();
      await whenIdle();
      const dynamo = counters.dynamo.take();
      return {
        records,
        delivered,
        invocations,
        calls: dynamo.calls,
        unitsByCommand: dynamo.unitsByCommand,
        dynamoCalls: Object.values(dynamo.calls).reduce((sum, count) => sum + count, 0),
        readUnits: dynamo.readUnits,
        writeUnits: dynamo.writeUnits,
        logBytes: counters.log.take().bytes,
        ms,
      };
    },
  };
}

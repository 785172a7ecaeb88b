import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ENVIRONMENTS_DIR } from '../../lib/repo.ts';
import { loadEnvironmentFile } from '../../src/config/load.ts';
import { type EventSourceDefinition, eventSourcesOf } from '../../src/infra/event-sources.ts';
import { FUNCTIONS, SEGMENT_TABLE } from '../../src/infra/resources.ts';

const CONFIG = loadEnvironmentFile(join(ENVIRONMENTS_DIR, 'local.json'));
const QUEUE = { id: 'Q', localName: 'dmp-local-q' };
const SETTINGS = {
  batchSize: 10,
  maxBatchingWindowSeconds: 0,
  maxConcurrency: 2,
  maxReceiveCount: 3,
  functionTimeoutSeconds: FUNCTIONS.userSync.timeoutSeconds,
};

const problemsOf = (sources: EventSourceDefinition[]) => () => eventSourcesOf(CONFIG, [() => sources]);

describe('eventSourcesOf', () => {
  it('gathers every declaration for the environment', () => {
    const sources = eventSourcesOf(CONFIG, [
      (config) =>
        config.platforms.map(
          (p) => ({ kind: 'schedule', function: 'userSync', name: `p${p.id}`, everyMinutes: 5 }) as const,
        ),
      () => [{ kind: 'queue', function: 'userSync', queue: QUEUE, settings: SETTINGS }],
    ]);
    expect(sources).toHaveLength(CONFIG.platforms.length + 1);
  });

  it('refuses queue settings whose function timeout is not the function’s', () => {
    expect(
      problemsOf([
        {
          kind: 'queue',
          function: 'userSync',
          queue: QUEUE,
          settings: { ...SETTINGS, functionTimeoutSeconds: 6 },
        },
      ]),
    ).toThrow(/queue dmp-local-q: settings.functionTimeoutSeconds is 6, function userSync has 5/);
  });

  it('refuses two consumers of one queue', () => {
    const source = { kind: 'queue', function: 'userSync', queue: QUEUE, settings: SETTINGS } as const;
    expect(problemsOf([source, source])).toThrow(/dmp-local-q has two consumers/);
  });

  it('refuses the stream of a table whose definition sets none', () => {
    expect(
      problemsOf([
        {
          kind: 'tableStream',
          function: 'userSync',
          table: SEGMENT_TABLE,
          batchSize: 1,
          maxBatchingWindowSeconds: 0,
        },
      ]),
    ).toThrow(/table dmp-local-segments: consumed as a stream but its definition sets no stream/);
  });

  it('refuses a schedule declared twice or without a positive period', () => {
    const schedule = { kind: 'schedule', function: 'userSync', name: 'n', everyMinutes: 0 } as const;
    expect(problemsOf([schedule, { ...schedule, everyMinutes: 5 }])).toThrow(
      /schedule n: everyMinutes must be positive; schedule n is declared twice/,
    );
  });
});

describe('eventSourcesOf, settings', () => {
  it('refuses consumer settings AWS would refuse', () => {
    expect(
      problemsOf([
        { kind: 'queue', function: 'userSync', queue: QUEUE, settings: { ...SETTINGS, batchSize: 50 } },
      ]),
    ).toThrow(/queue dmp-local-q: maxBatchingWindowSeconds: a batchSize of 50/);
    expect(
      problemsOf([
        {
          kind: 'tableStream',
          function: 'userSync',
          table: { ...SEGMENT_TABLE, stream: 'KEYS_ONLY' },
          batchSize: 0,
          maxBatchingWindowSeconds: 0,
        },
      ]),
    ).toThrow(/the stream of dmp-local-segments: batchSize must be at least 1/);
  });
});

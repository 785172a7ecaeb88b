import { describe, expect, it } from 'vitest';
import {
  type QueueConsumerSettings,
  QueueConsumerSettingsError,
  validateQueueConsumerSettings,
  visibilityTimeoutSeconds,
} from '../../src/infra/queues.ts';
import { validateStreamConsumerSettings } from '../../src/infra/streams.ts';

const VALID: QueueConsumerSettings = {
  batchSize: 1000,
  maxBatchingWindowSeconds: 1,
  maxConcurrency: 5,
  maxReceiveCount: 5,
  functionTimeoutSeconds: 30,
};

function problemsOf(settings: unknown): readonly string[] {
  try {
    validateQueueConsumerSettings(settings, 'platform 99999');
  } catch (error) {
    expect(error).toBeInstanceOf(QueueConsumerSettingsError);
    expect((error as Error).message).toContain('platform 99999');
    return (error as QueueConsumerSettingsError).problems;
  }
  throw new Error('expected the settings to be refused');
}

describe('visibilityTimeoutSeconds', () => {
  it('is six times the function timeout plus the batching window', () => {
    expect(visibilityTimeoutSeconds(VALID)).toBe(181);
    expect(
      visibilityTimeoutSeconds({ ...VALID, functionTimeoutSeconds: 900, maxBatchingWindowSeconds: 300 }),
    ).toBe(5700);
  });

  it('never falls below the AWS recommendation, whatever the settings', () => {
    for (const timeout of [1, 3, 30, 900]) {
      for (const window of [0, 1, 20, 300]) {
        const settings = { ...VALID, functionTimeoutSeconds: timeout, maxBatchingWindowSeconds: window };
        expect(visibilityTimeoutSeconds(settings)).toBeGreaterThanOrEqual(6 * timeout + window);
      }
    }
  });
});

describe('validateQueueConsumerSettings', () => {
  it('accepts settings within the AWS limits and returns them', () => {
    expect(validateQueueConsumerSettings(VALID)).toEqual(VALID);
    expect(validateQueueConsumerSettings({ ...VALID, batchSize: 10, maxBatchingWindowSeconds: 0 })).toEqual({
      ...VALID,
      batchSize: 10,
      maxBatchingWindowSeconds: 0,
    });
    expect(
      validateQueueConsumerSettings({
        batchSize: 10_000,
        maxBatchingWindowSeconds: 300,
        maxConcurrency: 1000,
        maxReceiveCount: 1000,
        functionTimeoutSeconds: 900,
      }).batchSize,
    ).toBe(10_000);
  });

  it('refuses a batch size above 10 without a batching window', () => {
    expect(problemsOf({ ...VALID, batchSize: 11, maxBatchingWindowSeconds: 0 })).toEqual([
      'maxBatchingWindowSeconds: a batchSize of 11 (above 10) needs maxBatchingWindowSeconds of at least 1',
    ]);
  });

  it.each([
    ['batchSize', 0, 'batchSize must be at least 1'],
    ['batchSize', 10_001, 'batchSize must be at most 10000'],
    ['batchSize', 2.5, 'batchSize must be a whole number'],
    ['maxBatchingWindowSeconds', 301, 'maxBatchingWindowSeconds must be at most 300'],
    ['maxBatchingWindowSeconds', -1, 'maxBatchingWindowSeconds must be at least 0'],
    ['maxConcurrency', 1, 'maxConcurrency must be at least 2'],
    ['maxConcurrency', 1001, 'maxConcurrency must be at most 1000'],
    ['maxReceiveCount', 0, 'maxReceiveCount must be at least 1'],
    ['maxReceiveCount', 1001, 'maxReceiveCount must be at most 1000'],
    ['functionTimeoutSeconds', 0, 'functionTimeoutSeconds must be at least 1'],
    ['functionTimeoutSeconds', 901, 'functionTimeoutSeconds must be at most 900'],
    ['batchSize', '10', 'batchSize must be a number'],
  ])('refuses %s = %j', (field, value, message) => {
    expect(problemsOf({ ...VALID, [field]: value })).toContain(message);
  });

  it('lists every problem at once', () => {
    const problems = problemsOf({ ...VALID, batchSize: 0, maxConcurrency: 0, maxReceiveCount: 0 });
    expect(problems).toHaveLength(3);
  });

  it('refuses a missing field and an unknown one', () => {
    const { maxReceiveCount: _, ...withoutReceives } = VALID;
    expect(problemsOf(withoutReceives)).toContain('maxReceiveCount must be a number');
    expect(problemsOf({ ...VALID, batchsize: 10 }).join()).toMatch(/batchsize/);
  });
});

describe('validateStreamConsumerSettings', () => {
  const STREAM = { batchSize: 100, maxBatchingWindowSeconds: 1, maxRetryAttempts: -1 };

  it('accepts Lambda’s bounds, -1 retries included', () => {
    expect(validateStreamConsumerSettings(STREAM)).toEqual(STREAM);
    expect(
      validateStreamConsumerSettings({
        batchSize: 10_000,
        maxBatchingWindowSeconds: 300,
        maxRetryAttempts: 10_000,
      }),
    ).toEqual({ batchSize: 10_000, maxBatchingWindowSeconds: 300, maxRetryAttempts: 10_000 });
  });

  it('refuses what Lambda refuses, naming the consumer and every problem', () => {
    expect(() =>
      validateStreamConsumerSettings(
        { batchSize: 0, maxBatchingWindowSeconds: 301, maxRetryAttempts: -2 },
        'release',
      ),
    ).toThrow(
      'invalid stream consumer settings for release: batchSize must be at least 1; maxBatchingWindowSeconds must be at most 300; maxRetryAttempts must be at least -1',
    );
  });
});

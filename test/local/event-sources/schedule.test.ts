import { setImmediate as nextTurn } from 'node:timers/promises';
import type { ScheduledEvent } from 'aws-lambda';
import { afterEach, describe, expect, it } from 'vitest';
import { type LocalSchedule, startSchedule } from '../../../local/event-sources/schedule.ts';

const schedules: LocalSchedule[] = [];
afterEach(async () => {
  await Promise.all(schedules.splice(0).map((schedule) => schedule.stop()));
});

function schedule(everyMs: number, invoke: (event: ScheduledEvent) => Promise<unknown>): LocalSchedule {
  const started = startSchedule({ name: 'export-files', everyMs, invoke });
  schedules.push(started);
  return started;
}

const HOUR = 3_600_000;

describe('local schedule', () => {
  it('runs now with a scheduled event and returns the result', async () => {
    const events: ScheduledEvent[] = [];
    const s = schedule(HOUR, async (event) => {
      events.push(event);
      return { exported: 3 };
    });
    await expect(s.runNow()).resolves.toEqual({ exported: 3 });
    expect(events).toEqual([
      {
        version: '0',
        id: expect.stringMatching(/^[0-9a-f-]{36}$/),
        'detail-type': 'Scheduled Event',
        source: 'aws.scheduler',
        account: '000000000000',
        time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/),
        region: 'eu-west-1',
        resources: ['arn:aws:scheduler:eu-west-1:000000000000:schedule/default/export-files'],
        detail: {},
      },
    ]);
  });

  it('never overlaps two invocations, whether run now or by the clock', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    let count = 0;
    let reached: () => void = () => {};
    const tenth = new Promise<void>((resolve) => {
      reached = resolve;
    });
    const s = schedule(1, async () => {
      inFlight += 1;
      maxInFlight = Math.max(maxInFlight, inFlight);
      for (let i = 0; i < 5; i += 1) await nextTurn();
      inFlight -= 1;
      count += 1;
      if (count === 10) reached();
    });
    await Promise.all([s.runNow(), s.runNow(), s.runNow()]);
    await tenth;
    expect(maxInFlight).toBe(1);
  });

  it('passes the error of an invocation run now on', async () => {
    const s = schedule(HOUR, async () => {
      throw new Error('export failed');
    });
    await expect(s.runNow()).rejects.toThrow('export failed');
    await s.whenIdle();
  });

  it('refuses to run once stopped', async () => {
    const s = schedule(HOUR, async () => null);
    const idle = s.runNow().then(() => s.whenIdle());
    await idle;
    await s.stop();
    await expect(s.runNow()).rejects.toThrow(/stopped/);
    await expect(s.whenIdle()).rejects.toThrow(/stopped/);
  });

  it('refuses a period setInterval cannot keep', () => {
    for (const everyMs of [-1, 1.5, 2 ** 31]) {
      expect(() => startSchedule({ name: 'x', everyMs, invoke: async () => null })).toThrow(/everyMs/);
    }
  });

  it('runs only on request with a period of 0, with the input it was given', async () => {
    const events: unknown[] = [];
    const s = startSchedule({
      name: 'on-request',
      everyMs: 0,
      input: { platformId: 99998 },
      invoke: async (event) => {
        events.push(event);
      },
    });
    schedules.push(s);
    await s.runNow();
    expect(events).toEqual([{ platformId: 99998 }]);
  });
});

import { describe, expect, it } from 'vitest';
import { type Figure, renderMarkdown, renderText, type Section, targetMet } from '../../bench/registry.ts';

const machine = {
  date: '2026-11-30T19:00:00.000Z',
  node: 'v24.21.0',
  cpuModel: 'Example CPU | 2 GHz',
  cores: 2,
  memoryBytes: 8 * 1024 ** 3,
  platform: 'linux 6.0',
  loadStart: '1.00 1.00 1.00',
  loadEnd: '2.00 1.50 1.00',
  seconds: 42,
  command: 'npm run bench',
};

const importFigure: Figure = {
  name: '4  import() userSync bundle',
  value: 90,
  unit: 'ms',
  baseline: 60,
  ratio: 1.5,
  spread: [1.4, 1.6],
  target: { on: 'ratio', atMost: 1.3 },
};
const costFigure: Figure = {
  name: '6  membership',
  value: 0.83,
  unit: '$/M memberships',
  target: { on: 'value', atMost: 1 },
};
const sections: Section[] = [
  { id: 'cold', title: '4. cold start', figures: [importFigure], notes: ['bundle by package: zod 14 %'] },
  { id: 'cost', title: '6. cost', figures: [costFigure, { name: 'no target', value: 3, unit: 'calls' }] },
];

describe('bench registry', () => {
  it('judges a target on the ratio or on the value', () => {
    expect(targetMet(importFigure)).toBe(false);
    expect(targetMet({ ...importFigure, ratio: 1.3 })).toBe(true);
    expect(targetMet(costFigure)).toBe(true);
    expect(targetMet({ ...costFigure, value: 1.01 })).toBe(false);
    expect(targetMet({ ...importFigure, target: { on: 'ratio', atLeast: 0.8 }, ratio: 0.79 })).toBe(false);
    expect(targetMet({ ...importFigure, ratio: undefined })).toBe(false);
    expect(targetMet({ name: 'x', value: 1, unit: 'calls' })).toBeUndefined();
  });

  it('prints every section under one header', () => {
    const text = renderText(sections);
    expect(text.split('\n')[0]).toMatch(/^benchmark\s+value\s+baseline\s+ratio\s+q1-q3\s+target\s+met$/);
    expect(text).toContain('4. cold start');
    expect(text).toMatch(
      /4 {2}import\(\) userSync bundle\s+90\.0 ms\s+60\.0 ms\s+1\.50x\s+1\.40x-1\.60x\s+<= 1\.30x\s+NO/,
    );
    expect(text).toMatch(
      /6 {2}membership\s+\$0\.8300\/M memberships.*value <= \$1\.000\/M memberships\s+yes/,
    );
  });

  it('writes the machine, the date, every figure and names the targets missed', () => {
    const markdown = renderMarkdown(machine, sections);
    // Tables are padded as the formatter pads them; compare with runs of spaces collapsed.
    const collapsed = markdown.replace(/ +/g, ' ');
    expect(markdown).toContain(
      '| benchmark                   | value   | baseline | ratio | q1-q3       | target   | met |',
    );
    expect(markdown).toContain('2026-11-30T19:00:00.000Z');
    expect(collapsed).toContain('| CPU | Example CPU \\| 2 GHz, 2 core(s) |');
    expect(collapsed).toContain('| memory | 8.0 GiB |');
    expect(collapsed).toContain('| Node.js | v24.21.0 |');
    expect(markdown).toContain('Targets **not met** in this run: `4  import() userSync bundle`');
    expect(collapsed).toContain(
      '| 4 import() userSync bundle | 90.0 ms | 60.0 ms | 1.50x | 1.40x-1.60x | <= 1.30x | NO |',
    );
    expect(markdown).toContain('- bundle by package: zod 14 %');
    expect(collapsed).toContain('| no target | 3 calls |');
  });
});

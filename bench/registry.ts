import { formatBytes, formatNs, formatRatio } from './runner.ts';

/**
 * What every benchmark module hands to `npm run bench`: figures (name, value, unit, baseline,
 * ratio, target) that bench/run.ts prints as one table and writes to docs/benchmarks.md. A module
 * joins the run by being listed in MODULES there; it measures, the registry only formats.
 */

/** A bound on the ratio (or on the value itself, when the figure has no baseline). */
export interface Target {
  readonly on: 'ratio' | 'value';
  readonly atMost?: number;
  readonly atLeast?: number;
}

export interface Figure {
  readonly name: string;
  readonly value: number;
  /** `ns`, `ms`, `B`, `req/s`, `$/M syncs`, `calls`, ...: chooses the formatting. */
  readonly unit: string;
  /** The baseline measured in the same run, in the same unit. */
  readonly baseline?: number;
  /** Subject / baseline; for interleaved rounds the median of the per-round ratios. */
  readonly ratio?: number;
  /** Interquartile range of the per-round ratios: how steady the run was. */
  readonly spread?: readonly [number, number];
  readonly target?: Target;
  /** Short qualifier shown after the name in notes (what the baseline is, a caveat). */
  readonly note?: string;
}

export interface Section {
  /** Stable key for `--only` (domain, http, cold, ...). */
  readonly id: string;
  readonly title: string;
  readonly figures: readonly Figure[];
  /** Lines printed under the table (breakdowns, caveats). */
  readonly notes?: readonly string[];
}

export interface RunContext {
  /** `--quick`: fewer rounds and requests, a smoke test that CI runs (figures are rough). */
  readonly quick: boolean;
  /** A full run that writes docs/benchmarks.md: modules may refresh their generated docs too. */
  readonly writeDocs: boolean;
}

export interface BenchModule {
  readonly id: string;
  /** One line for `--help` and the document. */
  readonly describe: string;
  run(context: RunContext): Promise<Section>;
}

/** True, false, or undefined when the figure has no target. */
export function targetMet(figure: Figure): boolean | undefined {
  const { target } = figure;
  if (!target) return undefined;
  const measured = target.on === 'ratio' ? figure.ratio : figure.value;
  if (measured === undefined || !Number.isFinite(measured)) return false;
  if (target.atMost !== undefined && measured > target.atMost) return false;
  if (target.atLeast !== undefined && measured < target.atLeast) return false;
  return true;
}

export function formatValue(value: number, unit: string): string {
  if (!Number.isFinite(value)) return 'n/a';
  if (unit === 'ns') return formatNs(value);
  if (unit === 'B') return `${formatBytes(value)}`;
  if (unit === 'ms') return `${value.toFixed(value >= 100 ? 0 : 1)} ms`;
  if (unit === 'x') return formatRatio(value);
  if (unit.startsWith('$')) return `$${value.toFixed(value >= 100 ? 0 : value >= 1 ? 3 : 4)}${unit.slice(1)}`;
  const digits = Number.isInteger(value) ? 0 : Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 1 ? 2 : 3;
  return `${value.toFixed(digits)} ${unit}`;
}

export function formatTarget(target: Target | undefined, unit: string): string {
  if (!target) return '';
  const show = (bound: number) => (target.on === 'ratio' ? formatRatio(bound) : formatValue(bound, unit));
  const parts: string[] = [];
  if (target.atLeast !== undefined) parts.push(`>= ${show(target.atLeast)}`);
  if (target.atMost !== undefined) parts.push(`<= ${show(target.atMost)}`);
  return `${target.on === 'value' ? 'value ' : ''}${parts.join(', ')}`;
}

const COLUMNS = ['benchmark', 'value', 'baseline', 'ratio', 'q1-q3', 'target', 'met'] as const;

function cells(figure: Figure): string[] {
  const met = targetMet(figure);
  return [
    figure.name,
    formatValue(figure.value, figure.unit),
    figure.baseline === undefined ? '' : formatValue(figure.baseline, figure.unit),
    figure.ratio === undefined ? '' : formatRatio(figure.ratio),
    figure.spread ? `${formatRatio(figure.spread[0])}-${formatRatio(figure.spread[1])}` : '',
    formatTarget(figure.target, figure.unit),
    met === undefined ? '' : met ? 'yes' : 'NO',
  ];
}

/** The console table: every section under one header, columns aligned across sections. */
export function renderText(sections: readonly Section[]): string {
  const rows = sections.flatMap((section) => section.figures.map(cells));
  const widths = COLUMNS.map((column, index) =>
    Math.max(column.length, ...rows.map((row) => row[index]?.length ?? 0)),
  );
  const line = (row: readonly string[]) =>
    row
      .map((cell, index) =>
        index === 0 || index >= 4 ? cell.padEnd(widths[index]!) : cell.padStart(widths[index]!),
      )
      .join('  ')
      .trimEnd();
  const out = [line(COLUMNS)];
  for (const section of sections) {
    out.push('', `${section.title}`);
    for (const figure of section.figures) out.push(line(cells(figure)));
    for (const note of section.notes ?? []) out.push(`    ${note}`);
  }
  return out.join('\n');
}

const escapeCell = (text: string) => text.trim().replaceAll('|', '\\|');

/** A markdown table laid out as the project's formatter (biome) lays it out: padded columns. */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const escaped = [header, ...rows].map((row) => row.map(escapeCell));
  const widths = header.map((_, index) => Math.max(3, ...escaped.map((row) => (row[index] ?? '').length)));
  const line = (row: readonly string[]) =>
    `| ${widths.map((width, index) => (row[index] ?? '').padEnd(width)).join(' | ')} |`;
  const [head = [], ...body] = escaped;
  return [line(head), `| ${widths.map((width) => '-'.repeat(width)).join(' | ')} |`, ...body.map(line)];
}

export interface Machine {
  readonly date: string;
  readonly node: string;
  readonly cpuModel: string;
  readonly cores: number;
  readonly memoryBytes: number;
  readonly platform: string;
  readonly loadStart: string;
  readonly loadEnd: string;
  readonly seconds: number;
  readonly command: string;
}

/** docs/benchmarks.md: the machine, the date, every section's figures and notes, nothing else. */
export function renderMarkdown(machine: Machine, sections: readonly Section[]): string {
  const out = [
    '# Benchmark results',
    '',
    `<!-- Written by \`${machine.command}\` (bench/run.ts); do not edit by hand: rerun it. -->`,
    '',
    `Generated by \`${machine.command}\` on ${machine.date}. How each figure is measured:`,
    '[performance.md](performance.md); the cost model: [cost-model.md](cost-model.md); the limits',
    'at 10x and 1000x: [scaling.md](scaling.md).',
    '',
    ...markdownTable(
      ['machine', ''],
      [
        ['CPU', `${machine.cpuModel}, ${machine.cores} core(s)`],
        ['memory', `${(machine.memoryBytes / 1024 ** 3).toFixed(1)} GiB`],
        ['OS', machine.platform],
        ['Node.js', machine.node],
        ['load average', `${machine.loadStart} at the start, ${machine.loadEnd} at the end`],
        ['duration', `${machine.seconds.toFixed(0)} s`],
      ],
    ),
  ];
  const missed = sections.flatMap((section) =>
    section.figures.filter((figure) => targetMet(figure) === false).map((figure) => figure.name),
  );
  out.push(
    '',
    missed.length === 0
      ? 'Every figure with a target meets it.'
      : `Targets **not met** in this run: ${missed.map((name) => `\`${name}\``).join(', ')} (see the notes of each section).`,
  );
  for (const section of sections) {
    out.push('', `## ${section.title}`, '', ...markdownTable(COLUMNS, section.figures.map(cells)));
    if (section.notes?.length) {
      out.push('');
      for (const note of section.notes) out.push(`- ${note}`);
    }
  }
  return `${out.join('\n')}\n`;
}

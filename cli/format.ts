/** Plain-text output helpers for the `dmp` CLI. */

/** Left-aligned columns separated by two spaces; control characters in cells are escaped. */
export function renderTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const clean = (cell: string) =>
    Array.from(cell, (char) => {
      const code = char.charCodeAt(0);
      return code < 0x20 || code === 0x7f ? `\\x${code.toString(16).padStart(2, '0')}` : char;
    }).join('');
  const all = [header, ...rows].map((row) => row.map(clean));
  const widths = header.map((_, column) => Math.max(...all.map((row) => (row[column] ?? '').length)));
  return all
    .map((row) =>
      row
        .map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** A one-line progress bar for stderr (`\r`-rewritten): `[####....] 40/100 users`. */
export function progressBar(done: number, total: number, unit: string): string {
  const width = 30;
  const filled = Math.min(width, Math.round((done / Math.max(total, 1)) * width));
  return `\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${unit}`;
}

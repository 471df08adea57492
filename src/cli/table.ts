/** Plain-text tables for a terminal. Values come from the database, so they are made safe to print. */
import { printable } from '../printable';

function width(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

function truncate(text: string, max: number): string {
  const chars = [...text];
  return chars.length <= max ? text : `${chars.slice(0, max - 1).join('')}…`;
}

export interface Column {
  header: string;
  /** Longer values are cut with "…" (the JSON output has them whole). */
  maxWidth?: number;
  align?: 'left' | 'right';
}

/**
 * Columns separated by two spaces. The last column is never padded or cut, so a long lock id there
 * stays whole (an operator must be able to copy it) without pushing the other columns out of line.
 */
export function renderTable(columns: readonly Column[], rows: readonly string[][]): string {
  const cells = rows.map((row) =>
    row.map((value, i) => {
      const safe = printable(value);
      const max = columns[i]?.maxWidth;
      return max && i < columns.length - 1 ? truncate(safe, max) : safe;
    }),
  );
  const widths = columns.map((c, i) => Math.max(width(c.header), ...cells.map((row) => width(row[i] ?? ''))));
  const line = (values: readonly string[]) =>
    values
      .map((value, i) => {
        if (i === values.length - 1) return value;
        const pad = ' '.repeat(widths[i]! - width(value));
        return columns[i]?.align === 'right' ? pad + value : value + pad;
      })
      .join('  ');
  return [line(columns.map((c) => c.header)), ...cells.map(line)].join('\n') + '\n';
}

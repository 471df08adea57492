// @ts-check
'use strict';
/** Small statistics and formatting helpers shared by every bench section. */

/** @param {readonly number[]} values */
function sorted(values) {
  return [...values].sort((a, b) => a - b);
}

/**
 * Nearest-rank percentile (p in 0..100); NaN for an empty array.
 * @param {readonly number[]} values
 * @param {number} p
 */
function percentile(values, p) {
  if (values.length === 0) return NaN;
  const s = sorted(values);
  const rank = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[rank] ?? NaN;
}

/** @param {readonly number[]} values */
function median(values) {
  if (values.length === 0) return NaN;
  const s = sorted(values);
  const mid = s.length >> 1;
  const at = (/** @type {number} */ i) => s[i] ?? NaN;
  return s.length % 2 ? at(mid) : (at(mid - 1) + at(mid)) / 2;
}

/**
 * min / median / max of repeated runs: the shape every figure in results.md takes.
 * @param {readonly number[]} values
 * @returns {import('../types').Spread}
 */
function spread(values) {
  if (values.length === 0) return { min: NaN, median: NaN, max: NaN, n: 0 };
  const s = sorted(values);
  return { min: s[0] ?? NaN, median: median(s), max: s[s.length - 1] ?? NaN, n: s.length };
}

/**
 * Formats a number with a sensible number of digits for a table cell.
 * @param {number | null | undefined} value
 * @param {number} [digits]
 */
function fmt(value, digits) {
  if (value === null || value === undefined || Number.isNaN(value)) return '–';
  if (!Number.isFinite(value)) return '∞';
  if (digits !== undefined) return value.toFixed(digits);
  const abs = Math.abs(value);
  if (abs >= 1000) return Math.round(value).toLocaleString('en-US');
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

/**
 * @param {import('../types').Spread} s
 * @param {number} [digits]
 */
function fmtSpread(s, digits) {
  return `${fmt(s.min, digits)} / ${fmt(s.median, digits)} / ${fmt(s.max, digits)}`;
}

/** @param {number | null | undefined} value */
function fmtRatio(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return '–';
  return `${value.toFixed(2)}×`;
}

/** @param {number | null | undefined} bytes */
function fmtBytes(bytes) {
  if (bytes === null || bytes === undefined || Number.isNaN(bytes)) return '–';
  const sign = bytes < 0 ? '-' : '';
  const abs = Math.abs(bytes);
  if (abs >= 1024 * 1024) return `${sign}${(abs / 1024 / 1024).toFixed(1)} MiB`;
  if (abs >= 1024) return `${sign}${(abs / 1024).toFixed(1)} KiB`;
  return `${sign}${abs} B`;
}

/**
 * A Markdown table (also readable as plain text on a terminal).
 * @param {readonly string[]} headers
 * @param {readonly (readonly unknown[])[]} rows
 */
function markdownTable(headers, rows) {
  const widths = headers.map((h, i) => Math.max(String(h).length, ...rows.map((r) => String(r[i] ?? '').length)));
  const line = (/** @type {readonly unknown[]} */ cells) => `| ${cells.map((c, i) => String(c ?? '').padEnd(widths[i] ?? 0)).join(' | ')} |`;
  return [line(headers), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...rows.map(line)].join('\n');
}

module.exports = { percentile, median, spread, fmt, fmtSpread, fmtRatio, fmtBytes, markdownTable };

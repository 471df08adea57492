/**
 * How the dashboard's lock page, its JSON route and the CLI's `history` present a lock's history: the
 * entries as rows, the summary figures, and the chart of hold durations, which is computed here as plain
 * coordinates so the template only writes SVG elements (no chart library, no script, no inline style:
 * the page's Content-Security-Policy allows neither).
 */
import type { LockRow } from '../dialects/types';
import { HISTORY_OUTCOMES, summarizeHistory, type DbMutexHistoryEntry, type DbMutexHistoryOutcome, type DbMutexHistorySummary } from '../history';
import { formatDuration, formatUtc, formatUtcBare, lockJson, lockView } from './format';
import { lockHistoryApiUrl, lockPageUrl, query } from './links';
import { layoutData, type PageModel } from './view-model';

/**
 * A hold duration, precise where jobs usually are: "240 ms", "3.4 s", then formatDuration's "2 min 5 s".
 * Sub-second holds are common (a lock around one query) and would all read "< 1 s" otherwise.
 */
export function formatHeld(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '0 ms';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 10_000) return `${(Math.floor(ms / 100) / 10).toFixed(1)} s`;
  return formatDuration(ms);
}

/** How an acquisition ended beyond its outcome, as one line: the detail and, for an operator's action, who. */
export function describeEnding(entry: Pick<DbMutexHistoryEntry, 'detail' | 'operator'>): string {
  if (entry.operator === null) return entry.detail ?? '';
  return entry.detail ? `${entry.detail} (by ${entry.operator})` : `by ${entry.operator}`;
}

/** A history entry in the JSON route and the CLI's --json: ISO timestamps, the rest as stored. */
export function historyEntryJson(entry: DbMutexHistoryEntry) {
  return {
    lockId: entry.lockId,
    holder: entry.holder,
    hostname: entry.hostname,
    pid: entry.pid,
    fencingToken: entry.fencingToken,
    acquiredAt: entry.acquiredAt.toISOString(),
    endedAt: entry.endedAt.toISOString(),
    heldMs: entry.heldMs,
    outcome: entry.outcome,
    detail: entry.detail,
    operator: entry.operator,
  };
}

/** The JSON route's answer, and the CLI's `history --json`: the same object in both. */
export function lockHistoryJson(lockId: string, current: LockRow | null, entries: readonly DbMutexHistoryEntry[]) {
  return { lockId, current: current ? lockJson(current) : null, summary: summarizeHistory(entries), entries: entries.map(historyEntryJson) };
}

/** A history entry prepared for the HTML table. */
export function historyEntryView(entry: DbMutexHistoryEntry) {
  return {
    holder: entry.holder,
    hostname: entry.hostname,
    pid: entry.pid,
    fencingToken: entry.fencingToken,
    acquiredText: formatUtcBare(entry.acquiredAt),
    acquiredIso: entry.acquiredAt.toISOString(),
    endedText: formatUtcBare(entry.endedAt),
    endedIso: entry.endedAt.toISOString(),
    held: formatHeld(entry.heldMs),
    outcome: entry.outcome,
    ending: describeEnding(entry),
  };
}

/** The summary figures as display strings, outcomes in their fixed order (a missing one reads 0). */
export function historySummaryView(summary: DbMutexHistorySummary) {
  return {
    count: summary.count,
    byOutcome: HISTORY_OUTCOMES.map((outcome) => ({ outcome, count: summary.byOutcome[outcome] })),
    p50: summary.heldMs ? formatHeld(summary.heldMs.p50) : '—',
    p95: summary.heldMs ? formatHeld(summary.heldMs.p95) : '—',
    max: summary.heldMs ? formatHeld(summary.heldMs.max) : '—',
  };
}

// ---- the chart of hold durations --------------------------------------------------------------

const CHART = { width: 1000, height: 220, left: 64, right: 16, top: 12, bottom: 30 } as const;

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
/** Gridline spacings the y axis may use, each a duration that formats exactly ("15 s", "2 h", "250 ms" is not one). */
const Y_STEPS = [
  1, 2, 5, 10, 20, 50, 100, 200, 500,
  SECOND, 2 * SECOND, 5 * SECOND, 10 * SECOND, 15 * SECOND, 30 * SECOND,
  MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE,
  HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR,
  DAY, 2 * DAY, 7 * DAY,
];
/** At most this many gridlines above zero. */
const Y_TICKS = 4;

export interface HoldChart {
  width: number;
  height: number;
  /** The plot area's edges, in SVG units. */
  left: number;
  right: number;
  top: number;
  bottom: number;
  yTicks: { y: number; label: string }[];
  /** The first and last end times under the x axis (one label when all ended at once). */
  xLabels: { x: number; label: string; anchor: 'start' | 'end' | 'middle' }[];
  /** One point per entry, oldest first; `title` is what a pointer over it shows. */
  points: { x: number; y: number; outcome: DbMutexHistoryOutcome; title: string }[];
  /** The median hold's height, drawn as a dashed line. */
  medianY: number | null;
  /** What the chart shows, for screen readers (the table below has every value). */
  description: string;
}

const round = (n: number) => Math.round(n * 10) / 10;
const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

function tickLabel(ms: number): string {
  if (ms === 0) return '0';
  return ms < SECOND ? `${ms} ms` : formatDuration(ms);
}

/** The chart of `entries` (newest first, as history() returns them); null when there is nothing to draw. */
export function holdChart(entries: readonly DbMutexHistoryEntry[], summary: DbMutexHistorySummary): HoldChart | null {
  if (entries.length === 0 || summary.heldMs === null) return null;
  const { width, height } = CHART;
  const left = CHART.left;
  const right = width - CHART.right;
  const top = CHART.top;
  const bottom = height - CHART.bottom;
  const oldestFirst = [...entries].reverse();

  const maxHeld = Math.max(summary.heldMs.max, 1);
  const step = Y_STEPS.find((s) => s * Y_TICKS >= maxHeld) ?? Math.ceil(maxHeld / Y_TICKS / DAY) * DAY;
  const yMax = step * Math.max(1, Math.ceil(maxHeld / step));
  const yOf = (ms: number) => round(bottom - (Math.min(ms, yMax) / yMax) * (bottom - top));
  const yTicks: HoldChart['yTicks'] = [];
  for (let v = 0; v <= yMax; v += step) yTicks.push({ y: yOf(v), label: tickLabel(v) });

  const first = oldestFirst[0]!.endedAt.getTime();
  const last = oldestFirst[oldestFirst.length - 1]!.endedAt.getTime();
  const span = last - first;
  // Points sit inside the plot by a margin, so the first and last dots are not cut by its edges.
  const inset = 8;
  const xOf = (t: number) => (span === 0 ? round((left + right) / 2) : round(left + inset + ((t - first) / span) * (right - left - 2 * inset)));
  // Within one UTC day the time of day says enough; across midnight the date matters.
  const oneDay = formatUtcBare(new Date(first)).slice(0, 10) === formatUtcBare(new Date(last)).slice(0, 10);
  const timeText = (t: number) => `${oneDay ? formatUtcBare(new Date(t)).slice(11) : formatUtcBare(new Date(t)).slice(5, 16)} UTC`;
  const xLabels: HoldChart['xLabels'] =
    span === 0
      ? [{ x: xOf(first), label: timeText(first), anchor: 'middle' }]
      : [
          { x: xOf(first), label: timeText(first), anchor: 'start' },
          { x: xOf(first + span / 2), label: timeText(first + span / 2), anchor: 'middle' },
          { x: xOf(last), label: timeText(last), anchor: 'end' },
        ];

  return {
    width,
    height,
    left,
    right,
    top,
    bottom,
    yTicks,
    xLabels,
    points: oldestFirst.map((e) => ({
      x: xOf(e.endedAt.getTime()),
      y: yOf(e.heldMs),
      outcome: e.outcome,
      title: `${formatUtc(e.endedAt)}: ${e.outcome}, held ${formatHeld(e.heldMs)}, token ${e.fencingToken}, ${e.holder}`,
    })),
    medianY: yOf(summary.heldMs.p50),
    description:
      `Hold durations of the last ${plural(entries.length, 'acquisition')}, oldest on the left: ` +
      `median ${formatHeld(summary.heldMs.p50)}, longest ${formatHeld(summary.heldMs.max)}.`,
  };
}

// ---- the page ---------------------------------------------------------------------------------

export interface LockPageInput {
  base: string;
  lockId: string;
  /** The lock as it is now, or null when it is free. */
  row: LockRow | null;
  /** Newest first. */
  entries: readonly DbMutexHistoryEntry[];
  /** How many entries were asked for: when all came back, there may be older ones. */
  limit: number;
  /** False when the DbMutex keeps no history (`history: false`). */
  historyEnabled: boolean;
  operator: string;
  readOnly: boolean;
}

/** One lock's page: who holds it now (with the Release button), then how its past acquisitions went. */
export function lockPage(input: LockPageInput): PageModel {
  const { base, lockId, row, entries } = input;
  const summary = summarizeHistory(entries);
  return {
    layout: layoutData(base, `Lock ${lockId}`),
    data: {
      lockId,
      operator: input.operator,
      readOnly: input.readOnly,
      historyEnabled: input.historyEnabled,
      dbNow: row ? formatUtc(row.dbNow) : null,
      current: row
        ? {
            ...lockView(row),
            releaseUrl: `${base}/confirm-release?${query({ lockId: row.lockId, fencingToken: String(row.fencingToken) })}`,
          }
        : null,
      summary: historySummaryView(summary),
      chart: holdChart(entries, summary),
      entries: entries.map(historyEntryView),
      mayHaveMore: entries.length >= input.limit,
      links: {
        locks: `${base}/`,
        json: lockHistoryApiUrl(base, lockId),
        self: lockPageUrl(base, lockId),
      },
    },
  };
}

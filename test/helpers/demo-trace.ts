/**
 * Reading what test/fixtures/demo/trace.js recorded in the demo's processes: each critical section as
 * an interval of this machine's clock, per lock id, and the acquisitions that were refused.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

export const TRACER = path.resolve(__dirname, '../fixtures/demo/trace.js');

interface TraceEvent {
  who: string;
  pid: number;
  t: number;
  event: 'start' | 'end' | 'lost' | 'refused';
  lockId: string;
  token?: number;
  reason?: string;
  code?: string;
}

export interface Section {
  who: string;
  pid: number;
  lockId: string;
  token: number;
  start: number;
  /** Infinity while the section still runs. */
  end: number;
  /** Why its lock was lost while it ran, if it was. */
  lostReason: string | null;
}

export interface Refusal {
  who: string;
  lockId: string;
  t: number;
  code: string | undefined;
}

export interface Trace {
  sections: Section[];
  refusals: Refusal[];
}

export function readTrace(file: string): Trace {
  const events = existsSync(file)
    ? readFileSync(file, 'utf8')
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as TraceEvent)
    : [];
  const key = (e: { pid: number; lockId: string; token?: number }) => `${e.pid}/${e.lockId}/${e.token}`;
  const sections = new Map<string, Section>();
  const refusals: Refusal[] = [];
  for (const e of events) {
    if (e.event === 'start') {
      sections.set(key(e), { who: e.who, pid: e.pid, lockId: e.lockId, token: e.token!, start: e.t, end: Infinity, lostReason: null });
    } else if (e.event === 'refused') {
      refusals.push({ who: e.who, lockId: e.lockId, t: e.t, code: e.code });
    } else {
      const section = sections.get(key(e));
      if (!section) throw new Error(`trace: ${e.event} of a section that never started: ${JSON.stringify(e)}`);
      if (e.event === 'end') section.end = Math.min(section.end, e.t);
      else section.lostReason ??= e.reason ?? 'lost';
    }
  }
  return { sections: [...sections.values()], refusals };
}

/** Pairs of sections of the same lock id whose intervals overlap (touching ends do not count). */
export function overlaps(sections: Section[]): [Section, Section][] {
  const found: [Section, Section][] = [];
  const byLock = new Map<string, Section[]>();
  for (const s of sections) byLock.set(s.lockId, [...(byLock.get(s.lockId) ?? []), s]);
  for (const list of byLock.values()) {
    list.sort((a, b) => a.start - b.start);
    for (let i = 0; i < list.length; i++) {
      for (let j = i + 1; j < list.length && list[j]!.start < list[i]!.end; j++) found.push([list[i]!, list[j]!]);
    }
  }
  return found;
}

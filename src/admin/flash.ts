/**
 * The result of an action, carried to the page the browser is redirected to (POST → 303 → GET, so a
 * reload never repeats the action). Signed, so only this router can make the page report a result.
 */
import type { ForceReleaseResult } from '../db-mutex';
import { formatDuration } from './format';
import type { Signer } from './csrf';

export type FlashResult =
  | { kind: 'released'; lockId: string; fencingToken: number; holder: string; ageSeconds: number }
  | { kind: 'token-mismatch'; lockId: string; fencingToken: number; currentFencingToken: number }
  | { kind: 'not-found'; lockId: string; fencingToken: number }
  | { kind: 'stale-released'; count: number; lockIds: string[] };

export interface FlashView {
  tone: 'success' | 'warning' | 'info';
  title: string;
  text: string;
}

const MAX_LISTED = 5;

export function encodeFlash(signer: Signer, result: FlashResult): string {
  const data = Buffer.from(JSON.stringify(result)).toString('base64url');
  return `${data}.${signer.sign('flash', data)}`;
}

/** The verified result, or null for anything forged, truncated or malformed (then simply not shown). */
export function decodeFlash(signer: Signer, raw: string | undefined): FlashResult | null {
  if (!raw || raw.length > 4096) return null;
  const dot = raw.indexOf('.');
  if (dot < 0) return null;
  const data = raw.slice(0, dot);
  if (!signer.verify('flash', data, raw.slice(dot + 1))) return null;
  try {
    return JSON.parse(Buffer.from(data, 'base64url').toString('utf8')) as FlashResult;
  } catch {
    return null;
  }
}

export function flashView(result: FlashResult): FlashView {
  switch (result.kind) {
    case 'released':
      return {
        tone: 'success',
        title: `Released “${result.lockId}” (fencing token ${result.fencingToken}).`,
        text: `It had been held for ${formatDuration(result.ageSeconds * 1000)} by ${result.holder}. ` +
          'The holder’s signal is aborted; the release is in the audit trail below.',
      };
    case 'token-mismatch':
      return {
        tone: 'warning',
        title: `Nothing released: “${result.lockId}” was re-acquired meanwhile.`,
        text: `You confirmed fencing token ${result.fencingToken}; the lock is now held with token ` +
          `${result.currentFencingToken} by a new acquisition. Check the table before trying again.`,
      };
    case 'not-found':
      return {
        tone: 'info',
        title: `Nothing released: “${result.lockId}” is no longer held.`,
        text: `The acquisition with fencing token ${result.fencingToken} ended before the release (released, or taken over after expiry).`,
      };
    case 'stale-released': {
      if (result.count === 0) return { tone: 'info', title: 'No stale locks to release.', text: 'Every lock was active at the time of the action.' };
      const listed = result.lockIds.slice(0, MAX_LISTED).map((id) => `“${id}”`).join(', ');
      const more = result.count > MAX_LISTED ? ` and ${result.count - MAX_LISTED} more` : '';
      return {
        tone: 'success',
        title: `Released ${result.count} stale lock${result.count === 1 ? '' : 's'}.`,
        text: `${listed}${more}. Each release is in the audit trail below.`,
      };
    }
  }
}

/** Keeps the flash small: a bulk release lists only the first few ids. */
export function staleFlash(lockIds: string[]): FlashResult {
  return { kind: 'stale-released', count: lockIds.length, lockIds: lockIds.slice(0, MAX_LISTED) };
}

/** What the page reports after the release of one acquisition (`lockId` with `fencingToken`). */
export function releaseFlash(lockId: string, fencingToken: number, result: ForceReleaseResult): FlashResult {
  if (result.status === 'released') {
    const e = result.event;
    return { kind: 'released', lockId, fencingToken, holder: `${e.holder} (${e.hostname}:${e.pid})`, ageSeconds: e.ageSeconds };
  }
  if (result.status === 'token-mismatch') return { kind: 'token-mismatch', lockId, fencingToken, currentFencingToken: result.currentFencingToken };
  return { kind: 'not-found', lockId, fencingToken };
}

/**
 * The URLs the dashboard links and redirects to. Built from the router's mount path and a small view
 * state (filter, stale-only, auto-refresh) that every page carries along, so an operator returns from a
 * confirmation to the same view.
 */
import type { Request } from 'express';
import { parseFilter, parseRefresh, parseStale, single, type RefreshSeconds } from './input';

/** The state of the lock table view that links and forms carry from page to page. */
export interface ViewState {
  filter: string | null;
  staleOnly: boolean;
  refresh: RefreshSeconds;
}

/** The router's mount path, safe to put in links and redirects (never `//host`, which would leave the site). */
export function baseOf(req: Request): string {
  return req.baseUrl ? `/${req.baseUrl.replace(/^\/+/, '').replace(/\/+$/, '')}`.replace(/^\/$/, '') : '';
}

export function readViewState(source: URLSearchParams | unknown): ViewState {
  return {
    filter: parseFilter(single(source, 'filter')),
    staleOnly: parseStale(single(source, 'stale')),
    refresh: parseRefresh(single(source, 'refresh')),
  };
}

export function viewParams(view: ViewState): Record<string, string> {
  const params: Record<string, string> = {};
  if (view.filter !== null) params.filter = view.filter;
  if (view.staleOnly) params.stale = '1';
  if (view.refresh !== 0) params.refresh = String(view.refresh);
  return params;
}

/** Like encodeURIComponent, and also escapes the characters it leaves that mean something in HTML or a refresh header. */
function encode(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

export function query(params: Record<string, string>): string {
  return Object.entries(params)
    .map(([k, v]) => `${encode(k)}=${encode(v)}`)
    .join('&');
}

export function dashboardUrl(base: string, view: ViewState & { after?: string | null }, flash?: string): string {
  const params = viewParams(view);
  if (view.after) params.after = view.after;
  if (flash) params.flash = flash;
  const qs = query(params);
  return `${base}/${qs ? `?${qs}` : ''}`;
}

/** The dashboard page of one lock (its current holder and history); every character of the id but plain ones is %-encoded. */
export function lockPageUrl(base: string, lockId: string): string {
  return `${base}/locks/${encode(lockId)}`;
}

/** The JSON of one lock's history (see LOCK_HISTORY_PATH for why the id's own slashes are encoded). */
export function lockHistoryApiUrl(base: string, lockId: string): string {
  return `${base}/api/locks/${encode(lockId)}/history`;
}

/**
 * What each page template is given: the data the route read from the database, shaped for display
 * (formatted times, links that keep the current view). Pure functions, no request and no database,
 * so a page's content can be read here in one place.
 */
import type { EventRow, LockRow } from '../dialects/types';
import { MAX_REASON_LENGTH } from '../limits';
import { encodeCursor, type PageCursor } from './cursor';
import { flashView, type FlashResult } from './flash';
import { eventView, formatUtc, lockView } from './format';
import type { AdminHttpError } from './http-error';
import { REFRESH_CHOICES } from './input';
import { dashboardUrl, lockPageUrl, query, viewParams, type ViewState } from './links';
import { assetUrls, type LayoutData } from './render';

export interface PageModel {
  layout: LayoutData;
  data: Record<string, unknown>;
}

/** The hidden CSRF field a confirmation form posts back. */
export interface CsrfField {
  field: string;
  token: string;
}

export function layoutData(base: string, title: string, refreshSeconds = 0, refreshUrl = ''): LayoutData {
  return { title: `${title} · sequelize-db-mutex`, base, assets: assetUrls(base), refreshSeconds, refreshUrl };
}

export interface DashboardInput {
  base: string;
  view: ViewState;
  /** The `after` parameter of this page as given, or null on the first page. */
  after: string | null;
  cursor: PageCursor | null;
  page: LockRow[];
  next: PageCursor | null;
  counts: { total: number; stale: number; active: number };
  events: EventRow[];
  operator: string;
  readOnly: boolean;
  flash: FlashResult | null;
}

export function dashboardPage(input: DashboardInput): PageModel {
  const { base, view, after, cursor, page, next } = input;
  const here = (change: Partial<ViewState> & { after?: string | null }) => dashboardUrl(base, { ...view, ...change });
  return {
    layout: layoutData(base, 'Locks', view.refresh, here({ after })),
    data: {
      operator: input.operator,
      readOnly: input.readOnly,
      counts: input.counts,
      view,
      flash: input.flash ? flashView(input.flash) : null,
      dbNow: page[0] ? formatUtc(page[0].dbNow) : null,
      locks: page.map((row) => ({
        ...lockView(row),
        releaseUrl: `${base}/confirm-release?${query({ lockId: row.lockId, fencingToken: String(row.fencingToken), ...viewParams(view) })}`,
        pageUrl: lockPageUrl(base, row.lockId),
      })),
      events: input.events.map((event) => ({ ...eventView(event), pageUrl: lockPageUrl(base, event.lockId) })),
      isFirstPage: cursor === null,
      links: {
        firstPage: here({}),
        nextPage: next ? here({ after: encodeCursor(next) }) : null,
        all: here({ staleOnly: false }),
        staleOnly: here({ staleOnly: true }),
        clearFilter: here({ filter: null }),
        releaseStale: `${base}/confirm-release-stale?${query(viewParams(view))}`,
        semaphores: `${base}/semaphores`,
        refresh: REFRESH_CHOICES.map((seconds) => ({
          seconds,
          label: seconds === 0 ? 'Off' : `${seconds} s`,
          url: here({ refresh: seconds, after }),
          current: seconds === view.refresh,
        })),
      },
      formAction: `${base}/`,
    },
  };
}

export interface ConfirmReleaseInput {
  base: string;
  view: ViewState;
  lockId: string;
  fencingToken: number;
  /** The lock as it is now, or null when it is not held any more. */
  row: LockRow | null;
  csrf: CsrfField;
}

/** The confirmation of one acquisition; its status says whether that acquisition still holds the lock. */
export function confirmReleasePage(input: ConfirmReleaseInput): PageModel & { status: 200 | 404 | 409 } {
  const { base, view, lockId, fencingToken, row } = input;
  const status = !row ? 404 : row.fencingToken !== fencingToken ? 409 : 200;
  return {
    status,
    layout: layoutData(base, `Release ${lockId}?`),
    data: {
      lockId,
      fencingToken,
      lock: row ? lockView(row) : null,
      outcome: status === 200 ? 'confirm' : status === 404 ? 'not-found' : 'token-mismatch',
      reviewUrl: row ? `${base}/confirm-release?${query({ lockId, fencingToken: String(row.fencingToken), ...viewParams(view) })}` : null,
      backUrl: dashboardUrl(base, view),
      actionUrl: `${base}/release`,
      csrf: input.csrf,
      hidden: viewParams(view),
      reasonMaxLength: MAX_REASON_LENGTH,
    },
  };
}

export interface ConfirmReleaseStaleInput {
  base: string;
  view: ViewState;
  staleCount: number;
  preview: LockRow[];
  csrf: CsrfField;
}

export function confirmReleaseStalePage(input: ConfirmReleaseStaleInput): PageModel {
  const { base, view } = input;
  return {
    layout: layoutData(base, 'Release all stale locks?'),
    data: {
      staleCount: input.staleCount,
      preview: input.preview.map(lockView),
      backUrl: dashboardUrl(base, view),
      actionUrl: `${base}/release-stale`,
      csrf: input.csrf,
      hidden: viewParams(view),
      reasonMaxLength: MAX_REASON_LENGTH,
    },
  };
}

export function errorPage(base: string, error: AdminHttpError): PageModel {
  return {
    layout: layoutData(base, `Error ${error.status}`),
    data: { status: error.status, code: error.code, message: error.message, backUrl: `${base}/` },
  };
}

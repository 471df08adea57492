/**
 * Options of `createDbMutexAdminRouter`, their defaults and validation (at creation, so a
 * misconfigured dashboard fails when the app starts rather than at the first request).
 */
import type { Request } from 'express';
import type { DbMutex } from '../db-mutex';
import { resolveMetricsOption, type MetricsSource } from './metrics-route';
import { codePointLength, MAX_HOLDER_LENGTH, optionKeys, rejectUnknownOptions } from '../options';

export interface DbMutexAdminRouterOptions {
  /**
   * The DbMutex whose locks are shown. Default: the one `initDbMutex` registered, looked up on every
   * request (so the router may be created before `initDbMutex` runs, and follows a re-initialisation).
   */
  mutex?: DbMutex;
  /**
   * Required. Decides whether this request may use the dashboard at all (every route, including the
   * JSON API and static files). Only `true` lets the request through; anything else answers 403.
   * Authenticate before the router (session, SSO middleware) and check the role here.
   */
  authorize: (req: Request) => boolean | Promise<boolean>;
  /**
   * Who is acting, for the audit trail. Default: `req.user`'s `username`, `name`, `id` or `email`
   * (the first present), else `"anonymous"`.
   */
  operator?: (req: Request) => string | Promise<string>;
  /** Show the locks and the audit trail only: no actions are offered and every action answers 403. Default false. */
  readOnly?: boolean;
  /** Locks per page, in the HTML table and the default of `GET api/locks`. Default 50, at most 500. */
  pageSize?: number;
  /**
   * Key for the CSRF tokens and the signed result messages, at least 32 bytes. Default: random per
   * router. Give every process the same secret when several serve the dashboard behind a load
   * balancer without sticky sessions, or a form rendered by one is refused by another.
   */
  secret?: string | Buffer;
  /**
   * Called with unexpected errors (database unreachable, a bug) before the router answers a generic
   * 500 without details. Default: `console.error`. 4xx answers to bad input are not reported.
   */
  onError?: (error: unknown, req: Request) => void;
  /**
   * More origins (`"https://ops.example.com"`: scheme, host, optional port; no path) whose pages may
   * act on the dashboard, besides the request's own scheme and Host. For a reverse proxy that rewrites
   * the Host header (or terminates TLS without `trust proxy`), list the public origin the browser
   * shows. A request the browser marks as cross-site (`Sec-Fetch-Site`) is refused regardless.
   * Default: none.
   */
  allowedOrigins?: readonly string[];
  /**
   * A prom-client Registry (e.g. the one given to `createDbMutexMetrics`) to serve as Prometheus text at
   * `GET <mount>/metrics`, behind `authorize` like every route. Default: none (no such route).
   */
  metrics?: MetricsSource;
}

const ADMIN_ROUTER_OPTION_KEYS = optionKeys<DbMutexAdminRouterOptions>({
  mutex: true,
  authorize: true,
  operator: true,
  readOnly: true,
  pageSize: true,
  secret: true,
  onError: true,
  allowedOrigins: true,
  metrics: true,
});

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 500;

export interface ResolvedOptions {
  mutex: DbMutex | null;
  authorize: (req: Request) => boolean | Promise<boolean>;
  operator: ((req: Request) => string | Promise<string>) | null;
  readOnly: boolean;
  pageSize: number;
  onError: (error: unknown, req: Request) => void;
  /** Normalized by `URL.origin`, so they compare with a browser's `Origin` header as strings. */
  allowedOrigins: string[];
  metrics: MetricsSource | null;
}

export function resolveOptions(options: DbMutexAdminRouterOptions): ResolvedOptions {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError('createDbMutexAdminRouter: options must be an object with at least { authorize }');
  }
  rejectUnknownOptions(options, ADMIN_ROUTER_OPTION_KEYS, 'createDbMutexAdminRouter');
  if (typeof options.authorize !== 'function') {
    throw new TypeError(
      'createDbMutexAdminRouter: options.authorize (req) => boolean is required; the dashboard can force-release ' +
        'locks, so it never runs unprotected',
    );
  }
  const mutex = options.mutex ?? null;
  if (mutex !== null && (typeof mutex !== 'object' || typeof (mutex as Partial<DbMutex>).forceRelease !== 'function')) {
    throw new TypeError('createDbMutexAdminRouter: options.mutex must be a DbMutex (from initDbMutex)');
  }
  if (options.operator !== undefined && typeof options.operator !== 'function') {
    throw new TypeError('createDbMutexAdminRouter: options.operator must be a function (req) => string');
  }
  if (options.readOnly !== undefined && typeof options.readOnly !== 'boolean') {
    throw new TypeError('createDbMutexAdminRouter: options.readOnly must be a boolean');
  }
  const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
  if (!Number.isSafeInteger(pageSize) || pageSize < 1 || pageSize > MAX_PAGE_SIZE) {
    throw new RangeError(`createDbMutexAdminRouter: options.pageSize must be an integer from 1 to ${MAX_PAGE_SIZE}, got ${String(pageSize)}`);
  }
  if (options.onError !== undefined && typeof options.onError !== 'function') {
    throw new TypeError('createDbMutexAdminRouter: options.onError must be a function (error, req) => void');
  }
  return {
    mutex,
    authorize: options.authorize,
    operator: options.operator ?? null,
    readOnly: options.readOnly ?? false,
    pageSize,
    onError: options.onError ?? ((error) => console.error('[sequelize-db-mutex admin]', error)),
    allowedOrigins: resolveAllowedOrigins(options.allowedOrigins),
    metrics: resolveMetricsOption(options.metrics),
  };
}

function resolveAllowedOrigins(value: unknown): string[] {
  if (value === undefined) return [];
  const misuse = (got: string) =>
    new TypeError(
      'createDbMutexAdminRouter: options.allowedOrigins must be an array of origins like "https://ops.example.com" ' +
        `(http or https, host, optional port, no path or wildcard), got ${got}`,
    );
  if (!Array.isArray(value)) throw misuse(typeof value === 'string' ? `the string ${JSON.stringify(value)} (wrap it in [ ])` : typeof value);
  return value.map((entry: unknown) => {
    if (typeof entry !== 'string') throw misuse(`an entry of type ${entry === null ? 'null' : typeof entry}`);
    let url: URL;
    try {
      url = new URL(entry);
    } catch {
      throw misuse(JSON.stringify(entry));
    }
    const bare = url.pathname === '/' && url.search === '' && url.hash === '' && url.username === '' && url.password === '';
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || !bare || /[?#]/.test(entry)) throw misuse(JSON.stringify(entry));
    return url.origin;
  });
}

/** `req.user`'s first usable name field (set by Passport and most auth middleware), else "anonymous". */
export function defaultOperator(req: Request): string {
  const user = (req as { user?: unknown }).user;
  if (typeof user === 'object' && user !== null) {
    for (const key of ['username', 'name', 'id', 'email']) {
      const v = (user as Record<string, unknown>)[key];
      if ((typeof v === 'string' && v.trim() !== '') || (typeof v === 'number' && Number.isFinite(v))) {
        return fitHolder(String(v).trim());
      }
    }
  }
  return 'anonymous';
}

function fitHolder(name: string): string {
  const clean = name.replace(/\0/g, '').toWellFormed();
  return codePointLength(clean) > MAX_HOLDER_LENGTH ? [...clean].slice(0, MAX_HOLDER_LENGTH).join('') : clean;
}

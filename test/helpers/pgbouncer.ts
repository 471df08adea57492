/**
 * A real PgBouncer for tests: its own temporary folder (handed to the `postgres` user when running as
 * root, since PgBouncer refuses root), its own free loopback port, a wildcard database entry in front
 * of the given PostgreSQL, and the admin console for RELOAD / PAUSE / RESUME / SHOW. The implementation
 * is scripts/pgbouncer.js, shared with the bench and .ci/run; this file gives it types.
 *
 *   const bouncer = await startPgBouncer({ poolMode: 'transaction', backendPort: 5432 });
 *   const url = bouncer.url('mydb');            // postgres://postgres@127.0.0.1:<port>/mydb
 *   await bouncer.repoint('127.0.0.1', 5433);   // failover: new server connections go to 5433
 *   await bouncer.pause(); await bouncer.resume();
 *   await bouncer.stop();                       // twice does no harm
 */
export type PgBouncerPoolMode = 'session' | 'transaction' | 'statement';

export interface PgBouncerOptions {
  /** Default 'transaction'. */
  poolMode?: PgBouncerPoolMode;
  /** Default '127.0.0.1'. */
  backendHost?: string;
  backendPort: number;
  /** Default: a free loopback port. */
  port?: number;
  /** Default 'trust' (no client authentication; PgBouncer still logs in to the backend as the user). */
  authType?: 'trust' | 'any' | 'plain' | 'md5' | 'scram-sha-256';
  /** Auth-file entries, user -> password (also used for the backend login). Default `{ postgres: '' }`. */
  users?: Record<string, string>;
  /** Further `[pgbouncer]` settings, e.g. `{ default_pool_size: 5, server_lifetime: 3600 }`. */
  settings?: Record<string, string | number>;
}

export interface PgBouncer {
  readonly host: string;
  readonly port: number;
  /** Its temporary folder (ini, auth file, pid file, log). */
  readonly dir: string;
  readonly poolMode: PgBouncerPoolMode;
  /** The daemon's process id, or null once stopped. */
  readonly pid: number | null;
  /** A connection string through this PgBouncer to `database` (the wildcard entry passes any name on). */
  url(database: string, user?: string, password?: string): string;
  /** One admin-console command (`SHOW POOLS`, `RELOAD`, `KILL db`, …); its rows. */
  admin(command: string): Promise<Record<string, unknown>[]>;
  /** Rewrites the ini with the changed settings and RELOADs. */
  reconfigure(changes: { poolMode?: PgBouncerPoolMode; backendHost?: string; backendPort?: number; settings?: Record<string, string | number> }): Promise<void>;
  /** Points the wildcard entry at another backend and RELOADs (as a VIP/DNS switch would on failover). */
  repoint(backendHost: string, backendPort: number): Promise<void>;
  reload(): Promise<void>;
  /** PAUSE (all databases, or one): returns once every server connection is released. */
  pause(database?: string): Promise<void>;
  resume(database?: string): Promise<void>;
  /** The last lines of its log. */
  log(): string;
  /** Stops it and removes its folder; twice does no harm. */
  stop(): Promise<void>;
}

// scripts/ is plain JavaScript (the bench and .ci/run use the same file).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const impl = require('../../scripts/pgbouncer') as {
  startPgBouncer: (options: PgBouncerOptions) => Promise<PgBouncer>;
  findPgBouncer: () => string | null;
};

export const startPgBouncer = impl.startPgBouncer;
/** The pgbouncer binary, or null when none is installed. */
export const findPgBouncer = impl.findPgBouncer;

/**
 * A PgBouncer in front of the server DATABASE_URL names (PostgreSQL only), with DATABASE_URL's user and
 * password in its auth file.
 */
export function startPgBouncerFor(serverUrl: string, options: Omit<PgBouncerOptions, 'backendPort'> & { backendPort?: number } = {}): Promise<PgBouncer> {
  const u = new URL(serverUrl);
  const user = decodeURIComponent(u.username || 'postgres');
  return impl.startPgBouncer({
    backendHost: u.hostname,
    backendPort: Number(u.port || 5432),
    users: { [user]: decodeURIComponent(u.password) },
    ...options,
  });
}

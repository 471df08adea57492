/**
 * Turns what can go wrong in a CLI run into one line an operator can act on. Database failures are
 * recognised by driver error codes (SQLSTATE, errno), never by message text, which varies by version
 * and locale.
 */

/** A mistake in the command line: exit status 2, with a pointer to the command's help. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** A problem with the setup rather than the command line (no DATABASE_URL…): exit status 2, no help pointer. */
export class SetupError extends Error {
  override readonly name = 'SetupError';
}

/** The command ran but found nothing to do: exit status 1. */
export class NothingDone extends Error {
  override readonly name = 'NothingDone';
}

/** "Table does not exist": PostgreSQL's SQLSTATE, and MySQL/MariaDB drivers' code. */
const UNDEFINED_TABLE = new Set(['42P01', 'ER_NO_SUCH_TABLE']);

/** SQLite reports every SQL error as SQLITE_ERROR; only its text tells a missing table apart. */
function isMissingSqliteTable(e: ErrorLike): boolean {
  return e.code === 'SQLITE_ERROR' && typeof e.message === 'string' && e.message.includes('no such table');
}

const CONNECTION_ERRNO: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  EPIPE: 'connection closed',
  ENOENT: 'no such socket',
  SQLITE_CANTOPEN: 'cannot open the database file',
};

const CONNECTION_SQLSTATE: Readonly<Record<string, string>> = {
  '28P01': 'authentication failed',
  '28000': 'not authorized',
  '3D000': 'database does not exist',
  '57P03': 'the server is starting up or shutting down',
  '53300': 'too many connections',
  ER_ACCESS_DENIED_ERROR: 'access denied',
  ER_DBACCESS_DENIED_ERROR: 'access denied',
  ER_BAD_DB_ERROR: 'database does not exist',
};

const CONNECTION_ERROR_NAMES = /^Sequelize(Connection\w*|HostNotFound|AccessDenied|InvalidConnection)Error$/;

interface ErrorLike {
  name?: unknown;
  code?: unknown;
  message?: unknown;
  parent?: unknown;
  original?: unknown;
  cause?: unknown;
  errors?: unknown;
}

/** The error and everything it wraps (Sequelize's `parent`/`original`, `cause`, AggregateError's `errors`). */
function chain(error: unknown): ErrorLike[] {
  const out: ErrorLike[] = [];
  const queue: unknown[] = [error];
  while (queue.length > 0 && out.length < 20) {
    const e = queue.shift();
    if (typeof e !== 'object' || e === null || out.includes(e)) continue;
    const el = e as ErrorLike;
    out.push(el);
    queue.push(el.parent, el.original, el.cause);
    if (Array.isArray(el.errors)) queue.push(...(el.errors as unknown[]));
  }
  return out;
}

export interface FailureContext {
  /** DATABASE_URL without its password (`ParsedDatabaseUrl.display`). */
  display: string;
  tableName: string;
  eventsTableName: string;
}

/** One line, no stack: what failed and what to do about it. */
export function describeFailure(error: unknown, context: FailureContext): string {
  const errors = chain(error);
  const missing = errors.find((e) => (typeof e.code === 'string' && UNDEFINED_TABLE.has(e.code)) || isMissingSqliteTable(e));
  if (missing) {
    const message = typeof missing.message === 'string' ? missing.message : '';
    const table = message.includes(context.eventsTableName) ? context.eventsTableName : context.tableName;
    return `table ${table} not found: run the migration (npx sequelize-cli db:migrate) or mutex.sync()`;
  }
  const unreachable = (reason: string) =>
    `cannot connect to the database at ${context.display}: ${reason}; check DATABASE_URL and that the server is running`;
  // Driver codes first, wherever they sit in the chain: they are the most precise explanation.
  for (const e of errors) {
    const code = typeof e.code === 'string' ? e.code : '';
    if (CONNECTION_ERRNO[code]) return unreachable(`${CONNECTION_ERRNO[code]} (${code})`);
    if (CONNECTION_SQLSTATE[code]) return unreachable(`${firstLine(e.message) || CONNECTION_SQLSTATE[code]} (${code})`);
  }
  // Sequelize's own connection errors without a driver code (e.g. the connect timeout).
  const connection = errors.find((e) => typeof e.name === 'string' && CONNECTION_ERROR_NAMES.test(e.name));
  if (connection) return unreachable(firstLine(connection.message) || 'connection failed');
  return firstLine(errors[0]?.message) || String(error);
}

function firstLine(message: unknown): string {
  return typeof message === 'string' ? (message.split('\n')[0] ?? '').trim() : '';
}

/**
 * The one parser of `DATABASE_URL` in the CLI. Sequelize is never handed the raw string: its own
 * parsing (`url.parse`) prints the whole URL, password included, in Node's DEP0170 warning when the
 * URL is not strictly valid, and misreads passwords that contain `/`, `#` or `?`. Here the URL is
 * split by rules that keep the password apart whatever it contains, Sequelize gets separate options,
 * and everything shown to a person is rebuilt from the parsed parts without the password.
 *
 * Rules (lenient where operators are sloppy, strict where a guess could connect somewhere else):
 * - `scheme://[user[:password]@]host[:port][/database][?query]` for postgres(ql), mariadb and mysql.
 * - The user information ends at the LAST `@`, and the password starts at the first `:` in it, so the
 *   password may contain any character unescaped (`@`, `:`, `/`, `#`, `?`); `%XX` escapes in it are
 *   decoded and a `%` that starts no escape is kept as is. An `@` anywhere else must be written `%40`.
 * - A host in brackets is IPv6 (`[::1]`); an empty host or a host that decodes to a path starting
 *   with `/` (`%2Fvar%2Frun%2Fpostgresql`) or a `?host=/dir` parameter means a unix socket directory.
 * - Query parameters become driver options, as Sequelize does with them (`ssl`, `sslmode`,
 *   `application_name`…), and are never shown.
 * - `sqlite:PATH`, `sqlite://PATH` or `sqlite:///ABSOLUTE/PATH`; `sqlite::memory:`.
 * Errors never quote the URL or any part of it: a malformed URL may hold its password anywhere.
 */
import path from 'node:path';
import type { Dialect, Options } from 'sequelize';

/** DATABASE_URL could not be understood. The message never contains any part of the URL. */
export class DatabaseUrlError extends Error {
  override readonly name = 'DatabaseUrlError';
}

export interface ParsedDatabaseUrl {
  dialect: Extract<Dialect, 'postgres' | 'mariadb' | 'mysql' | 'sqlite'>;
  /** Host name or address (IPv6 without brackets), or a unix socket directory; undefined: driver default. */
  host?: string;
  port?: number;
  username?: string;
  /** The decoded password; never print it. */
  password?: string;
  database?: string;
  /** SQLite: the database file (or `:memory:`). */
  storage?: string;
  /** Query parameters, decoded. */
  query: Record<string, string>;
  /** The URL rebuilt without password and query, for messages: `postgres://app:***@db:5432/app`. */
  display: string;
}

const SCHEMES: Readonly<Record<string, ParsedDatabaseUrl['dialect']>> = {
  postgres: 'postgres',
  postgresql: 'postgres',
  mariadb: 'mariadb',
  mysql: 'mysql',
  sqlite: 'sqlite',
};

const SCHEME_LIST = 'postgres://, postgresql://, mariadb://, mysql:// or sqlite:';

/** Decodes `%XX` escapes; a `%` that starts no escape stays a `%` (raw passwords such as `50%off`). */
function decode(text: string, what: string): string {
  try {
    return decodeURIComponent(text.replace(/%(?![0-9A-Fa-f]{2})/g, '%25'));
  } catch {
    throw new DatabaseUrlError(`DATABASE_URL has a %-escape in the ${what} that is not valid UTF-8 (write a literal % as %25)`);
  }
}

export function parseDatabaseUrl(url: string): ParsedDatabaseUrl {
  if (typeof url !== 'string' || url.trim() === '') throw new DatabaseUrlError('DATABASE_URL is empty');
  url = url.trim();
  const colon = url.indexOf(':');
  // Not quoted: without a scheme, the text before the first ':' may well be "user:password…".
  const dialect = colon > 0 ? SCHEMES[url.slice(0, colon).toLowerCase()] : undefined;
  if (!dialect) throw new DatabaseUrlError(`DATABASE_URL must start with ${SCHEME_LIST}`);
  const rest = url.slice(colon + 1);
  if (dialect === 'sqlite') return parseSqlite(rest);
  if (!rest.startsWith('//')) throw new DatabaseUrlError(`DATABASE_URL must look like ${url.slice(0, colon).toLowerCase()}://user:password@host:port/database`);
  const afterSlashes = rest.slice(2);

  let userinfo: string | null = null;
  let hostPart = afterSlashes;
  const at = afterSlashes.lastIndexOf('@');
  if (at >= 0) {
    userinfo = afterSlashes.slice(0, at);
    hostPart = afterSlashes.slice(at + 1);
  }
  let username: string | undefined;
  let password: string | undefined;
  if (userinfo !== null) {
    const sep = userinfo.indexOf(':');
    username = decode(sep >= 0 ? userinfo.slice(0, sep) : userinfo, 'user name') || undefined;
    password = sep >= 0 ? decode(userinfo.slice(sep + 1), 'password') : undefined;
  }

  // host[:port] ends at the first '/' or '?' after the user information.
  const end = hostPart.search(/[/?]/);
  const hostPort = end >= 0 ? hostPart.slice(0, end) : hostPart;
  let tail = end >= 0 ? hostPart.slice(end) : '';
  let host: string | undefined;
  let portText: string | undefined;
  if (hostPort.startsWith('[')) {
    const close = hostPort.indexOf(']');
    if (close < 0) throw new DatabaseUrlError('DATABASE_URL has an IPv6 host without its closing "]"');
    // A zone id is escaped in URLs (`[fe80::1%25eth0]`); the socket layer wants it plain.
    host = decode(hostPort.slice(1, close), 'host');
    const after = hostPort.slice(close + 1);
    if (after !== '' && !after.startsWith(':')) throw new DatabaseUrlError('DATABASE_URL has text after the IPv6 host that is not ":port"');
    portText = after === '' ? undefined : after.slice(1);
  } else {
    const sep = hostPort.lastIndexOf(':');
    host = sep >= 0 ? hostPort.slice(0, sep) : hostPort;
    portText = sep >= 0 ? hostPort.slice(sep + 1) : undefined;
    host = decode(host, 'host');
  }
  if (host !== undefined && /[\s@]/.test(host)) throw new DatabaseUrlError('DATABASE_URL has an unusable host name');
  let port: number | undefined;
  if (portText !== undefined && portText !== '') {
    port = /^[0-9]{1,5}$/.test(portText) ? Number(portText) : NaN;
    if (!(port >= 1 && port <= 65535)) {
      // Wrongly split user information lands here ("user:pass/word@…" without the '@' would).
      throw new DatabaseUrlError('DATABASE_URL has a port that is not a number from 1 to 65535 (a password with special characters still needs the "@" before the host)');
    }
  }

  const q = tail.indexOf('?');
  const query: Record<string, string> = {};
  if (q >= 0) {
    for (const [key, value] of new URLSearchParams(tail.slice(q + 1))) query[key] = value;
    tail = tail.slice(0, q);
  }
  const database = tail.length > 1 ? decode(tail.slice(1), 'database name') : undefined;
  if (query.host) host = query.host;

  const parsed: ParsedDatabaseUrl = {
    dialect,
    host: host || undefined,
    port,
    username,
    password,
    database,
    query,
    display: '',
  };
  parsed.display = displayOf(url.slice(0, colon).toLowerCase(), parsed);
  return parsed;
}

function parseSqlite(rest: string): ParsedDatabaseUrl {
  const q = rest.indexOf('?');
  if (q >= 0) throw new DatabaseUrlError('DATABASE_URL is a sqlite URL with parameters; sqlite URLs take none');
  let file: string;
  if (rest === ':memory:' || rest === '//:memory:' || rest === '/:memory:') file = ':memory:';
  else if (rest.startsWith('///')) file = rest.slice(2);
  // `sqlite://dir/file.db`: relative, as Sequelize reads it (host and path joined).
  else if (rest.startsWith('//')) file = rest.slice(2);
  else file = rest;
  if (file === '') throw new DatabaseUrlError('DATABASE_URL names no sqlite file (e.g. sqlite:/var/lib/app/app.db)');
  const storage = file === ':memory:' ? file : path.resolve(file);
  return { dialect: 'sqlite', storage, query: {}, display: `sqlite:${storage}` };
}

function displayOf(scheme: string, p: ParsedDatabaseUrl): string {
  const user = p.username === undefined ? '' : `${encodeURIComponent(p.username)}${p.password === undefined ? '' : ':***'}@`;
  const socket = p.host?.startsWith('/') === true;
  const host = p.host === undefined || socket ? '' : p.host.includes(':') ? `[${p.host}]` : p.host;
  const port = p.port === undefined ? '' : `:${p.port}`;
  const database = p.database === undefined ? '' : `/${encodeURIComponent(p.database)}`;
  return `${scheme}://${user}${host}${port}${database}${socket ? `?host=${p.host}` : ''}`;
}

/** The password-free form of any DATABASE_URL, for messages; a fixed text when it cannot be parsed. */
export function redactUrl(url: string): string {
  try {
    return parseDatabaseUrl(url).display;
  } catch {
    return '(unparsable DATABASE_URL)';
  }
}

/**
 * Sequelize options for a parsed URL: what `new Sequelize(url)` would derive from it, given as
 * separate options so Sequelize never parses (or prints) the URL itself. `extra` (pool, logging…)
 * is merged in; `extraDialectOptions` are defaults the URL's own parameters override.
 */
export function sequelizeOptions(p: ParsedDatabaseUrl, extra: Options = {}, extraDialectOptions: Record<string, unknown> = {}): Options {
  if (p.dialect === 'sqlite') return { ...extra, dialect: 'sqlite', storage: p.storage };
  const { host: _socketOrHost, ...params } = p.query;
  const dialectOptions: Record<string, unknown> = { ...extraDialectOptions, ...params };
  if (typeof params.options === 'string') {
    try {
      dialectOptions.options = JSON.parse(params.options) as unknown;
    } catch {
      // Not JSON: PostgreSQL's own `options` (e.g. `-c search_path=x`) is a plain string.
    }
  }
  if (p.dialect === 'postgres') Object.assign(dialectOptions, pgSslOptions(params));
  return {
    ...extra,
    dialect: p.dialect,
    host: p.host,
    port: p.port,
    username: p.username,
    password: p.password,
    database: p.database,
    dialectOptions,
  };
}

/**
 * sslmode, sslrootcert… read the way `pg` itself reads them (its own connection-string module, found
 * next to the app's `pg`), from the parameters alone: the credentials never reach it.
 */
function pgSslOptions(params: Record<string, string>): Record<string, unknown> {
  const ssl = Object.entries(params).filter(([key]) => key.startsWith('ssl') || key === 'uselibpqcompat');
  if (ssl.length === 0) return {};
  let parse: (url: string) => Record<string, unknown>;
  try {
    const pgDir = path.dirname(require.resolve('pg/package.json'));
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    ({ parse } = require(require.resolve('pg-connection-string', { paths: [pgDir] })) as { parse: typeof parse });
  } catch {
    throw new DatabaseUrlError('DATABASE_URL has ssl parameters, but the "pg" package (which reads them) is not installed');
  }
  try {
    const config = parse(`postgres://localhost/?${new URLSearchParams(ssl).toString()}`);
    return config.ssl === undefined ? {} : { ssl: config.ssl };
  } catch (error) {
    // Its messages name parameters and files, never the password (it never saw one).
    throw new DatabaseUrlError(`DATABASE_URL has unusable ssl parameters: ${(error as Error).message}`);
  }
}

/**
 * Option types, their defaults, and the validation that runs before any SQL.
 * Programmer mistakes are TypeError/RangeError naming the parameter; they are thrown before
 * a connection is taken, so rejected input never writes anything.
 */
import { hostname } from 'node:os';
import type { Transaction } from 'sequelize';
import { defaultHistoryTableName, DEFAULT_EVENTS_TABLE_NAME, DEFAULT_HISTORY_RETENTION_DAYS, DEFAULT_TABLE_NAME, MAX_HISTORY_DAYS } from './limits';

/** Longest lock id, in characters (Unicode code points), as stored in the `lock_id` column. */
export const MAX_LOCK_ID_LENGTH = 255;
/** Longest holder label, in characters. */
export const MAX_HOLDER_LENGTH = 255;
/** Upper bound for any seconds option: about 100 years, far past anything meaningful, below overflow. */
export const MAX_SECONDS = 3_153_600_000;
/** Upper bound for waitMs: 24 days, the largest delay Node timers accept. */
export const MAX_WAIT_MS = 2_147_483_647;

/** Options of `initDbMutex`; each is also the default for every acquisition made through that DbMutex. */
export interface DbMutexOptions {
  /**
   * Hard cap on how long one acquisition may hold the lock, in seconds, counted from acquisition by the
   * database clock. `null` means never expire (beware). Default: env `DB_MUTEX_TTL_SECONDS`
   * (`none` means never) when set, else 1800 (30 minutes, as in django-db-mutex).
   */
  ttlSeconds?: number | null;
  /** Lease renewed by the heartbeat, in seconds. A crashed holder frees the lock within one lease. Default 60. */
  leaseSeconds?: number;
  /** Renew the lease in the background while the lock is held. `false` = one expiry at the TTL. Default true. */
  heartbeat?: boolean;
  /** How long an acquisition waits for a held lock, in milliseconds. Default 0 (fail at once). */
  waitMs?: number;
  /** Base interval of the jittered polling used while waiting, in milliseconds. Default 500. */
  pollIntervalMs?: number;
  /** Client-side limit for one lock statement, in milliseconds; a slower statement fails. Default 10000. */
  statementTimeoutMs?: number;
  /**
   * Keep one LISTEN connection for release notices (PostgreSQL): prompt hand-off to waiters and prompt
   * loss reports to holders. `false` (e.g. behind PgBouncer in transaction mode) falls back to polling
   * and to the next renewal. Default true; ignored on databases without notifications.
   */
  listen?: boolean;
  /**
   * Connection string of the LISTEN connection for release notices (PostgreSQL), when lock statements go
   * through a pooler that cannot carry LISTEN (PgBouncer in transaction mode): point it at the database
   * server itself (or a session-mode pooler). Default: the LISTEN connection uses the Sequelize
   * instance's own connection settings. Ignored on databases without notifications.
   * @example 'postgres://app:secret@db.internal:5432/app'
   */
  listenUrl?: string | null;
  /**
   * How long the LISTEN connection stays open after the last waiter and holder of this DbMutex are gone,
   * in milliseconds. It is opened again by the next wait or acquisition, so an idle process holds no
   * connection beyond its pool. Default 10000 (Sequelize's own pool idle time).
   */
  listenIdleMs?: number;
  /**
   * Send lock statements as named prepared statements (parsed and planned once per connection).
   * `false` sends unnamed statements, which any pooler passes on: required behind PgBouncer in
   * transaction mode (1.18 and earlier), where a named statement prepared on one server connection is
   * missing on the next. It also means there is a transaction pooler in front of the database, so
   * release notices then come through `listenUrl`, or by polling when none is given (said once
   * through the `degraded` event). A "prepared statement does not exist / already exists" error
   * switches a DbMutex to unnamed statements by itself. Default true. PostgreSQL and MariaDB.
   */
  preparedStatements?: boolean;
  /** Label stored with each lock, shown to operators. Default `<hostname>:<pid>`. */
  holder?: string;
  /** Table of the locks. Default `db_mutex_locks`. */
  tableName?: string;
  /** Table of the audit trail (force-releases). Default `db_mutex_events`. */
  eventsTableName?: string;
  /** Make this DbMutex the default of the top-level helpers. Default true. */
  setDefault?: boolean;
  /**
   * Record each acquisition's end (holder, how long, how it ended) in the history table, for the
   * dashboard's lock pages and the CLI's `history`. Default true. See the README's "Lock history".
   */
  history?: boolean;
  /** Days history rows are kept; older ones are pruned automatically (about hourly). Default 7. */
  historyRetentionDays?: number;
  /** Table of the lock history. Default `<tableName>_history`. */
  historyTableName?: string;
}

/** Per-acquisition options. */
export interface AcquireOptions {
  ttlSeconds?: number | null;
  leaseSeconds?: number;
  heartbeat?: boolean;
  waitMs?: number;
  holder?: string;
  /** Cancels waiting (and only waiting) when aborted. */
  signal?: AbortSignal;
  /**
   * Accepted for clarity and ignored: lock statements never join an ambient transaction,
   * they always run on their own connection (see the README's guarantees).
   */
  transaction?: Transaction | null;
}

export interface ResolvedDbMutexOptions {
  readonly ttlSeconds: number | null;
  readonly leaseSeconds: number;
  readonly heartbeat: boolean;
  readonly waitMs: number;
  readonly pollIntervalMs: number;
  readonly statementTimeoutMs: number;
  readonly listen: boolean;
  readonly listenUrl: string | null;
  readonly listenIdleMs: number;
  readonly preparedStatements: boolean;
  readonly holder: string;
  readonly tableName: string;
  readonly eventsTableName: string;
  readonly setDefault: boolean;
  readonly history: boolean;
  readonly historyRetentionDays: number;
  readonly historyTableName: string;
}

export interface ResolvedAcquireOptions {
  readonly ttlSeconds: number | null;
  /** null when the heartbeat is off: the row's expiry is then the TTL itself. */
  readonly leaseSeconds: number | null;
  readonly waitMs: number;
  readonly holder: string;
  readonly signal: AbortSignal | undefined;
}

export const DEFAULT_TTL_SECONDS = 1800;
export const DEFAULT_LEASE_SECONDS = 60;
export const DEFAULT_LISTEN_IDLE_MS = 10_000;

/** Reads `DB_MUTEX_TTL_SECONDS` the way the original read its Django setting. */
export function ttlFromEnv(env: NodeJS.ProcessEnv = process.env): number | null | undefined {
  const raw = env.DB_MUTEX_TTL_SECONDS;
  if (raw === undefined || raw.trim() === '') return undefined;
  if (raw.trim().toLowerCase() === 'none') return null;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0 || n > MAX_SECONDS) {
    throw new RangeError(
      `DB_MUTEX_TTL_SECONDS must be a positive number of seconds or "none", got ${JSON.stringify(raw)}`,
    );
  }
  return n;
}

export function validateLockId(lockId: unknown, parameter = 'lockId'): string {
  if (typeof lockId !== 'string') {
    throw new TypeError(`${parameter} must be a string, got ${describe(lockId)}`);
  }
  if (lockId.length === 0) throw new TypeError(`${parameter} must not be empty`);
  if (lockId.includes('\0')) throw new TypeError(`${parameter} must not contain a NUL character`);
  // A lone surrogate would be replaced by U+FFFD on the wire, so the stored id would differ from the
  // one the caller holds and release would miss its own row.
  if (!lockId.isWellFormed()) throw new TypeError(`${parameter} must be well-formed Unicode (no lone surrogates)`);
  if (codePointLength(lockId) > MAX_LOCK_ID_LENGTH) {
    throw new RangeError(`${parameter} must be at most ${MAX_LOCK_ID_LENGTH} characters, got ${codePointLength(lockId)}`);
  }
  return lockId;
}

export function validateHolder(holder: unknown, parameter = 'holder'): string {
  if (typeof holder !== 'string') throw new TypeError(`${parameter} must be a string, got ${describe(holder)}`);
  if (holder.includes('\0')) throw new TypeError(`${parameter} must not contain a NUL character`);
  if (!holder.isWellFormed()) throw new TypeError(`${parameter} must be well-formed Unicode`);
  if (codePointLength(holder) > MAX_HOLDER_LENGTH) {
    throw new RangeError(`${parameter} must be at most ${MAX_HOLDER_LENGTH} characters`);
  }
  return holder;
}

export function validateSeconds(value: unknown, parameter: string, { allowNull }: { allowNull: boolean }): number | null {
  if (value === null && allowNull) return null;
  if (typeof value !== 'number') {
    throw new TypeError(`${parameter} must be a number${allowNull ? ' or null' : ''}, got ${describe(value)}`);
  }
  if (!Number.isFinite(value) || value <= 0 || value > MAX_SECONDS) {
    throw new RangeError(`${parameter} must be a finite number of seconds > 0 and <= ${MAX_SECONDS}, got ${value}`);
  }
  return value;
}

export function validateMs(value: unknown, parameter: string, { min }: { min: number }): number {
  if (typeof value !== 'number') throw new TypeError(`${parameter} must be a number, got ${describe(value)}`);
  if (Number.isNaN(value) || value < min || value > MAX_WAIT_MS) {
    throw new RangeError(`${parameter} must be between ${min} and ${MAX_WAIT_MS} milliseconds, got ${value}`);
  }
  return value;
}

/** A positive number of days (fractions allowed), at most MAX_HISTORY_DAYS. */
export function validateDays(value: unknown, parameter: string): number {
  if (typeof value !== 'number') throw new TypeError(`${parameter} must be a number, got ${describe(value)}`);
  if (!Number.isFinite(value) || value <= 0 || value > MAX_HISTORY_DAYS) {
    throw new RangeError(`${parameter} must be a number of days above 0 and at most ${MAX_HISTORY_DAYS}, got ${describe(value)}`);
  }
  return value;
}

function validateBoolean(value: unknown, parameter: string): boolean {
  if (typeof value !== 'boolean') throw new TypeError(`${parameter} must be a boolean, got ${describe(value)}`);
  return value;
}

function validateListenUrl(value: unknown): string | null {
  if (value === null) return null;
  if (typeof value !== 'string') throw new TypeError(`listenUrl must be a connection string or null, got ${describe(value)}`);
  let scheme: string;
  try {
    scheme = new URL(value).protocol;
  } catch {
    throw new TypeError('listenUrl must be a valid connection string (postgres://user@host:port/database)');
  }
  if (scheme !== 'postgres:' && scheme !== 'postgresql:') {
    throw new TypeError(`listenUrl must start with postgres:// or postgresql://, got ${scheme}//`);
  }
  return value;
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,39}$/;

export function validateTableName(value: unknown, parameter: string): string {
  if (typeof value !== 'string' || !IDENTIFIER.test(value)) {
    // Kept short and plain so derived names (sequence, indexes) stay within every dialect's 63/64 limits
    // and need no quoting rules beyond the dialect's own.
    throw new TypeError(`${parameter} must match ${IDENTIFIER.source}, got ${describe(value)}`);
  }
  return value;
}

export function defaultHolder(): string {
  return `${hostname()}:${process.pid}`;
}

/** Every method that takes an options object names it when handed something else (null, a string…). */
export function validateOptionsObject(options: unknown, parameter = 'options'): void {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TypeError(`${parameter} must be an object, got ${describe(options)}`);
  }
}

/**
 * The keys of an options interface, as a list for `rejectUnknownOptions`. Written as an object so the
 * compiler checks it against the interface both ways: a key missing or a key too many is an error.
 */
export function optionKeys<T>(keys: Record<keyof T, true>): readonly (keyof T & string)[] {
  return Object.keys(keys) as (keyof T & string)[];
}

/** Every key of DbMutexOptions. */
export const DB_MUTEX_OPTION_KEYS = optionKeys<DbMutexOptions>({
  ttlSeconds: true,
  leaseSeconds: true,
  heartbeat: true,
  waitMs: true,
  pollIntervalMs: true,
  statementTimeoutMs: true,
  listen: true,
  holder: true,
  tableName: true,
  eventsTableName: true,
  setDefault: true,
  listenUrl: true,
  listenIdleMs: true,
  preparedStatements: true,
  history: true,
  historyRetentionDays: true,
  historyTableName: true,
});

/** Every key of AcquireOptions. */
export const ACQUIRE_OPTION_KEYS = optionKeys<AcquireOptions>({
  ttlSeconds: true,
  leaseSeconds: true,
  heartbeat: true,
  waitMs: true,
  holder: true,
  signal: true,
  transaction: true,
});

/**
 * JavaScript callers have no compiler to catch a misspelt option, which would otherwise be ignored
 * silently (`ttlSecond: 5` running with the default TTL): every own key of `options` must be one of
 * `known`, or a TypeError names the key and the closest known option, before any SQL runs.
 * `where` names the function, e.g. `initDbMutex`.
 */
export function rejectUnknownOptions(options: object, known: readonly string[], where: string): void {
  for (const key of Object.keys(options)) {
    if (known.includes(key)) continue;
    const closest = closestOption(key, known);
    const hint = closest ? `did you mean "${closest}"?` : `known options: ${known.join(', ')}`;
    // The key is the caller's own code, but may be long or odd: keep the message one readable line.
    const shown = JSON.stringify(key.length > 60 ? `${key.slice(0, 60)}…` : key);
    throw new TypeError(`Unknown option ${shown} for ${where} (${hint})`);
  }
}

/** The known option nearest to `key` by edit distance (case-insensitive), when near enough to be a typo. */
function closestOption(key: string, known: readonly string[]): string | null {
  const k = key.toLowerCase();
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const option of known) {
    const d = editDistance(k, option.toLowerCase());
    if (d < bestDistance) {
      best = option;
      bestDistance = d;
    }
  }
  // A typo changes a few characters; beyond that a suggestion would only confuse.
  return best !== null && bestDistance <= Math.max(2, Math.floor(best.length / 3)) ? best : null;
}

/** Optimal string alignment distance (Levenshtein plus swapped neighbours), in code units. */
function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 10) return Infinity;
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * Only `undefined` (an option left out) means "use the default"; `null` is validated like any other
 * value, so `initDbMutex` and `acquire()` agree on what they accept.
 */
function orDefault<T>(value: T | undefined, fallback: T): T {
  return value === undefined ? fallback : value;
}

export function resolveDbMutexOptions(options: DbMutexOptions = {}, where = 'initDbMutex'): ResolvedDbMutexOptions {
  validateOptionsObject(options);
  rejectUnknownOptions(options, DB_MUTEX_OPTION_KEYS, where);
  const ttl = options.ttlSeconds !== undefined ? options.ttlSeconds : ttlFromEnv();
  const tableName = validateTableName(orDefault(options.tableName, DEFAULT_TABLE_NAME), 'tableName');
  return Object.freeze({
    ttlSeconds: ttl === undefined ? DEFAULT_TTL_SECONDS : validateSeconds(ttl, 'ttlSeconds', { allowNull: true }),
    leaseSeconds: validateSeconds(orDefault(options.leaseSeconds, DEFAULT_LEASE_SECONDS), 'leaseSeconds', { allowNull: false }) as number,
    heartbeat: validateBoolean(orDefault(options.heartbeat, true), 'heartbeat'),
    waitMs: validateMs(orDefault(options.waitMs, 0), 'waitMs', { min: 0 }),
    pollIntervalMs: validateMs(orDefault(options.pollIntervalMs, 500), 'pollIntervalMs', { min: 1 }),
    statementTimeoutMs: validateMs(orDefault(options.statementTimeoutMs, 10_000), 'statementTimeoutMs', { min: 1 }),
    listen: validateBoolean(orDefault(options.listen, true), 'listen'),
    listenUrl: validateListenUrl(orDefault(options.listenUrl, null)),
    listenIdleMs: validateMs(orDefault(options.listenIdleMs, DEFAULT_LISTEN_IDLE_MS), 'listenIdleMs', { min: 0 }),
    preparedStatements: validateBoolean(orDefault(options.preparedStatements, true), 'preparedStatements'),
    holder: validateHolder(orDefault(options.holder, defaultHolder())),
    tableName,
    eventsTableName: validateTableName(orDefault(options.eventsTableName, DEFAULT_EVENTS_TABLE_NAME), 'eventsTableName'),
    setDefault: validateBoolean(orDefault(options.setDefault, true), 'setDefault'),
    history: validateBoolean(orDefault(options.history, true), 'history'),
    historyRetentionDays: validateDays(orDefault(options.historyRetentionDays, DEFAULT_HISTORY_RETENTION_DAYS), 'historyRetentionDays'),
    historyTableName: validateTableName(orDefault(options.historyTableName, defaultHistoryTableName(tableName)), 'historyTableName'),
  });
}

export function resolveAcquireOptions(defaults: ResolvedDbMutexOptions, options: AcquireOptions = {}, where = 'mutex.acquire'): ResolvedAcquireOptions {
  validateOptionsObject(options);
  rejectUnknownOptions(options, ACQUIRE_OPTION_KEYS, where);
  const ttlSeconds =
    options.ttlSeconds === undefined ? defaults.ttlSeconds : validateSeconds(options.ttlSeconds, 'ttlSeconds', { allowNull: true });
  const heartbeat = options.heartbeat === undefined ? defaults.heartbeat : validateBoolean(options.heartbeat, 'heartbeat');
  const leaseSeconds =
    options.leaseSeconds === undefined
      ? defaults.leaseSeconds
      : (validateSeconds(options.leaseSeconds, 'leaseSeconds', { allowNull: false }) as number);
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
    throw new TypeError(`signal must be an AbortSignal, got ${describe(options.signal)}`);
  }
  return {
    ttlSeconds,
    leaseSeconds: heartbeat ? leaseSeconds : null,
    waitMs: options.waitMs === undefined ? defaults.waitMs : validateMs(options.waitMs, 'waitMs', { min: 0 }),
    holder: options.holder === undefined ? defaults.holder : validateHolder(options.holder),
    signal: options.signal,
  };
}

export function codePointLength(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return `${typeof value} ${String(value)}`;
  if (typeof value === 'string') return `string of length ${value.length}`;
  return typeof value;
}

/**
 * Types shared by the bench's JavaScript files (checked by tsconfig.bench.json through `// @ts-check`
 * and JSDoc). The bench runs against the built dist/ at run time; its types come from src/, so
 * `npm run typecheck` needs no build and a change of the library's shape shows up here first.
 */
import type { Options, Sequelize } from 'sequelize';
import type * as LibraryModule from '../src/index';
import type { DbMutex } from '../src/db-mutex';
import type { Dialect, LockStore, Rows, Statement, StoreOperation } from '../src/dialects/types';
import type * as BenchSeamModule from '../src/internal/bench-seam';
import type { readConfig } from './lib/env';

/** The built library (dist/index.js), typed from its source. */
export type Library = typeof LibraryModule;
export type { DbMutex, Dialect, LockStore, Rows, Statement, StoreOperation };

/** The library's bench seam (dist/internal/bench-seam.js; not public API), typed from its source. */
export type BenchSeam = typeof BenchSeamModule;

/** The resolved `BENCH_*` settings (bench/lib/env.js). */
export type BenchConfig = ReturnType<typeof readConfig>;

export type Log = (message: string) => void;

/** The library's bench seam and a dialect name, for the rows that send its own SQL by hand. */
export interface LibraryInternals {
  seam: BenchSeam;
  /** The Sequelize dialect name whose lock store the rows use. */
  dialectName: string;
}

/** One row of a timed table (bench/lib/measure.js). */
export interface Variant {
  key: string;
  group?: string;
  label: string;
  setup?: () => Promise<void>;
  /** One acquire + release (or whatever the row times); `i` counts the cycles of this run. */
  cycle: (lockId: string, i: number) => unknown;
  /** Per-run figures a row collects itself (e.g. acquire latency alone). */
  endRun?: () => Record<string, number>;
  teardown?: () => Promise<void>;
}

export interface Spread {
  min: number;
  median: number;
  max: number;
  n: number;
}

export interface RunFigures {
  wallUs: number;
  meanUs: number;
  cpuUs: number;
  cycles: number;
  /** Every cycle's duration of this run, µs, in the order they ran. */
  timesUs: number[];
  [extra: string]: number | number[];
}

export interface MeasuredRow {
  variant: Variant;
  skipped: string | null;
  runs: RunFigures[];
  wallUs: Spread;
  meanUs: Spread;
  cpuUs: Spread;
  cycles: number;
}

export interface Table {
  headers: string[];
  rows: string[][];
}

export interface Target<V = unknown> {
  name: string;
  value: V;
  target: string;
  pass: boolean;
  fmt?: (value: V) => string;
}

export interface Report {
  title: string;
  intro: string;
  tables: Table[];
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- each target formats its own value type
  targets?: Target<any>[];
  seconds?: number;
}

export interface Server {
  url: string;
  embedded: boolean;
  stop(): Promise<void>;
}

export interface Scratch {
  name: string;
  url: string;
  drop(): Promise<void>;
}

export interface ServerDescription {
  product: string;
  settings: Record<string, string | number>;
  otherConnections: number;
}

/**
 * An adopted lever, undone through the library's bench seam (bench/lib/levers.js): a DbMutex is built
 * whose store rewrites the lever's statements before sending them.
 */
export interface LeverUndone {
  label: string;
  /** The lever changes what a refused attempt costs (the refused rows get an undone variant too). */
  affectsRefusal?: boolean;
  /** The store operation whose statements the lever lives in; null: every statement. */
  operation: StoreOperation | null;
  /** The statement with the lever undone; null when this build's SQL is not the shape it expects. */
  rewrite(statement: Statement): Statement | null;
  /** Calls the operation once, so `rewrite` can be checked against this build's SQL before any row runs. */
  probe?(store: LockStore): Promise<unknown>;
}

/** What a dialect's raw rows get from the uncontended section. */
export interface DialectContext {
  url: string;
  sequelize: Sequelize;
  track<C extends { end(): Promise<void> }>(client: C): C;
}

export interface RawContended {
  run(lockId: string, section: () => Promise<void>): Promise<void>;
  close(): Promise<void>;
}

/** A bench/dialects/<name>.js module. Scale, heartbeat and memory need the optional members. */
export interface BenchDialect {
  name: string;
  label: string;
  /** false: no LISTEN/NOTIFY, waiters poll (the contended section drops its notify rows). */
  notifies?: boolean;
  openServer(log: Log): Promise<Server>;
  createScratch(serverUrl: string): Promise<Scratch>;
  describeServer(url: string): Promise<ServerDescription>;
  makeSequelize(url: string, options?: Options): Sequelize;
  /** Sequelize options that make this dialect's commits skip the durable flush (memory-only sections). */
  fastCommitOptions(): Options;
  uncontendedVariants(ctx: DialectContext): Variant[];
  /**
   * Key of the uncontended row that sends the library's own acquire and release statements (taken from
   * its lock store, through the bench seam) by hand on one raw driver connection, the way the library sends them, history
   * write included (the shipped default): the denominator of the library's overhead.
   */
  ownStatementsKey: string;
  /**
   * Key of the row that sends the same statements with history off (`history: false`): the denominator of the overhead
   * of `ours, history: false`, and what is held against the minimal durable lease (the history write has a budget of its own).
   */
  ownStatementsNoHistoryKey: string;
  LEVERS_UNDONE: Record<string, LeverUndone>;
  /** Canned successful answers for the library's acquire and release (the JS-only rows). */
  stubRows(statement: Statement): Rows;
  libraryInternals(): LibraryInternals | null;
  fillOtherRows?(url: string, p: { table: string; originalTable: string; count: number }): Promise<void>;
  dropTables?(url: string, tables: string[]): Promise<void>;
  scaleBaselines?(ctx: Pick<DialectContext, 'url' | 'track'>, p: { table: string; originalTable: string }): Variant[];
  listenerConnections?(url: string, tableName: string): Promise<number>;
  contendedRaw(url: string, variant: string): Promise<RawContended>;
  /** The server's own blocking locks, as contended rows (`short` names one in a target). */
  contendedRawVariants: { key: string; label: string; short: string }[];
}

/** A row of the contended section, sent to every worker process. */
export interface ContendedRow {
  key: string;
  kind: 'ours' | 'raw';
  label: string;
  raw?: string;
  pollIntervalMs?: number;
  listen?: boolean;
  heartbeat?: boolean;
  retryMs?: number;
  patches?: string[];
  pooler?: 'transaction' | 'session';
  mutexOptions?: { preparedStatements?: boolean; listenUrl?: string; history?: boolean };
}

/** Everything a section runs in (bench/lib/env.js openDialect). */
export interface BenchEnv {
  config: BenchConfig;
  log: Log;
  lib: Library;
  dialect: BenchDialect;
  url: string;
  description: ServerDescription;
  embedded: boolean;
  sequelize: Sequelize;
  mutex: DbMutex;
  /** Lever name -> a DbMutex with that one adopted lever undone. */
  leverMutexes: Map<string, DbMutex>;
  mutexNoListen: DbMutex;
  /** The default DbMutex with `history: false`, in a database of its own (as every DbMutex under test). */
  mutexNoHistory: DbMutex;
  extraMutex(tableName: string, options?: { patches?: string[]; listen?: boolean; history?: boolean }): Promise<{ mutex: DbMutex; url: string } | null>;
  newDatabase(): Promise<string>;
  sequelizeFor(url: string, options?: Options): Sequelize;
  mutexFor(sequelize: Sequelize, options?: Parameters<Library['initDbMutex']>[1]): Promise<DbMutex>;
  onClose(fn: () => unknown): void;
  track<C extends { end(): Promise<void> }>(client: C): C;
  /** The bench's own PgBouncer in this pool mode: maps a direct database URL to the same database through it. */
  pgbouncer(mode: 'transaction' | 'session'): Promise<(directUrl: string) => string>;
}

/** A stamp of bench/lib/handoff-probe.js: kind, sent (or delivered) and answered, in ms since the run's base; won: a winning attempt. */
export type ProbeEvent = ['acquire' | 'release' | 'notice', number, number, boolean];

/** Parent -> contended-section worker (bench/worker.js). */
export type WorkerCommand =
  | { type: 'setup'; dialect: string; url: string; variant: ContendedRow; lockId: string; sectionMs: number; thinkMs: number }
  | { type: 'go'; untilNs: string; baseNs: string }
  | { type: 'teardown' }
  | { type: 'exit' };

/** Worker -> parent. A sample is [section start, section end, after release] in ms since `baseNs`. */
export type WorkerReply =
  | { type: 'ready' }
  | { type: 'done'; pid: number; samples: [number, number, number][]; errors: string[]; probe: ProbeEvent[] }
  | { type: 'closed' }
  | { type: 'error'; message: string };

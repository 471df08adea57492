/**
 * Prometheus metrics for a DbMutex, fed by its events, registered in the app's own prom-client
 * registry (so the app's existing `/metrics` endpoint serves them).
 *
 * `prom-client` is an optional peer dependency: it is required here, inside `createDbMutexMetrics`,
 * so importing the package works without it and only this function throws (DB_MUTEX_MISSING_PEER).
 *
 * Label cardinality is bounded by design: lock ids (`invoices:42`) never become labels by
 * themselves. Only `lockLabel(lockId)`, which the app writes to map ids onto a small set, adds a
 * `lock` label, and even then at most `maxLockLabels` distinct values are kept (the rest are `other`).
 */
import type { EventEmitter } from 'node:events';
import type * as Prom from 'prom-client';
import type { DbMutex, DbMutexEvents } from './db-mutex';
import { DbMutexMissingPeerError } from './errors';
import { optionKeys, rejectUnknownOptions, validateOptionsObject } from './options';

/**
 * The registry shape this module needs: a prom-client `Registry` (its global `register` or your own).
 * Written out so that apps without prom-client still type-check against our declarations.
 */
export interface DbMutexMetricsRegistry {
  getSingleMetric(name: string): unknown;
  removeSingleMetric(name: string): void;
  metrics(): Promise<string>;
  readonly contentType: string;
}

export interface DbMutexMetricsOptions {
  /** Where the metrics are registered. Default: prom-client's global registry (`register`). */
  registry?: DbMutexMetricsRegistry;
  /**
   * Start of every metric name; letters, digits, `_` and `:`. Default `"db_mutex_"`. Use another one to
   * keep two sets apart in one registry (e.g. two databases).
   */
  prefix?: string;
  /**
   * Maps a lock id onto a **small, fixed** set of values, which then become a `lock` label on every
   * metric that concerns one lock. Default: none, so no metric has a lock label. Typically the id's
   * family: `(id) => id.split(':')[0]` turns `invoices:42` into `invoices`. Never return the id itself
   * when ids carry record numbers: each distinct value is a time series of its own.
   */
  lockLabel?: (lockId: string) => string;
  /**
   * At most this many distinct `lock` label values; later new ones are counted as `other`. A guard
   * against a `lockLabel` that turns out not to be bounded. Default 100.
   */
  maxLockLabels?: number;
}

/** What `createDbMutexMetrics` returns. */
export interface DbMutexMetrics {
  /** The registry the metrics are in. */
  readonly registry: DbMutexMetricsRegistry;
  /** The metric names, in the order of the README's table. */
  readonly names: readonly string[];
  /**
   * Stops feeding the metrics from this DbMutex. When no DbMutex feeds them any more, they are removed
   * from the registry. Twice is a no-op.
   */
  close(): void;
}

const OPTION_KEYS = optionKeys<DbMutexMetricsOptions>({ registry: true, prefix: true, lockLabel: true, maxLockLabels: true });

export const DEFAULT_METRICS_PREFIX = 'db_mutex_';
export const DEFAULT_MAX_LOCK_LABELS = 100;
/** The `lock` label of lock ids beyond `maxLockLabels`, or whose `lockLabel` threw or returned no text. */
export const OTHER_LOCK_LABEL = 'other';

/** Seconds: from "no wait" to the five-minute waits of a batch job queueing behind another. */
const WAIT_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300];
/** Seconds: from a quick section to an hour-long job. */
const HOLD_BUCKETS = [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600];

type PromClient = typeof Prom;

function loadPromClient(): PromClient {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('prom-client') as PromClient;
  } catch (error) {
    if ((error as { code?: unknown }).code === 'MODULE_NOT_FOUND' && String((error as Error).message).includes("'prom-client'")) {
      throw new DbMutexMissingPeerError('prom-client', 'createDbMutexMetrics', { cause: error });
    }
    throw error;
  }
}

interface MetricSet {
  withLock: boolean;
  names: string[];
  acquisitions: Prom.Counter;
  wait: Prom.Histogram;
  hold: Prom.Histogram;
  lost: Prom.Counter;
  held: Prom.Gauge;
  renewalFailures: Prom.Counter;
  forceReleases: Prom.Counter;
  listenerReconnects: Prom.Counter;
  listenerErrors: Prom.Counter;
  /** One attachment per DbMutex feeding this set. */
  attached: Map<DbMutex, Attachment>;
}

interface Attachment {
  mutex: DbMutex;
  handle: DbMutexMetrics;
  lockLabel: ((lockId: string) => string) | null;
  maxLockLabels: number;
  label(lockId: string): string;
}

/** Metric sets we created, per registry and prefix (so a second DbMutex or a second call shares them). */
const sets = new WeakMap<DbMutexMetricsRegistry, Map<string, MetricSet>>();

/**
 * Registers the DbMutex metrics in `registry` and feeds them from `mutex`'s events. Several DbMutex
 * instances may share one registry and prefix (their counts add up). Calling it again for the same
 * DbMutex, registry and prefix returns the handle it already has (nothing is counted twice).
 */
export function createDbMutexMetrics(mutex: DbMutex, options: DbMutexMetricsOptions = {}): DbMutexMetrics {
  if (typeof mutex !== 'object' || mutex === null || typeof (mutex as Partial<DbMutex>).heldLocks !== 'function') {
    throw new TypeError('createDbMutexMetrics: mutex must be a DbMutex (from initDbMutex or new DbMutex)');
  }
  validateOptionsObject(options);
  rejectUnknownOptions(options, OPTION_KEYS, 'createDbMutexMetrics');
  const prefix = options.prefix ?? DEFAULT_METRICS_PREFIX;
  if (typeof prefix !== 'string' || !/^([a-zA-Z_:][a-zA-Z0-9_:]*)?$/.test(prefix)) {
    throw new TypeError(`createDbMutexMetrics: prefix must be letters, digits, "_" and ":" (not starting with a digit), got ${JSON.stringify(prefix)}`);
  }
  const lockLabel = options.lockLabel ?? null;
  if (lockLabel !== null && typeof lockLabel !== 'function') {
    throw new TypeError('createDbMutexMetrics: lockLabel must be a function (lockId) => string, e.g. (id) => id.split(":")[0]');
  }
  const maxLockLabels = options.maxLockLabels ?? DEFAULT_MAX_LOCK_LABELS;
  if (!Number.isSafeInteger(maxLockLabels) || maxLockLabels < 1) {
    throw new RangeError(`createDbMutexMetrics: maxLockLabels must be a positive integer, got ${String(maxLockLabels)}`);
  }
  const registry = options.registry;
  if (registry !== undefined && (typeof registry !== 'object' || registry === null || typeof registry.getSingleMetric !== 'function')) {
    throw new TypeError('createDbMutexMetrics: registry must be a prom-client Registry');
  }
  const prom = loadPromClient();
  const target: DbMutexMetricsRegistry = registry ?? prom.register;

  let byPrefix = sets.get(target);
  if (!byPrefix) sets.set(target, (byPrefix = new Map()));
  let set = byPrefix.get(prefix);
  if (set && set.withLock !== (lockLabel !== null)) {
    throw new TypeError(
      `createDbMutexMetrics: the "${prefix}" metrics in this registry were created ${set.withLock ? 'with' : 'without'} a lockLabel; ` +
        'every DbMutex sharing them must do the same (or use another prefix)',
    );
  }
  const existing = set?.attached.get(mutex);
  if (existing) {
    if (existing.lockLabel !== lockLabel || existing.maxLockLabels !== maxLockLabels) {
      throw new TypeError('createDbMutexMetrics: this DbMutex already has metrics in this registry with other options; close() them first');
    }
    return existing.handle;
  }
  if (!set) {
    set = createSet(prom, target, prefix, lockLabel !== null);
    byPrefix.set(prefix, set);
  }
  return attach(set, target, byPrefix, prefix, mutex, lockLabel, maxLockLabels);
}

function createSet(prom: PromClient, registry: DbMutexMetricsRegistry, prefix: string, withLock: boolean): MetricSet {
  const lock = withLock ? ['lock'] : [];
  const names = [
    'acquisitions_total',
    'wait_seconds',
    'hold_seconds',
    'lost_total',
    'held_locks',
    'renewal_failures_total',
    'force_releases_total',
    'listener_reconnects_total',
    'listener_errors_total',
  ].map((n) => prefix + n);
  // Checked before registering any, so a clash leaves the registry as it was.
  for (const name of names) {
    if (registry.getSingleMetric(name) !== undefined) {
      throw new TypeError(
        `createDbMutexMetrics: this registry already has a metric named "${name}" that createDbMutexMetrics did not make ` +
          '(pass another prefix, or the same registry object that made it)',
      );
    }
  }
  const registers = [registry as unknown as Prom.Registry];
  const [acquisitions, wait, hold, lost, heldName, renewalFailures, forceReleases, listenerReconnects, listenerErrors] = names as [
    string, string, string, string, string, string, string, string, string,
  ];
  const set: MetricSet = {
    withLock,
    names,
    acquisitions: new prom.Counter({
      name: acquisitions,
      help: 'Lock acquisition attempts by result: acquired, held (refused), wait_timeout, full (a semaphore had no free permit), cancelled, error.',
      labelNames: ['result', ...lock],
      registers,
    }),
    wait: new prom.Histogram({
      name: wait,
      help: 'Time an acquisition spent waiting for the lock (0 without waitMs), in seconds, by result.',
      labelNames: ['result', ...lock],
      buckets: WAIT_BUCKETS,
      registers,
    }),
    hold: new prom.Histogram({
      name: hold,
      help: 'How long a lock was held until its release, in seconds (lost locks are counted in lost_total instead).',
      labelNames: lock,
      buckets: HOLD_BUCKETS,
      registers,
    }),
    lost: new prom.Counter({
      name: lost,
      help: 'Locks lost while held, by reason: expired, released-by-other, unreachable, closed.',
      labelNames: ['reason', ...lock],
      registers,
    }),
    held: new prom.Gauge({
      name: heldName,
      help: 'Locks this process holds right now.',
      labelNames: lock,
      registers,
      collect(this: Prom.Gauge) {
        // Read at scrape time from the DbMutex itself: always right, and free between scrapes.
        this.reset();
        if (!withLock) this.set(0);
        for (const attachment of set.attached.values()) {
          for (const held of attachment.mutex.heldLocks()) {
            if (withLock) this.inc({ lock: attachment.label(held.lockId) });
            else this.inc();
          }
        }
      },
    }),
    renewalFailures: new prom.Counter({
      name: renewalFailures,
      help: 'Heartbeat renewal statements that failed (each covers every heartbeat lock of one DbMutex).',
      registers,
    }),
    forceReleases: new prom.Counter({
      name: forceReleases,
      help: 'Lock rows removed by operator actions of this process, by action: force-release, release-stale, purge-expired.',
      labelNames: ['action', ...lock],
      registers,
    }),
    listenerReconnects: new prom.Counter({
      name: listenerReconnects,
      help: 'Times the release-notice (LISTEN) connection came back after it dropped or failed to connect.',
      registers,
    }),
    listenerErrors: new prom.Counter({
      name: listenerErrors,
      help: 'Errors of the release-notice (LISTEN) connection.',
      registers,
    }),
    attached: new Map(),
  };
  return set;
}

function attach(
  set: MetricSet,
  registry: DbMutexMetricsRegistry,
  byPrefix: Map<string, MetricSet>,
  prefix: string,
  mutex: DbMutex,
  lockLabel: ((lockId: string) => string) | null,
  maxLockLabels: number,
): DbMutexMetrics {
  const seen = new Set<string>();
  const label = (lockId: string): string => {
    let value: unknown;
    try {
      value = lockLabel!(lockId);
    } catch {
      // An event listener that throws would break the lock operation that emitted it.
      return OTHER_LOCK_LABEL;
    }
    if (typeof value !== 'string' || value === '') return OTHER_LOCK_LABEL;
    if (seen.has(value)) return value;
    if (seen.size >= maxLockLabels) return OTHER_LOCK_LABEL;
    seen.add(value);
    return value;
  };
  /** Labels of a metric that has `extra` labels of its own, plus `lock` when there is a lockLabel. */
  const labels = lockLabel
    ? <T extends Record<string, string>>(lockId: string, extra: T) => ({ ...extra, lock: label(lockId) })
    : <T extends Record<string, string>>(_lockId: string, extra: T) => extra;

  const listeners: { [E in keyof DbMutexEvents]?: (...args: DbMutexEvents[E]) => void } = {
    acquired: ({ lockId, waitedMs }) => {
      const l = labels(lockId, { result: 'acquired' });
      set.acquisitions.inc(l);
      set.wait.observe(l, waitedMs / 1000);
    },
    acquireFailed: ({ lockId, result, waitedMs }) => {
      const l = labels(lockId, { result });
      set.acquisitions.inc(l);
      set.wait.observe(l, waitedMs / 1000);
    },
    released: ({ lockId, heldMs }) => set.hold.observe(labels(lockId, {}), heldMs / 1000),
    lost: ({ lockId, reason }) => set.lost.inc(labels(lockId, { reason })),
    renewalFailed: () => set.renewalFailures.inc(),
    forceReleased: ({ lockId, action }) => set.forceReleases.inc(labels(lockId, { action })),
    listenerReconnected: () => set.listenerReconnects.inc(),
    listenerError: () => set.listenerErrors.inc(),
  };
  // Untyped view of the emitter: the map above is typed per event, the loop over it cannot be.
  const emitter = mutex as unknown as EventEmitter;
  const entries = Object.entries(listeners) as [string, (...args: unknown[]) => void][];
  for (const [event, listener] of entries) emitter.on(event, listener);

  let closed = false;
  const handle: DbMutexMetrics = {
    registry,
    names: set.names,
    close() {
      if (closed) return;
      closed = true;
      for (const [event, listener] of entries) emitter.off(event, listener);
      set.attached.delete(mutex);
      if (set.attached.size === 0 && byPrefix.get(prefix) === set) {
        byPrefix.delete(prefix);
        for (const name of set.names) registry.removeSingleMetric(name);
      }
    },
  };
  set.attached.set(mutex, { mutex, handle, lockLabel, maxLockLabels, label: lockLabel ? label : () => '' });
  return handle;
}

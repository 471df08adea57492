/**
 * OpenTelemetry spans for lock acquisitions: `<prefix> acquire` (the attempt with its wait),
 * `<prefix> section` (the critical section) and `<prefix> release`.
 *
 * `@opentelemetry/api` is an optional peer: it is loaded on first use and, when it is missing or no SDK
 * has registered a tracer provider, every helper here costs one check and calls straight through.
 * The library's own statements run inside the acquire and release spans' contexts, so database
 * instrumentations (which read the active context) make them children of those spans.
 *
 * Semaphores and leadership use the same three helpers with their own prefix: `traceAcquire` around
 * the attempt, `runInSection` around the caller's function, `traceRelease` around the release.
 *
 * Nothing here is public API and no OpenTelemetry type appears in an exported signature, so apps
 * without the package type-check against our declarations too.
 */
import type * as otel from '@opentelemetry/api';
import { DbMutexError, type DbMutexLostReason } from './errors';

/** How a failed acquisition ended (the `result` label of the acquisitions metric, minus `acquired`). */
export type AcquireFailureResult = 'held' | 'full' | 'wait_timeout' | 'cancelled' | 'error';

/** What the span helpers need of a held lock (a Lease, a semaphore slot…). */
export interface TracedLock {
  readonly lockId: string;
  readonly fencingToken: number;
}

/** Span attribute names (documented in the README's "Metrics and traces"). */
export const SPAN_ATTRIBUTES = {
  lockId: 'db_mutex.lock_id',
  fencingToken: 'db_mutex.fencing_token',
  waitedMs: 'db_mutex.waited_ms',
  outcome: 'db_mutex.outcome',
  lostReason: 'db_mutex.lost_reason',
} as const;

const TRACER_NAME = 'sequelize-db-mutex';

type Api = typeof otel;

/** undefined: not looked for yet; null: not installed. */
let api: Api | null | undefined;
/** The no-op provider of the loaded API copy: a global proxy delegating to it means "no SDK". */
let noopProvider: otel.TracerProvider | null = null;
let cachedProvider: otel.TracerProvider | null = null;
let cachedTracer: otel.Tracer | null = null;

function loadApi(): Api | null {
  if (api !== undefined) return api;
  try {
    // Lazily, and only once: apps without OpenTelemetry never pay for it, and never get an error.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    api = require('@opentelemetry/api') as Api;
    noopProvider = new api.ProxyTracerProvider().getDelegate();
  } catch {
    api = null;
  }
  return api;
}

/**
 * The tracer to use now, or null when nothing would record: no API package, or no SDK registered.
 * Looked up on every call (an SDK may be registered after this module was loaded), but cheaply: the
 * global provider is a proxy whose delegate stays the no-op one until an SDK sets it.
 */
function activeTracer(): { api: Api; tracer: otel.Tracer } | null {
  const a = api === undefined ? loadApi() : api;
  if (a === null) return null;
  let provider: otel.TracerProvider = a.trace.getTracerProvider();
  const proxy = provider as Partial<otel.ProxyTracerProvider>;
  if (typeof proxy.getDelegate === 'function') provider = proxy.getDelegate();
  if (provider === noopProvider) return null;
  if (provider !== cachedProvider) {
    cachedProvider = provider;
    cachedTracer = provider.getTracer(TRACER_NAME);
  }
  return { api: a, tracer: cachedTracer! };
}

/** Per held lock: its section span and the context the section runs in. */
interface SectionState {
  prefix: string;
  span: otel.Span;
  /** The acquiring caller's context with the section span set: fn runs in it. */
  context: otel.Context;
  failure: { error: unknown } | null;
  lostReason: DbMutexLostReason | null;
  ended: boolean;
}

const sections = new WeakMap<object, SectionState>();

/** Maps an acquisition failure to its result label. */
export function acquireFailureResult(error: unknown, signal?: AbortSignal | null): AcquireFailureResult {
  if (error instanceof DbMutexError) {
    if (error.code === 'DB_MUTEX_HELD') return 'held';
    if (error.code === 'DB_MUTEX_WAIT_TIMEOUT') return 'wait_timeout';
    if (error.code === 'DB_MUTEX_SEMAPHORE_FULL') return 'full';
    if (error.code === 'DB_MUTEX_CLOSED') return 'cancelled';
    return 'error';
  }
  if (signal?.aborted && error === signal.reason) return 'cancelled';
  return 'error';
}

/**
 * Runs `attempt` (which acquires `lockId`) inside a `<prefix> acquire` span and, when it succeeds,
 * opens the `<prefix> section` span as a sibling (same parent: the caller's active span).
 */
export async function traceAcquire<L extends TracedLock>(
  prefix: string,
  lockId: string,
  attempt: () => Promise<L>,
  signal?: AbortSignal | null,
): Promise<L> {
  const active = activeTracer();
  if (active === null) return attempt();
  const { api: a, tracer } = active;
  const parent = a.context.active();
  const started = performance.now();
  const span = tracer.startSpan(`${prefix} acquire`, { kind: a.SpanKind.INTERNAL, attributes: { [SPAN_ATTRIBUTES.lockId]: lockId } }, parent);
  let lock: L;
  try {
    lock = await a.context.with(a.trace.setSpan(parent, span), attempt);
  } catch (error) {
    span.setAttributes({
      [SPAN_ATTRIBUTES.outcome]: acquireFailureResult(error, signal),
      [SPAN_ATTRIBUTES.waitedMs]: performance.now() - started,
    });
    fail(a, span, error);
    span.end();
    throw error;
  }
  span.setAttributes({
    [SPAN_ATTRIBUTES.outcome]: 'acquired',
    [SPAN_ATTRIBUTES.fencingToken]: lock.fencingToken,
    [SPAN_ATTRIBUTES.waitedMs]: performance.now() - started,
  });
  span.end();
  const section = tracer.startSpan(
    `${prefix} section`,
    { kind: a.SpanKind.INTERNAL, attributes: { [SPAN_ATTRIBUTES.lockId]: lockId, [SPAN_ATTRIBUTES.fencingToken]: lock.fencingToken } },
    parent,
  );
  const state: SectionState = { prefix, span: section, context: a.trace.setSpan(parent, section), failure: null, lostReason: null, ended: false };
  sections.set(lock, state);
  return lock;
}

/**
 * The lock was lost (called by the lease at that moment): a span event on its section, so the trace
 * shows when, not only that. The lease tells us rather than us listening on `lock.signal`, which is
 * made on first use: reading it here would make an AbortController for every traced acquisition.
 */
export function sectionLost(lock: object, reason: DbMutexLostReason): void {
  const state = sections.get(lock);
  if (state === undefined || state.ended) return;
  state.lostReason ??= reason;
  state.span.addEvent('lock lost', { [SPAN_ATTRIBUTES.lostReason]: reason });
}

/** Runs the critical section's `fn` inside the lock's section span, so the app's own spans nest in it. */
export function runInSection<T>(lock: object, fn: () => T): T {
  const state = sections.get(lock);
  if (state === undefined) return fn();
  const a = api!;
  return a.context.with(state.context, fn);
}

/** The critical section threw `error` (recorded on the section span when it ends). */
export function sectionFailed(lock: object, error: unknown): void {
  const state = sections.get(lock);
  if (state) state.failure = { error };
}

/**
 * Runs `settle` (the release; resolves to the loss reason, or null for a clean release) inside a
 * `<prefix> release` span, the last child of the lock's section span: the lock is held until the
 * release statement has run, and the release can be what discovers a loss, which the section then
 * reports too.
 */
export async function traceRelease(
  lock: TracedLock,
  settle: () => Promise<DbMutexLostReason | null>,
  prefix = 'db-mutex',
): Promise<DbMutexLostReason | null> {
  const state = sections.get(lock);
  const active = activeTracer();
  if (state === undefined && active === null) return settle();
  sections.delete(lock);
  if (active === null) {
    // The SDK went away between acquire and release: close the section anyway.
    try {
      return await settle();
    } finally {
      state!.ended = true;
      state!.span.end();
    }
  }
  const { api: a, tracer } = active;
  const parent = state?.context ?? a.context.active();
  const attributes = { [SPAN_ATTRIBUTES.lockId]: lock.lockId, [SPAN_ATTRIBUTES.fencingToken]: lock.fencingToken };
  const span = tracer.startSpan(`${state?.prefix ?? prefix} release`, { kind: a.SpanKind.INTERNAL, attributes }, parent);
  let lost: DbMutexLostReason | null;
  try {
    lost = await a.context.with(a.trace.setSpan(parent, span), settle);
  } catch (error) {
    span.setAttribute(SPAN_ATTRIBUTES.outcome, 'error');
    fail(a, span, error);
    span.end();
    if (state) endSection(a, state, state.lostReason);
    throw error;
  }
  if (lost) {
    span.setAttributes({ [SPAN_ATTRIBUTES.outcome]: 'lost', [SPAN_ATTRIBUTES.lostReason]: lost });
    span.setStatus({ code: a.SpanStatusCode.ERROR, message: `lock lost: ${lost}` });
  } else {
    span.setAttribute(SPAN_ATTRIBUTES.outcome, 'released');
  }
  span.end();
  if (state) endSection(a, state, lost ?? state.lostReason);
  return lost;
}

function endSection(a: Api, state: SectionState, lost: DbMutexLostReason | null): void {
  const { span, failure } = state;
  state.ended = true;
  if (failure) {
    span.setAttribute(SPAN_ATTRIBUTES.outcome, 'failed');
    fail(a, span, failure.error);
  } else if (lost) {
    span.setAttribute(SPAN_ATTRIBUTES.outcome, 'lost');
  } else {
    span.setAttribute(SPAN_ATTRIBUTES.outcome, 'completed');
  }
  if (lost) {
    span.setAttribute(SPAN_ATTRIBUTES.lostReason, lost);
    // A section that ran without the lock's protection failed its purpose even when fn returned.
    if (!failure) span.setStatus({ code: a.SpanStatusCode.ERROR, message: `lock lost: ${lost}` });
  }
  span.end();
}

function fail(a: Api, span: otel.Span, error: unknown): void {
  if (error instanceof Error) span.recordException(error);
  span.setStatus({ code: a.SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
}

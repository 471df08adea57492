// @ts-check
'use strict';
/**
 * Section: what metrics and tracing cost on the uncontended withDbMutex cycle, as ratios against the
 * shipped default (no metrics, @opentelemetry/api installed, no SDK registered) in the same run.
 *
 * OpenTelemetry's tracer provider and context manager are process-global, but rows take turns 20
 * cycles at a time, so each cycle sets the global proxy's delegate for its own row (a property write):
 * none for the default rows, an SDK for the traced ones. The SDK rows' context manager is an
 * AsyncLocalStorage, which once used makes every promise in the process a little dearer on Node 20;
 * it is disabled again after each SDK cycle so the other rows run without it (the SDK rows pay for
 * that switch, which an app with a permanent SDK would not).
 *
 * "without @opentelemetry/api" is a second copy of the built library, loaded with the package hidden
 * from module resolution, so its tracing has found nothing and stays off: an app that never installed it.
 */
const Module = require('node:module');
const path = require('node:path');
const { measureInterleaved } = require('../lib/measure');
const { fmt, fmtSpread, fmtRatio } = require('../lib/stats');

/** @typedef {import('../types').BenchEnv} BenchEnv */
/** @typedef {import('../types').Library} Library */
/** @typedef {import('../types').DbMutex} DbMutex */
/** @typedef {import('../types').Variant} Variant */
/** @typedef {import('../types').MeasuredRow} MeasuredRow */
/** @typedef {import('../types').Statement} Statement */
/** @typedef {(cycle: () => Promise<unknown>) => Promise<unknown>} Mode */
/**
 * Node's module resolver, which `libraryWithoutOtelApi` wraps for a moment.
 * @typedef {{ _resolveFilename: (request: string, ...rest: unknown[]) => string }} Resolver
 */

const noop = () => undefined;
const DIST = path.join(__dirname, '..', '..', 'dist');

/**
 * A second copy of the built library whose tracing never finds @opentelemetry/api.
 * @returns {Library}
 */
function libraryWithoutOtelApi() {
  const resolver = /** @type {Resolver} */ (/** @type {unknown} */ (Module));
  const ownCopy = new Map();
  for (const key of Object.keys(require.cache)) {
    if (key.startsWith(DIST + path.sep)) {
      ownCopy.set(key, require.cache[key]);
      delete require.cache[key];
    }
  }
  const resolve = resolver._resolveFilename;
  resolver._resolveFilename = function hideOtelApi(request, ...rest) {
    if (request === '@opentelemetry/api' || request.startsWith('@opentelemetry/api/')) {
      throw Object.assign(new Error(`Cannot find module '${request}'`), { code: 'MODULE_NOT_FOUND' });
    }
    return resolve.call(this, request, ...rest);
  };
  try {
    const lib = require(path.join(DIST, 'index.js'));
    // The API is looked for once, at the first traced call: make that happen while it is hidden.
    require(path.join(DIST, 'tracing.js'))
      .traceAcquire('bench', 'probe', async () => ({ lockId: 'probe', fencingToken: 1, signal: new globalThis.AbortController().signal }))
      .catch(noop);
    return lib;
  } finally {
    resolver._resolveFilename = resolve;
    for (const key of Object.keys(require.cache)) if (key.startsWith(DIST + path.sep)) delete require.cache[key];
    for (const [key, mod] of ownCopy) require.cache[key] = mod;
  }
}

/** The global OpenTelemetry state the rows switch between. */
function otelModes() {
  const api = require('@opentelemetry/api');
  const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, AlwaysOffSampler } = require('@opentelemetry/sdk-trace-base');
  const { AsyncLocalStorageContextManager } = require('../../test/fixtures/observability/otel-sdk.js');
  const exporter = new InMemorySpanExporter();
  const recording = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const sampledOut = new BasicTracerProvider({ sampler: new AlwaysOffSampler() });
  const contextManager = new AsyncLocalStorageContextManager();
  api.context.setGlobalContextManager(contextManager);
  api.trace.setGlobalTracerProvider(recording);
  const proxy = /** @type {import('@opentelemetry/api').ProxyTracerProvider} */ (api.trace.getTracerProvider());
  /** @param {import('@opentelemetry/api').TracerProvider | undefined} provider undefined: no SDK (the no-op delegate) */
  const use = (provider) => proxy.setDelegate(/** @type {import('@opentelemetry/api').TracerProvider} */ (provider));
  use(undefined);
  /**
   * Runs each cycle with `provider` as the SDK.
   * @param {import('@opentelemetry/api').TracerProvider} provider
   * @returns {Mode}
   */
  const traced = (provider) => async (cycle) => {
    use(provider);
    try {
      await cycle();
    } finally {
      use(undefined);
      contextManager.disable();
      // Spans pile up in memory otherwise; dropping them is part of what an exporter does.
      if (exporter.getFinishedSpans().length >= 3000) exporter.reset();
    }
  };
  return {
    /** @type {Mode} */
    none: (cycle) => cycle(),
    sampledOut: traced(sampledOut),
    recording: traced(recording),
    close: async () => {
      api.trace.disable();
      api.context.disable();
      await recording.shutdown();
      await sampledOut.shutdown();
    },
  };
}

/**
 * One row per configuration; `makeMutex(lib)` gives a DbMutex of its own for the row.
 * @param {BenchEnv} env
 * @param {(lib: Library) => Promise<DbMutex>} makeMutex
 * @param {ReturnType<typeof otelModes>} modes
 * @param {Library} bareLib
 * @returns {Promise<{ variants: Variant[], close: () => Promise<void> }>}
 */
async function rowsFor(env, makeMutex, modes, bareLib) {
  const { lib } = env;
  const mutexes = {
    default: await makeMutex(lib),
    noApi: await makeMutex(bareLib),
    metrics: await makeMutex(lib),
    metricsLabel: await makeMutex(lib),
    sampledOut: await makeMutex(lib),
    recording: await makeMutex(lib),
  };
  const { Registry } = require('prom-client');
  const handles = [
    lib.createDbMutexMetrics(mutexes.metrics, { registry: new Registry() }),
    lib.createDbMutexMetrics(mutexes.metricsLabel, { registry: new Registry(), lockLabel: (id) => id.split(':')[0] ?? id }),
  ];
  /**
   * @param {string} key
   * @param {string} label
   * @param {Library} mutexLib
   * @param {DbMutex} mutex
   * @param {Mode} mode
   * @returns {Variant}
   */
  const row = (key, label, mutexLib, mutex, mode) => ({
    key,
    label,
    cycle: (/** @type {string} */ lockId) => mode(() => mutexLib.withDbMutex(lockId, noop, { mutex })),
  });
  const variants = [
    row('default', 'shipped default: no metrics, @opentelemetry/api installed, no SDK registered', lib, mutexes.default, modes.none),
    row('no-api', 'the same without @opentelemetry/api installed', bareLib, mutexes.noApi, modes.none),
    row('metrics', 'metrics on (createDbMutexMetrics, no lock label)', lib, mutexes.metrics, modes.none),
    row('metrics-label', "metrics on with lockLabel: id => id.split(':')[0]", lib, mutexes.metricsLabel, modes.none),
    row('trace-sampled-out', 'tracing: SDK registered, sampler drops every span (AlwaysOffSampler)', lib, mutexes.sampledOut, modes.sampledOut),
    row('trace-sdk', 'tracing: SDK registered, SimpleSpanProcessor + InMemorySpanExporter (3 spans per cycle)', lib, mutexes.recording, modes.recording),
  ];
  const close = async () => {
    for (const h of handles) h.close();
    for (const m of Object.values(mutexes)) await m.close();
  };
  return { variants, close };
}

/**
 * @param {Map<string, MeasuredRow>} results
 * @param {number} digits
 * @returns {string[][]}
 */
function tableRows(results, digits) {
  const base = results.get('default');
  const baseMedian = base && !base.skipped ? base.wallUs.median : NaN;
  const baseCpu = base && !base.skipped ? base.cpuUs.median : NaN;
  return [...results.values()].map((e) =>
    e.skipped
      ? [e.variant.label, `skipped: ${e.skipped}`, '', '', '']
      : [
          e.variant.label,
          fmtSpread(e.wallUs, digits),
          fmtRatio(e.wallUs.median / baseMedian),
          fmt(e.cpuUs.median, digits),
          fmtRatio(e.cpuUs.median / baseCpu),
        ],
  );
}

/**
 * @param {BenchEnv} env
 * @returns {Promise<import('../types').Report>}
 */
async function run(env) {
  const { config, log, dialect } = env;
  const bareLib = libraryWithoutOtelApi();
  const modes = otelModes();
  try {
    // Against the database: each row's DbMutex in a scratch database of its own (one LISTEN backend each).
    const dbRows = await rowsFor(
      env,
      async (rowLib) => {
        const m = rowLib.initDbMutex(env.sequelizeFor(await env.newDatabase()), { setDefault: false });
        await m.sync();
        return m;
      },
      modes,
      bareLib,
    );
    log(`observability: ${dbRows.variants.length} rows × ${config.runs} runs × ${config.cycles} cycles (warm-up ${config.warmup})`);
    let results;
    try {
      results = await measureInterleaved(dbRows.variants, {
        cycles: config.cycles,
        runs: config.runs,
        warmup: config.warmup,
        lockIdPrefix: `bench:obs:${dialect.name}`,
        log,
      });
    } finally {
      await dbRows.close();
    }
    // The library's JavaScript alone: statements answered by a stub, so the added work is not hidden
    // behind a database round trip.
    log('observability: client-side cost with the database taken out');
    const stubRows = await rowsFor(
      env,
      async (rowLib) => {
        const m = rowLib.initDbMutex(env.sequelizeFor(env.url), { setDefault: false, listen: false });
        /** @type {any} */ (m).runner = {
          run: async (/** @type {Statement} */ statement) => dialect.stubRows(statement),
          runInTransaction: async (/** @type {Statement[]} */ statements) => statements.map(() => []),
        };
        return m;
      },
      modes,
      bareLib,
    );
    let clientResults;
    try {
      clientResults = await measureInterleaved(stubRows.variants, {
        cycles: 4000,
        runs: 5,
        warmup: 2000,
        block: 500,
        lockIdPrefix: `bench:obs-js:${dialect.name}`,
        log: () => undefined,
      });
    } finally {
      await stubRows.close();
    }
    /** @param {Map<string, MeasuredRow>} r @param {string} key */
    const stat = (r, key) => {
      const row = r.get(key);
      const base = r.get('default');
      return row && base && !row.skipped && !base.skipped ? row.wallUs.median / base.wallUs.median : NaN;
    };
    const label = dialect.label;
    const targets = [
      { name: `${label}: withDbMutex, metrics on / shipped default`, value: stat(results, 'metrics'), target: '(measured)', pass: true, fmt: fmtRatio },
      { name: `${label}: withDbMutex, tracing with a real SDK / shipped default`, value: stat(results, 'trace-sdk'), target: '(measured)', pass: true, fmt: fmtRatio },
      { name: `${label}: withDbMutex without @opentelemetry/api / shipped default (the no-op check)`, value: stat(results, 'no-api'), target: '≈ 1.00×', pass: true, fmt: fmtRatio },
    ];
    return {
      title: 'Observability: metrics and tracing on the uncontended cycle',
      intro:
        `withDbMutex(noop), heartbeat on, one cycle at a time, each row on a DbMutex of its own (own scratch database), ` +
        `${config.runs} runs of ${config.cycles} cycles, rows taking turns 20 cycles at a time. "× default" is the row's median ` +
        '/ the shipped default\'s (no metrics, @opentelemetry/api installed but no SDK registered: tracing costs one check). ' +
        'The SDK rows set the global tracer provider for each of their cycles and switch the AsyncLocalStorage context ' +
        'manager off after it, so the other rows do not pay for it. The second table answers statements with a stub ' +
        '(5 runs of 4,000 cycles): the library\'s own JavaScript, where the added work is not hidden behind a round trip. ' +
        'The per-lock history (on in the shipped default) is measured in the uncontended section, against `history: false`.',
      tables: [
        { headers: ['row', 'µs/cycle min / median / max', '× default (medians)', 'CPU µs/cycle', 'CPU × default'], rows: tableRows(results, 0) },
        { headers: ['client side only (no database)', 'µs/cycle min / median / max', '× default (medians)', 'CPU µs/cycle', 'CPU × default'], rows: tableRows(clientResults, 1) },
      ],
      targets,
    };
  } finally {
    await modes.close();
  }
}

module.exports = { run };

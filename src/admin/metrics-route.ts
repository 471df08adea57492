/**
 * `GET <mount>/metrics`: the Prometheus text of a registry, for apps that want the dashboard's
 * `authorize` in front of their metrics rather than a separate endpoint. Off unless the router gets
 * the `metrics` option (a prom-client Registry, e.g. the one given to `createDbMutexMetrics`).
 */
import type { RequestHandler } from 'express';

/** What the route needs of a prom-client Registry. */
export interface MetricsSource {
  metrics(): Promise<string> | string;
  readonly contentType: string;
}

/** Validates the router's `metrics` option at creation: null when absent. */
export function resolveMetricsOption(value: unknown): MetricsSource | null {
  if (value === undefined || value === null) return null;
  const source = value as Partial<MetricsSource>;
  if (typeof value !== 'object' || typeof source.metrics !== 'function' || typeof source.contentType !== 'string') {
    throw new TypeError(
      'createDbMutexAdminRouter: options.metrics must be a prom-client Registry (e.g. `register` from prom-client, ' +
        'or the registry given to createDbMutexMetrics)',
    );
  }
  return value as MetricsSource;
}

export function metricsRoute(source: MetricsSource): RequestHandler {
  return (_req, res, next) => {
    // The registry's own content type: the Prometheus text format version, or OpenMetrics.
    Promise.resolve()
      .then(() => source.metrics())
      .then((text) => {
        res.status(200).setHeader('Content-Type', source.contentType);
        res.send(text);
      })
      .catch(next);
  };
}

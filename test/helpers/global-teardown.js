'use strict';
module.exports = async function globalTeardown() {
  const pg = globalThis.__dbMutexEmbeddedPg;
  // Stopping a throw-away cluster also deletes its folder (and the binaries copied there, if any).
  if (pg) await pg.stop();
};

'use strict';
module.exports = async function globalTeardown() {
  const pg = globalThis.__dbMutexEmbeddedPg;
  if (pg) {
    await pg.stop();
    require('node:fs').rmSync(pg.dataDir, { recursive: true, force: true });
  }
};

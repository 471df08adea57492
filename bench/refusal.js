// @ts-check
'use strict';
/**
 * What a refused attempt and an uncontended acquire+release cost, for two builds of the library side
 * by side (e.g. before and after a change of the acquire statement), on the database at DATABASE_URL:
 *
 *   node bench/refusal.js [dist-A] [dist-B]      (default: ./dist alone)
 *
 * Each build gets its own Sequelize instance and tables; blocks of attempts alternate between the
 * builds so that load from other processes hits both alike. Prints the median time per operation of
 * each build, in microseconds, and B/A. REFUSAL_ROUNDS (default 15) blocks of REFUSAL_BLOCK (default
 * 200) operations each.
 */
const path = require('node:path');
const { randomBytes } = require('node:crypto');
const { Sequelize } = require('sequelize');

const url = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
const rounds = Number(process.env.REFUSAL_ROUNDS || 15);
const block = Number(process.env.REFUSAL_BLOCK || 200);
const builds = (process.argv.length > 2 ? process.argv.slice(2) : ['dist']).map((d) => path.resolve(d));

const { median } = require('./lib/stats');

/**
 * @param {string} dir a build of the library (a dist/ folder)
 * @param {number} i
 */
async function setup(dir, i) {
  /** @type {import('./types').Library} */
  const lib = require(dir);
  const tableName = `bench_refusal_${i}_${randomBytes(3).toString('hex')}`;
  // The history table named as sync() names it, so that dropSchema removes it too.
  const names = { tableName, eventsTableName: `${tableName}_ev`, historyTableName: `${tableName}_history` };
  const make = () => new Sequelize(url, { logging: false, pool: { max: 2 } });
  const holderDb = make();
  const rivalDb = make();
  const holder = lib.initDbMutex(holderDb, { ...names, setDefault: false, holder: 'holder', listen: false });
  const rival = lib.initDbMutex(rivalDb, { ...names, setDefault: false, holder: 'rival', listen: false });
  await holder.sync();
  const held = await holder.acquire('busy', { heartbeat: false, ttlSeconds: 3600 });
  return {
    dir,
    /** @type {number[]} µs per refused attempt, one figure per block */
    refused: [],
    /** @type {number[]} µs per acquire + release, one figure per block */
    cycle: [],
    async refuse() {
      const t = performance.now();
      for (let n = 0; n < block; n++) await rival.acquire('busy').then(() => { throw new Error('acquired a held lock'); }, () => undefined);
      this.refused.push(((performance.now() - t) / block) * 1000);
    },
    async acquireRelease() {
      const t = performance.now();
      for (let n = 0; n < block; n++) await (await rival.acquire('free', { heartbeat: false })).release();
      this.cycle.push(((performance.now() - t) / block) * 1000);
    },
    async close() {
      await held.release();
      await rival.close();
      await holder.close();
      await lib.dropSchema(holderDb.getQueryInterface(), names);
      await holderDb.close();
      await rivalDb.close();
    },
  };
}

async function main() {
  const subjects = [];
  for (const [i, dir] of builds.entries()) subjects.push(await setup(dir, i));
  try {
    // Warm-up: prepared statements, pools, JIT.
    for (const s of subjects) {
      await s.refuse();
      await s.acquireRelease();
      s.refused.length = 0;
      s.cycle.length = 0;
    }
    for (let r = 0; r < rounds; r++) {
      for (const s of r % 2 ? [...subjects].reverse() : subjects) {
        await s.refuse();
        await s.acquireRelease();
      }
    }
    console.log(`${url.replace(/\/\/[^@]*@/, '//')} — ${rounds} blocks of ${block}, median µs per operation`);
    for (const s of subjects) {
      console.log(`${path.relative(process.cwd(), s.dir) || '.'}: refused attempt ${median(s.refused).toFixed(0)} µs, acquire+release ${median(s.cycle).toFixed(0)} µs`);
    }
    const [a, b] = subjects;
    if (a && b) {
      console.log(`B/A: refused ${(median(b.refused) / median(a.refused)).toFixed(3)}, acquire+release ${(median(b.cycle) / median(a.cycle)).toFixed(3)}`);
    }
  } finally {
    for (const s of subjects) await s.close();
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});

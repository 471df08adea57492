// @ts-check
'use strict';
/**
 * Adopted levers undone, through the library's bench seam (dist/internal/bench-seam.js; not public
 * API). A dialect file lists its levers as LEVERS_UNDONE (type LeverUndone in bench/types.d.ts): the
 * store operation a lever lives in, how to rewrite that operation's statement with the lever undone,
 * and a probe that makes the store build that statement once, so a rewrite that no longer recognises
 * the library's SQL leaves its rows out instead of measuring the wrong thing. The DbMutex is built
 * with the variant from the start; nothing patches a private field.
 */
const path = require('node:path');

/** The bench's tables: the library's defaults, as each bench DbMutex's sync() makes them (history: `<tableName>_history`). */
const NAMES = { tableName: 'db_mutex_locks', eventsTableName: 'db_mutex_events', historyTableName: 'db_mutex_locks_history' };

/**
 * The library's bench seam from dist/, or null when this build has none. Typed from src/
 * (bench/types.d.ts); the path is built at run time so that the type check does not need a build.
 * @returns {import('../types').BenchSeam | null}
 */
function benchSeam() {
  try {
    return require(path.join(__dirname, '..', '..', 'dist', 'internal', 'bench-seam.js'));
  } catch {
    return null;
  }
}

/**
 * True when every named lever can be undone on this build (its rewrite recognises the library's statement).
 * @param {import('../types').BenchDialect} dialect
 * @param {readonly string[]} names
 */
async function leversApply(dialect, names) {
  const seam = benchSeam();
  if (!seam) return false;
  for (const name of names) {
    const lever = dialect.LEVERS_UNDONE[name];
    if (!lever) return false;
    if (lever.probe && !lever.rewrite(await seam.statementOf(dialect.name, NAMES, lever.probe))) return false;
  }
  return true;
}

/**
 * The statement variant that undoes the named levers, each on its own operation's statements.
 * @param {import('../types').BenchDialect} dialect
 * @param {readonly string[]} names
 * @returns {import('../../src/dialects/types').StatementVariant}
 */
function undoing(dialect, names) {
  const levers = names.map((name) => {
    const lever = dialect.LEVERS_UNDONE[name];
    if (!lever) throw new Error(`no lever ${name} on ${dialect.name}`);
    return lever;
  });
  return (operation, statement) =>
    levers.reduce((s, lever) => (lever.operation === null || lever.operation === operation ? (lever.rewrite(s) ?? s) : s), statement);
}

/**
 * A DbMutex on `sequelize` with the named levers undone (none: the library as shipped, through
 * `lib.initDbMutex`). Null when one of them cannot be undone on this build.
 * @param {import('../types').Library} lib
 * @param {import('../types').BenchDialect} dialect
 * @param {import('sequelize').Sequelize} sequelize
 * @param {import('../../src/options').DbMutexOptions} options
 * @param {readonly string[]} names
 * @returns {Promise<import('../types').DbMutex | null>}
 */
async function mutexWithLeversUndone(lib, dialect, sequelize, options, names = []) {
  if (names.length === 0) return lib.initDbMutex(sequelize, options);
  const seam = benchSeam();
  if (!seam || !(await leversApply(dialect, names))) return null;
  return seam.variantDbMutex(sequelize, options, undoing(dialect, names));
}

module.exports = { NAMES, benchSeam, leversApply, mutexWithLeversUndone };

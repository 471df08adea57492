'use strict';
/**
 * Adopted levers undone, through the library's bench seam (dist/internal/bench-seam.js; not public
 * API). A dialect file lists its levers as LEVERS_UNDONE: { name: { label, affectsRefusal?, operation,
 * rewrite, probe? } }:
 * - `operation`: the store operation whose statement the lever lives in ('acquire', 'release', …),
 *   or null for every statement;
 * - `rewrite(statement)`: that statement with the lever undone, or null when it does not recognise
 *   the library's SQL (the library changed: the row is then left out, not measured wrongly);
 * - `probe(store)`: calls the operation once, so `rewrite` can be checked against this build's SQL
 *   before any row runs.
 * The DbMutex is built with the variant from the start; nothing patches a private field.
 */
const path = require('node:path');

const NAMES = { tableName: 'db_mutex_locks', eventsTableName: 'db_mutex_events' };

/** The library's bench seam, or null when this build has none. */
function benchSeam() {
  try {
    return require(path.join(__dirname, '..', '..', 'dist', 'internal', 'bench-seam.js'));
  } catch {
    return null;
  }
}

/** True when every named lever can be undone on this build (its rewrite recognises the library's statement). */
async function leversApply(dialect, names) {
  const seam = benchSeam();
  if (!seam) return false;
  for (const name of names) {
    const lever = dialect.LEVERS_UNDONE && dialect.LEVERS_UNDONE[name];
    if (!lever) return false;
    if (lever.probe && !lever.rewrite(await seam.statementOf(dialect.name, NAMES, lever.probe))) return false;
  }
  return true;
}

/** The statement variant that undoes the named levers (each on its own operation's statements). */
function undoing(dialect, names) {
  const levers = names.map((name) => dialect.LEVERS_UNDONE[name]);
  return (operation, statement) =>
    levers.reduce((s, lever) => (lever.operation === null || lever.operation === operation ? (lever.rewrite(s) ?? s) : s), statement);
}

/**
 * A DbMutex on `sequelize` with the named levers undone (none: the library as shipped, through
 * `lib.initDbMutex`). Null when one of them cannot be undone on this build.
 */
async function mutexWithLeversUndone(lib, dialect, sequelize, options, names = []) {
  if (names.length === 0) return lib.initDbMutex(sequelize, options);
  if (!(await leversApply(dialect, names))) return null;
  return benchSeam().variantDbMutex(sequelize, options, undoing(dialect, names));
}

module.exports = { NAMES, benchSeam, leversApply, mutexWithLeversUndone };

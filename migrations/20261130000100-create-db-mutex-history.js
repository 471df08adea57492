'use strict';
/**
 * sequelize-cli migration: the lock history table (one row per acquisition that ended: who held it,
 * for how long, how it ended). A third step after the lock table and the lock kinds; safe to run while
 * processes hold locks (it only creates a table), and so is its `down`: processes that still write
 * history then turn it off for themselves and keep every lock. The schema is defined once, in src/schema.ts.
 */
const { createHistorySchema, dropHistorySchema } = require('../dist/schema.js');

module.exports = {
  async up(queryInterface) {
    await createHistorySchema(queryInterface);
  },
  async down(queryInterface) {
    await dropHistorySchema(queryInterface);
  },
};

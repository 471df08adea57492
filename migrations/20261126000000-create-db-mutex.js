'use strict';
/**
 * sequelize-cli migration: the lock table, its fencing-token sequence and the audit table.
 * The schema itself is defined once, in the package (src/schema.ts); mutex.sync() builds the same.
 * In your app, add a migration file containing:
 *   module.exports = require('sequelize-db-mutex/migration');
 */
const { createSchema, dropSchema } = require('../dist/index.js');

module.exports = {
  async up(queryInterface) {
    await createSchema(queryInterface);
  },
  async down(queryInterface) {
    await dropSchema(queryInterface);
  },
};

'use strict';
/**
 * sequelize-cli migration: what a row of the lock table is (`kind`: lock, semaphore permit or election
 * lock) and, for a counting semaphore's permit, its semaphore id, permit number and limit; plus the
 * index semaphore acquisitions count through. On a table the first migration created with these
 * columns already (a fresh install) it adds nothing. The schema is defined once, in src/schema.ts.
 */
const { upgradeSchema, downgradeSchema } = require('../dist/schema.js');

module.exports = {
  async up(queryInterface) {
    await upgradeSchema(queryInterface);
  },
  async down(queryInterface) {
    await downgradeSchema(queryInterface);
  },
};

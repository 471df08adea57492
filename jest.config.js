'use strict';
const path = require('node:path');

/**
 * DB_MUTEX_TEST_PACKAGE_DIR (set by scripts/test-express4.sh): a scratch app in which the packed tarball
 * is installed next to other versions of its peers (Express 4). The tests then load the package from
 * there instead of src/, and `express` and `sequelize` from there too, so the package, its peers and the
 * tests' host apps are the same copies, as in a user's app.
 */
function packageUnderTest() {
  const dir = process.env.DB_MUTEX_TEST_PACKAGE_DIR;
  if (!dir) return {};
  const modules = path.resolve(dir, 'node_modules');
  return {
    moduleNameMapper: {
      '^(\\.\\./)+src$': path.join(modules, 'sequelize-db-mutex'),
      '^express(/.*)?$': `${path.join(modules, 'express')}$1`,
      '^sequelize$': path.join(modules, 'sequelize'),
    },
  };
}

/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json', diagnostics: { warnOnly: false } }] },
  testMatch: ['<rootDir>/test/**/*.test.ts'],
  globalSetup: '<rootDir>/test/helpers/global-setup.js',
  globalTeardown: '<rootDir>/test/helpers/global-teardown.js',
  testTimeout: 60000,
  // Each file has its own database, so files run in parallel safely.
  maxWorkers: process.env.CI ? 2 : '50%',
  ...packageUnderTest(),
};

'use strict';
// sequelize-cli reads its connection from DATABASE_URL, for every environment.
const url = process.env.DATABASE_URL;
if (!url) {
  throw new Error('DATABASE_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)');
}
const config = { url, logging: false };
module.exports = { development: config, test: config, production: config };

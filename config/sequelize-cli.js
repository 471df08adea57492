'use strict';
// sequelize-cli reads its connection from DATABASE_URL, for every environment. The URL is parsed by
// the package's own reader (the one `db-mutex` uses) and handed over as separate options: given the
// URL itself, Sequelize parses it with Node's legacy `url.parse`, whose deprecation warning (DEP0170)
// prints the whole URL, password included, for URLs such as `postgres://app:Pa#ss@db/app`.
const url = process.env.DATABASE_URL;
if (!url) {
  throw new Error('DATABASE_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)');
}
let reader;
try {
  reader = require('../dist/cli/database-url');
} catch {
  throw new Error('the package is not built: run `npm run build` first (the migrations read DATABASE_URL with dist/cli/database-url.js)');
}
const config = reader.sequelizeOptions(reader.parseDatabaseUrl(url), { logging: false });
module.exports = { development: config, test: config, production: config };

/**
 * The tarball from `npm pack`, installed into a separate app, works with both require() and import.
 * (Uses the npm cache; packages come from the registry only if the cache lacks them.)
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createTestDatabase, dialect, type TestDatabase, type TestDialect } from './helpers/db';

const run = promisify(execFile);
const root = join(__dirname, '..');
let app: string;
let db: TestDatabase;

/**
 * The driver the consumer installs next to sequelize, as a user of this run's database would. sqlite3
 * has no prebuilt binary reachable offline and compiles from source (minutes on CI), so the consumer
 * links the copy this repository already built; --ignore-scripts keeps npm from rebuilding it in place.
 */
const DRIVER: Record<TestDialect, { spec: string; npmFlags: string[] }> = {
  postgres: { spec: 'pg@8', npmFlags: [] },
  mariadb: { spec: 'mariadb@3', npmFlags: [] },
  mysql: { spec: 'mysql2@3', npmFlags: [] },
  sqlite: { spec: join(root, 'node_modules', 'sqlite3'), npmFlags: ['--ignore-scripts'] },
};

beforeAll(async () => {
  db = await createTestDatabase();
  app = mkdtempSync(join(tmpdir(), 'db-mutex-app-'));
  const { stdout } = await run('npm', ['pack', '--silent', '--pack-destination', app], { cwd: root });
  const tarball = join(app, stdout.trim().split('\n').pop()!);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
  const driver = DRIVER[dialect];
  await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', ...driver.npmFlags, tarball, 'sequelize@6', driver.spec], {
    cwd: app,
    timeout: 240_000,
  });
}, 300_000);

afterAll(async () => {
  rmSync(app, { recursive: true, force: true });
  await db.drop();
});

const program = (style: 'cjs' | 'esm') => `
${style === 'cjs'
    ? "const { Sequelize } = require('sequelize');\nconst { initDbMutex, withDbMutex, DbMutexError, DbMutexTimeoutError } = require('sequelize-db-mutex');"
    : "import { Sequelize } from 'sequelize';\nimport { initDbMutex, withDbMutex, DbMutexError, DbMutexTimeoutError } from 'sequelize-db-mutex';"}
const main = async () => {
  const sequelize = new Sequelize(process.env.DATABASE_URL, { logging: false });
  const mutex = initDbMutex(sequelize);
  await mutex.sync();
  const out = await withDbMutex('${style}-job', async (lock) => lock.fencingToken > 0 ? 'ran' : 'bad');
  await mutex.close();
  await sequelize.close();
  console.log(out, typeof DbMutexError, typeof DbMutexTimeoutError);
};
main().catch((e) => { console.error(e); process.exit(1); });
`;

describe('the packed package', () => {
  it('works with require() in a separate app', async () => {
    writeFileSync(join(app, 'main.cjs'), program('cjs'));
    const { stdout } = await run(process.execPath, ['main.cjs'], { cwd: app, env: { ...process.env, DATABASE_URL: db.url } });
    expect(stdout.trim()).toBe('ran function function');
  });

  it('works with import in a separate app', async () => {
    writeFileSync(join(app, 'main.mjs'), program('esm'));
    const { stdout } = await run(process.execPath, ['main.mjs'], { cwd: app, env: { ...process.env, DATABASE_URL: db.url } });
    expect(stdout.trim()).toBe('ran function function');
  });

  it('ships the migrations so an app can re-export them', async () => {
    const { stdout } = await run(process.execPath, ['-e', "console.log(typeof require('sequelize-db-mutex/migration').up)"], { cwd: app });
    expect(stdout.trim()).toBe('function');
    const kinds = await run(process.execPath, ['-e', "console.log(typeof require('sequelize-db-mutex/migration-kinds').down)"], { cwd: app });
    expect(kinds.stdout.trim()).toBe('function');
    const history = await run(process.execPath, ['-e', "console.log(typeof require('sequelize-db-mutex/migration-history').up)"], { cwd: app });
    expect(history.stdout.trim()).toBe('function');
  });
});

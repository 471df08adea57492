import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from 'pg';
import { initDbMutex } from '../../src';
import { createTestDatabase, makeSequelize, type TestDatabase } from '../helpers/db';

const run = promisify(execFile);
const root = join(__dirname, '..', '..');
const databases: TestDatabase[] = [];

afterAll(async () => {
  for (const db of databases) await db.drop();
});

async function fresh(): Promise<TestDatabase> {
  const db = await createTestDatabase();
  databases.push(db);
  return db;
}

function sequelizeCli(db: TestDatabase, ...args: string[]) {
  return run(process.execPath, [join(root, 'node_modules', 'sequelize-cli', 'lib', 'sequelize'), ...args], {
    cwd: root,
    env: { ...process.env, DATABASE_URL: db.url },
  });
}

/** Everything that defines the schema, in a comparable form. */
async function describeSchema(url: string) {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    const columns = await c.query(`SELECT table_name, column_name, data_type, is_nullable, column_default, character_maximum_length, datetime_precision
      FROM information_schema.columns WHERE table_schema = 'public' AND table_name LIKE 'db_mutex%' ORDER BY table_name, column_name`);
    const indexes = await c.query(`SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename LIKE 'db_mutex%' ORDER BY indexname`);
    const sequences = await c.query(`SELECT sequence_name, data_type FROM information_schema.sequences WHERE sequence_schema = 'public' ORDER BY sequence_name`);
    return { columns: columns.rows, indexes: indexes.rows, sequences: sequences.rows };
  } finally {
    await c.end();
  }
}

describe('schema', () => {
  it('creates exactly the same schema through the sequelize-cli migration, mutex.sync() and a host app\'s sequelize.sync()', async () => {
    const viaMigration = await fresh();
    await sequelizeCli(viaMigration, 'db:migrate');

    const viaSync = await fresh();
    const s1 = makeSequelize(viaSync.url);
    await initDbMutex(s1, { setDefault: false }).sync();
    await s1.close();

    const viaHost = await fresh();
    const s2 = makeSequelize(viaHost.url);
    initDbMutex(s2, { setDefault: false });
    await s2.sync();
    await s2.close();

    const expected = await describeSchema(viaMigration.url);
    expect(expected.columns.length).toBeGreaterThanOrEqual(20);
    expect(expected.sequences.map((r) => r.sequence_name)).toContain('db_mutex_locks_fencing_seq');
    expect(await describeSchema(viaSync.url)).toEqual(expected);
    expect(await describeSchema(viaHost.url)).toEqual(expected);
  });

  it('does no harm when sync() runs twice, or after the migration', async () => {
    const db = await fresh();
    await sequelizeCli(db, 'db:migrate');
    const before = await describeSchema(db.url);
    const s = makeSequelize(db.url);
    const mutex = initDbMutex(s, { setDefault: false });
    await mutex.sync();
    await mutex.sync();
    const lock = await mutex.acquire('after-sync');
    await lock.release();
    await mutex.close();
    await s.close();
    expect(await describeSchema(db.url)).toEqual(before);
  });

  it('round-trips migrate, undo and migrate again with sequelize-cli', async () => {
    const db = await fresh();
    await sequelizeCli(db, 'db:migrate');
    await sequelizeCli(db, 'db:migrate:undo');
    const empty = await describeSchema(db.url);
    expect(empty.columns).toEqual([]);
    expect(empty.sequences).toEqual([]);
    await sequelizeCli(db, 'db:migrate');
    expect((await describeSchema(db.url)).columns.length).toBeGreaterThanOrEqual(20);
  });

  it('refuses an unsupported dialect at initDbMutex with an error naming the supported ones', () => {
    const fake = { getDialect: () => 'mssql' } as unknown as Parameters<typeof initDbMutex>[0];
    expect(() => initDbMutex(fake)).toThrow(/does not support the "mssql" dialect; supported: postgres/);
  });
});

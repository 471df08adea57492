import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { QueryTypes } from 'sequelize';
import { initDbMutex } from '../../src';
import { downgradeSchema } from '../../src/schema';
import { ensureBuilt } from '../helpers/built';
import { createTestDatabase, describeSchema, isMariaDb, itIf, makeSequelize, type TestDatabase } from '../helpers/db';

const run = promisify(execFile);
const root = join(__dirname, '..', '..');
const databases: TestDatabase[] = [];

// The sequelize-cli migration requires the built package (dist/).
beforeAll(() => ensureBuilt(), 180_000);

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
    expect(expected.fencing.some((name) => name.startsWith('db_mutex_locks_fencing'))).toBe(true);
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

  it('lets several instances starting together run sync() on the same database at once', async () => {
    // Instances of an app usually start together; each one's sync() must succeed, whatever the
    // others' DDL is doing at that moment (PostgreSQL refuses concurrent CREATE OR REPLACE FUNCTION).
    const db = await fresh();
    const s = makeSequelize(db.url);
    await initDbMutex(s, { setDefault: false }).sync();
    const instances = Array.from({ length: 6 }, () => makeSequelize(db.url));
    try {
      for (let round = 0; round < 5; round++) {
        await Promise.all(instances.map((i) => initDbMutex(i, { setDefault: false }).sync()));
      }
    } finally {
      await Promise.all([s, ...instances].map((i) => i.close()));
    }
  });

  it('round-trips migrate, undo and migrate again with sequelize-cli', async () => {
    const db = await fresh();
    await sequelizeCli(db, 'db:migrate');
    await sequelizeCli(db, 'db:migrate:undo:all');
    const empty = await describeSchema(db.url);
    expect(empty.columns).toEqual([]);
    expect(empty.fencing).toEqual([]);
    await sequelizeCli(db, 'db:migrate');
    expect((await describeSchema(db.url)).columns.length).toBeGreaterThanOrEqual(20);
  });

  it('upgrades a lock table of the first migration\'s earlier shape with the second migration, to what a fresh install has', async () => {
    const reference = await fresh();
    await sequelizeCli(reference, 'db:migrate');
    const expected = await describeSchema(reference.url);

    const db = await fresh();
    await sequelizeCli(db, 'db:migrate', '--to', '20261126000000-create-db-mutex.js');
    const s = makeSequelize(db.url);
    try {
      // Back to the lock table an earlier version created (no kind columns), with a lock in it.
      await downgradeSchema(s.getQueryInterface());
      const columns = (await describeSchema(db.url)).columns.map((c) => JSON.stringify(c));
      expect(columns.some((c) => c.includes('permit_limit'))).toBe(false);
      await s.query(`INSERT INTO db_mutex_locks (lock_id, owner_token, fencing_token, holder, hostname, pid, acquired_at, heartbeat_at)
        VALUES ('old', '11111111-1111-1111-1111-111111111111', 1, 'h', 'host', 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00')`);
    } finally {
      await s.close();
    }
    await sequelizeCli(db, 'db:migrate');
    expect(await describeSchema(db.url)).toEqual(expected);
    const s2 = makeSequelize(db.url);
    try {
      const rows = await s2.query(`SELECT lock_id, kind FROM db_mutex_locks`, { type: QueryTypes.SELECT });
      expect(rows).toEqual([{ lock_id: 'old', kind: 'lock' }]);
    } finally {
      await s2.close();
    }
  });

  it('refuses an unsupported dialect at initDbMutex with an error naming the supported ones', () => {
    const fake = { getDialect: () => 'mssql' } as unknown as Parameters<typeof initDbMutex>[0];
    expect(() => initDbMutex(fake)).toThrow(/does not support the "mssql" dialect; supported: postgres, mariadb, mysql, sqlite$/);
    expect(() => initDbMutex(fake)).toThrow(expect.objectContaining({ code: 'DB_MUTEX_UNSUPPORTED_DIALECT' }));
  });

  itIf(isMariaDb)('uses utf8mb4 with an exact (binary, no-pad) collation and DYNAMIC rows on MariaDB, whatever the database default', async () => {
    // A database whose default character set cannot even store an emoji, and which compares case-insensitively.
    const db = await fresh();
    const s = makeSequelize(db.url);
    try {
      await s.query(`ALTER DATABASE \`${db.name}\` CHARACTER SET latin1 COLLATE latin1_swedish_ci`);
      const mutex = initDbMutex(s, { setDefault: false });
      await mutex.sync();
      const { tables, columns } = await describeSchema(db.url);
      expect(tables.map((t) => [t.TABLE_NAME, t.ROW_FORMAT, t.TABLE_COLLATION])).toEqual([
        ['db_mutex_events', 'Dynamic', 'utf8mb4_nopad_bin'],
        ['db_mutex_locks', 'Dynamic', 'utf8mb4_nopad_bin'],
        ['db_mutex_locks_history', 'Dynamic', 'utf8mb4_nopad_bin'],
      ]);
      const lockId = columns.find((c) => c.TABLE_NAME === 'db_mutex_locks' && c.COLUMN_NAME === 'lock_id')!;
      expect([lockId.COLUMN_TYPE, lockId.COLLATION_NAME, lockId.COLUMN_KEY]).toEqual(['varchar(255)', 'utf8mb4_nopad_bin', 'PRI']);
      // 255 four-byte characters: a 1020-byte primary key, within InnoDB's 3072-byte limit for DYNAMIC rows.
      const id = '🔒'.repeat(255);
      const lock = await mutex.acquire(id);
      expect((await mutex.inspect(id))?.lockId).toBe(id);
      await lock.release();
      await mutex.close();
    } finally {
      await s.close();
    }
  });

  it('keeps the fencing counter when sync() runs again on a database that already has locks', async () => {
    const db = await fresh();
    const s = makeSequelize(db.url);
    try {
      const mutex = initDbMutex(s, { setDefault: false });
      await mutex.sync();
      const first = await mutex.acquire('counter-survives');
      await first.release();
      await mutex.sync();
      const again = initDbMutex(s, { setDefault: false });
      await again.sync();
      const second = await again.acquire('counter-survives');
      expect(second.fencingToken).toBeGreaterThan(first.fencingToken);
      await second.release();
      await again.close();
      await mutex.close();
    } finally {
      await s.close();
    }
  });

});

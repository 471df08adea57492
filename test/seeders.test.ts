import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Client } from 'pg';
import type { DbMutex } from '../src';
import { ensureBuilt, ROOT } from './helpers/built';
import { dialect, TestContext } from './helpers/db';

const SEQUELIZE_CLI = path.join(ROOT, 'node_modules', 'sequelize-cli', 'lib', 'sequelize');
const SEEDED_LOCK_IDS = ['billing:sync', 'cache:warmup', 'import/customers 2026-11', 'nightly-report', 'search:reindex'];

// The demo seeder writes PostgreSQL SQL (sequence, ON CONFLICT, casts); other dialects skip this file.
const describePostgres = dialect === 'postgres' ? describe : describe.skip;

describePostgres('sequelize-cli migration and demo seeders (PostgreSQL)', () => {
  let ctx: TestContext;
  let client: Client;
  let mutex: DbMutex;

  /** Runs sequelize-cli exactly as the README tells users to, against this file's own database. */
  async function sequelizeCli(...args: string[]): Promise<string> {
    const { stdout } = await promisify(execFile)(process.execPath, [SEQUELIZE_CLI, ...args], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: ctx.db.url },
      timeout: 60_000,
    });
    return stdout;
  }

  async function count(table: string): Promise<number> {
    return Number((await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`)).rows[0]!.n);
  }

  async function tokens(): Promise<Record<string, number>> {
    const rows = (await client.query<{ lock_id: string; fencing_token: string }>('SELECT lock_id, fencing_token FROM db_mutex_locks')).rows;
    return Object.fromEntries(rows.map((r) => [r.lock_id, Number(r.fencing_token)]));
  }

  beforeAll(async () => {
    await ensureBuilt();
    ctx = await TestContext.create();
    client = await ctx.client();
    await sequelizeCli('db:migrate');
  });
  afterAll(() => ctx.cleanup());

  it('seeds active, expired and heartbeat-overdue locks plus audit entries, by the database clock', async () => {
    await sequelizeCli('db:seed:all');
    mutex = await ctx.mutex();
    const locks = await mutex.list();
    expect(locks.map((l) => l.lockId).sort()).toEqual(SEEDED_LOCK_IDS);
    const byId = Object.fromEntries(locks.map((l) => [l.lockId, l]));
    expect(await mutex.counts()).toEqual({ total: 5, stale: 2, active: 3 });
    // Expired: its expiry is in the past by the database clock.
    expect(byId['cache:warmup']!.stale).toBe(true);
    expect(byId['cache:warmup']!.expiresAt!.getTime()).toBeLessThan(byId['cache:warmup']!.dbNow.getTime());
    // Heartbeat overdue: not expired yet, but stale.
    expect(byId['search:reindex']!.stale).toBe(true);
    expect(byId['search:reindex']!.expiresAt!.getTime()).toBeGreaterThan(byId['search:reindex']!.dbNow.getTime());
    for (const id of ['nightly-report', 'billing:sync', 'import/customers 2026-11']) expect(byId[id]!.stale).toBe(false);
    const events = await mutex.events();
    expect(events).toHaveLength(4);
    expect(new Set(events.map((e) => e.action))).toEqual(new Set(['force-release', 'release-stale', 'purge-expired']));
    // Events are older than the current locks, so their tokens come first in the sequence.
    expect(Math.max(...events.map((e) => e.fencingToken))).toBeLessThan(Math.min(...locks.map((l) => l.fencingToken)));
  });

  it('does no harm when run a second time', async () => {
    const before = await tokens();
    await sequelizeCli('db:seed:all');
    expect(await count('db_mutex_locks')).toBe(5);
    expect(await count('db_mutex_events')).toBe(4);
    expect(await tokens()).toEqual(before);
  });

  it('leaves seeded locks that behave like real ones: held ones refuse, expired ones are taken over with a higher token', async () => {
    const seeded = await tokens();
    await expect(mutex.acquire('nightly-report')).rejects.toMatchObject({ code: 'DB_MUTEX_HELD' });
    const lock = await mutex.acquire('cache:warmup');
    expect(lock.fencingToken).toBeGreaterThan(seeded['cache:warmup']!);
    await lock.release();
  });

  it('undoes only the seeded rows, keeping real locks and real audit entries', async () => {
    // A real holder now owns one of the seeded lock ids, and there is one real audit entry.
    const real = await mutex.acquire('cache:warmup', { ttlSeconds: 600 });
    const other = await mutex.acquire('payroll:export', { ttlSeconds: 600 });
    await mutex.forceRelease({ lockId: 'payroll:export', operator: 'dave@ops', reason: 'real entry' });
    expect(other.isHeld()).toBe(false);
    await sequelizeCli('db:seed:undo:all');
    const left = await mutex.list();
    expect(left.map((l) => [l.lockId, l.fencingToken])).toEqual([['cache:warmup', real.fencingToken]]);
    const events = await mutex.events();
    expect(events.map((e) => [e.lockId, e.operator])).toEqual([['payroll:export', 'dave@ops']]);
    await real.release();
  });

  it('is undone by db:migrate:undo:all, which drops the tables and the sequence', async () => {
    await sequelizeCli('db:migrate:undo:all');
    const { rows } = await client.query<{ n: string }>(
      `SELECT count(*) AS n FROM pg_class WHERE relname IN ('db_mutex_locks', 'db_mutex_events', 'db_mutex_locks_fencing_seq')`,
    );
    expect(Number(rows[0]!.n)).toBe(0);
  });
});

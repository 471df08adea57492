/**
 * PostgreSQL's acquire leaves a live lock row alone without locking it (`ON CONFLICT DO NOTHING`
 * plus `UPDATE … WHERE expired`), so a refused attempt never waits for, or queues in front of, the
 * holder's own statements on that row. Taking over an expired row still goes through the row lock
 * and rechecks expiry on the newest row version. Both are shown with a second connection holding
 * the row lock in an open transaction, as a holder's release or renewal in flight does.
 * (MariaDB's acquire locks the row in either case; SQLite serialises every writer on the file.)
 */
import type { Client } from 'pg';
import { DbMutexError, type DbMutex } from '../../src';
import { dialect, itIf, TestContext } from '../helpers/db';
import { waitUntil } from '../helpers/wait';

const isPostgres = dialect === 'postgres';

let ctx: TestContext | undefined;
let holder: DbMutex;
let rival: DbMutex;
let rowLocker: Client;

beforeAll(async () => {
  if (!isPostgres) return;
  ctx = await TestContext.create();
  holder = await ctx.mutex({ holder: 'holder' });
  // A short statement timeout: an attempt that waited on the row lock would fail with a timeout
  // instead of the refusal the tests expect.
  rival = await ctx.mutex({ holder: 'rival', statementTimeoutMs: 3000 });
  rowLocker = await ctx.client();
});
afterAll(async () => {
  await ctx?.cleanup();
});

async function lockRowInOpenTransaction(lockId: string): Promise<void> {
  await rowLocker.query('BEGIN');
  const r = await rowLocker.query(`SELECT lock_id FROM ${ctx!.quote(holder.options.tableName)} WHERE lock_id = $1 FOR UPDATE`, [lockId]);
  expect(r.rowCount).toBe(1);
}

async function backendsWaitingOnALock(): Promise<number> {
  const r = await rowLocker.query(
    `SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`,
  );
  return r.rows[0].n as number;
}

describe('a refused acquire on PostgreSQL', () => {
  itIf(isPostgres)('is refused at once while another transaction holds the live row locked, without waiting for it', async () => {
    const lock = await holder.acquire('busy-row', { heartbeat: false });
    await lockRowInOpenTransaction('busy-row');
    // The rival has its own pool, as a second server would.
    try {
      const attempt = await rival.acquire('busy-row').then(
        () => 'acquired',
        (error: unknown) => (error instanceof DbMutexError ? { code: error.code, holder: error.holder, expiresAt: error.expiresAt } : error),
      );
      // The holder's row is read from the statement's snapshot, not locked: it still names the holder.
      expect(attempt).toEqual({ code: 'DB_MUTEX_HELD', holder: 'holder', expiresAt: lock.expiresAt });
    } finally {
      await rowLocker.query('COMMIT');
    }
    await lock.release();
  });

  itIf(isPostgres)('takes over an expired row only after the row lock, and rechecks expiry on the row as it then is', async () => {
    const stale = await holder.acquire('expired-row', { heartbeat: false });
    await ctx!.sql.expireLock('expired-row');
    await lockRowInOpenTransaction('expired-row');
    let settled = false;
    const attempt = rival.acquire('expired-row', { heartbeat: false }).then(
      (lock) => {
        settled = true;
        return lock;
      },
      (error: unknown) => {
        settled = true;
        return error;
      },
    );
    try {
      // The takeover waits on the row lock (it must not read the expired row and write past it).
      await waitUntil(async () => (await backendsWaitingOnALock()) === 1, 5000, 'the takeover to wait on the row lock', 10);
      expect(settled).toBe(false);
      // Meanwhile the row becomes live again (as if another taker renewed it) and that commits.
      await rowLocker.query(
        `UPDATE ${ctx!.quote(holder.options.tableName)} SET expires_at = now() + interval '1 hour' WHERE lock_id = $1`,
        ['expired-row'],
      );
    } finally {
      await rowLocker.query('COMMIT');
    }
    const outcome = await attempt;
    expect(outcome).toBeInstanceOf(DbMutexError);
    expect((outcome as DbMutexError).code).toBe('DB_MUTEX_HELD');
    expect((await holder.inspect('expired-row'))?.fencingToken).toBe(stale.fencingToken);
    await ctx!.sql.deleteLock('expired-row');
  });
});

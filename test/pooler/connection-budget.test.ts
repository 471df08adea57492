/**
 * The connections a process costs, counted on the SERVER (pg_stat_activity by application_name):
 * the LISTEN connection is open only while this process waits for or holds a lock (plus
 * `listenIdleMs`), and waiting never holds a pooled connection.
 */
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { QueryTypes } from 'sequelize';
import { initDbMutex, type DbMutex, type DbMutexOptions } from '../../src';
import { dialect, makeSequelize, TestContext } from '../helpers/db';
import { LISTENER_BACKEND_SQL } from '../helpers/server-connections';

const describeIf = dialect === 'postgres' ? describe : describe.skip;

let ctx: TestContext;
let admin: Client;
const opened: { close(): Promise<void> }[] = [];

beforeAll(async () => {
  if (dialect !== 'postgres') return;
  ctx = await TestContext.create();
  await ctx.mutex();
  admin = await ctx.client();
});

afterAll(async () => {
  if (dialect !== 'postgres') return;
  for (const o of opened.reverse()) await o.close().catch(() => undefined);
  await ctx.cleanup();
});

/** A DbMutex whose connections (pool and LISTEN) carry their own application_name on the server. */
function tagged(options: DbMutexOptions = {}, poolMax = 2): { mutex: DbMutex; app: string; sequelize: ReturnType<typeof makeSequelize> } {
  const app = `dbm-budget-${randomBytes(4).toString('hex')}`;
  // Straight to the server even when this run goes through a pooler: the claim is about the
  // connections the library opens, and a pooler's server connections belong to no one client.
  const sequelize = makeSequelize(ctx.db.directUrl, { pool: { max: poolMax }, dialectOptions: { application_name: app } });
  const mutex = initDbMutex(sequelize, { setDefault: false, ...options });
  opened.push({ close: () => sequelize.close() }, mutex);
  return { mutex, app, sequelize };
}

/** This process's server connections by kind: its LISTEN connection(s), and all of them. */
async function serverConnections(app: string): Promise<{ listen: number; total: number }> {
  const { rows } = await admin.query<{ listen: string; total: string }>(
    `SELECT count(*) FILTER (WHERE ${LISTENER_BACKEND_SQL}) AS listen, count(*) AS total
       FROM pg_stat_activity WHERE application_name = $1`,
    [app],
  );
  return { listen: Number(rows[0]!.listen), total: Number(rows[0]!.total) };
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not in time: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describeIf('the LISTEN connection', () => {
  it('is not opened by an idle process, opened while holding, and closed listenIdleMs after the last release', async () => {
    const { mutex, app } = tagged({ listenIdleMs: 200 });
    await mutex.inspect('nothing'); // the pool is open; no lock waited for or held
    expect((await serverConnections(app)).listen).toBe(0);

    const lock = await mutex.acquire('held-budget');
    await until('the holder listens', async () => (await serverConnections(app)).listen === 1);
    await lock.release();
    await until('the idle listener closes', async () => (await serverConnections(app)).listen === 0);
  });

  it('is one per DbMutex while waiting, however many waiters, and goes away once nobody waits', async () => {
    const { mutex: holder } = tagged();
    const { mutex: waiter, app } = tagged({ listenIdleMs: 200, pollIntervalMs: 600_000 });
    const held = await holder.acquire('wait-budget');
    const aborter = new AbortController();
    const refused = once(waiter, 'contended');
    const waits = Array.from({ length: 5 }, () => waiter.acquire('wait-budget', { waitMs: 60_000, signal: aborter.signal }));
    await refused;
    expect((await serverConnections(app)).listen).toBe(1);
    aborter.abort(new Error('enough'));
    await Promise.allSettled(waits);
    await held.release();
    await until('the idle listener closes', async () => (await serverConnections(app)).listen === 0);
  });

  it('stays open across acquisitions closer together than listenIdleMs', async () => {
    const { mutex, app } = tagged({ listenIdleMs: 600_000 });
    const first = await mutex.acquire('kept-open');
    await until('the holder listens', async () => (await serverConnections(app)).listen === 1);
    const [pid] = (await admin.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND ${LISTENER_BACKEND_SQL}`, [app])).rows;
    await first.release();
    await (await mutex.acquire('kept-open')).release();
    const [again] = (await admin.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND ${LISTENER_BACKEND_SQL}`, [app])).rows;
    expect(again?.pid).toBe(pid!.pid);
  });

  it('does not let a waiter miss a release that happens while it reconnects', async () => {
    const { mutex: holder } = tagged();
    const { mutex: waiter, app } = tagged({ pollIntervalMs: 600_000 });
    const held = await holder.acquire('reconnect');
    const refused = once(waiter, 'contended');
    const waiting = waiter.acquire('reconnect', { waitMs: 60_000 });
    await refused;
    // Kill the waiter's LISTEN connection, then release before it can be back: only the re-check after
    // LISTEN is re-established (polling is ten minutes away) can hand the lock over.
    await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND ${LISTENER_BACKEND_SQL}`, [app]);
    await held.release();
    const lock = await waiting;
    await lock.release();
  });
});

describeIf('waiting', () => {
  it('never holds a pooled connection: with a pool of 2 and 50 waiters, the app\'s own queries get through while they wait', async () => {
    const { mutex: holder } = tagged();
    const { mutex, app, sequelize } = tagged({ pollIntervalMs: 20 }, 2);
    const lockIds = ['busy-a', 'busy-b', 'busy-c', 'busy-d', 'busy-e'];
    const held = await Promise.all(lockIds.map((id) => holder.acquire(id)));
    const aborter = new AbortController();
    let settled = 0;
    let contended = 0;
    mutex.on('contended', () => contended++);
    const waits = Array.from({ length: 50 }, (_, i) =>
      mutex.acquire(lockIds[i % lockIds.length]!, { waitMs: 600_000, signal: aborter.signal }).finally(() => settled++),
    );
    // Every waiter has been refused at least once and is polling every ~20 ms meanwhile.
    await until('all waiters tried', async () => contended >= 50);
    for (let i = 0; i < 20; i++) {
      const [row] = await sequelize.query<{ one: number }>('SELECT 1 AS one', { type: QueryTypes.SELECT });
      expect(row!.one).toBe(1);
    }
    // Counted on the server: the pool's two connections and one LISTEN connection, nothing per waiter.
    const connections = await serverConnections(app);
    expect(connections.total).toBeLessThanOrEqual(3);
    expect(settled).toBe(0);
    aborter.abort(new Error('enough'));
    const outcomes = await Promise.allSettled(waits);
    expect(outcomes.every((o) => o.status === 'rejected')).toBe(true);
    for (const lock of held) await lock.release();
  }, 120_000);
});

if (dialect !== 'postgres') {
  it.skip(`counts connections in pg_stat_activity, which only PostgreSQL has (this run: ${dialect})`, () => undefined);
}

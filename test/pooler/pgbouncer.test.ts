/**
 * Behind a real PgBouncer (Debian's 1.18), started by this file in front of the PostgreSQL server of
 * this run (bypassing the run's own pooler, if any): what breaks with named prepared statements in
 * transaction mode, that detection and `preparedStatements: false` fix it, that release notices come
 * through `listenUrl` (or polling, said once), and that session mode needs nothing special.
 */
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { initDbMutex, type DbMutex, type DbMutexDegradedEvent, type DbMutexOptions } from '../../src';
import { ensureBuilt } from '../helpers/built';
import { dialect, directServerUrl, makeSequelize, TestContext } from '../helpers/db';
import { findPgBouncer, startPgBouncerFor, type PgBouncer } from '../helpers/pgbouncer';
import { LISTENER_BACKEND_SQL } from '../helpers/server-connections';
import { sleep } from '../helpers/wait';
import { ChildGroup, FIXTURES_ROOT, type Child } from '../helpers/children';

// PgBouncer speaks the PostgreSQL protocol only; without the binary there is nothing to test against.
const canRun = dialect === 'postgres' && findPgBouncer() !== null;
const describeIf = canRun ? describe : describe.skip;

const CONTENDER = path.join(FIXTURES_ROOT, 'dialects', 'contender.js');
/** Polling so slow that only a release notice can wake a waiter within its waitMs. */
const NO_POLLING = { pollIntervalMs: 600_000, waitMs: 60_000 };

let ctx: TestContext;
let transaction: PgBouncer;
let session: PgBouncer;
const group = new ChildGroup();
const opened: { close(): Promise<void> }[] = [];

beforeAll(async () => {
  if (!canRun) return;
  await ensureBuilt();
  ctx = await TestContext.create();
  await ctx.mutex(); // the schema, as after a deployment's migration
  // One server connection per pool: whichever client comes next gets the same server connection,
  // so a name prepared by one client is "already there" for the next, deterministically.
  transaction = await startPgBouncerFor(directServerUrl(), { poolMode: 'transaction', settings: { default_pool_size: 1, max_client_conn: 500 } });
  session = await startPgBouncerFor(directServerUrl(), { poolMode: 'session', settings: { default_pool_size: 20, max_client_conn: 500 } });
}, 180_000);

afterAll(async () => {
  if (!canRun) return;
  await group.dispose();
  for (const o of opened.reverse()) await o.close().catch(() => undefined);
  await transaction?.stop();
  await session?.stop();
  await ctx.cleanup();
});

function through(bouncer: PgBouncer): string {
  const direct = new URL(ctx.db.directUrl);
  return bouncer.url(ctx.db.name, decodeURIComponent(direct.username), decodeURIComponent(direct.password));
}

/** A DbMutex on its own Sequelize instance through `url`, closed after the file. */
function mutexAt(url: string, options: DbMutexOptions = {}, poolMax = 3): DbMutex {
  const sequelize = makeSequelize(url, { pool: { max: poolMax } });
  const m = initDbMutex(sequelize, { setDefault: false, ...options });
  opened.push({ close: () => sequelize.close() }, m);
  return m;
}

function collectDegraded(m: DbMutex): DbMutexDegradedEvent[] {
  const events: DbMutexDegradedEvent[] = [];
  m.on('degraded', (e) => events.push(e));
  return events;
}

async function rawClient(url: string): Promise<Client> {
  const c = new Client({ connectionString: url });
  await c.connect();
  opened.push({ close: () => c.end() });
  return c;
}

describeIf('behind PgBouncer in transaction mode', () => {
  it('breaks named prepared statements: the next client finds the name already there, a moved client finds it missing', async () => {
    const a = await rawClient(through(transaction));
    const b = await rawClient(through(transaction));
    await a.query({ name: 'dbm_probe', text: 'SELECT 1 AS one' });
    // b never prepared it, so pg sends Parse, on the one server connection a prepared it on.
    await expect(b.query({ name: 'dbm_probe', text: 'SELECT 1 AS one' })).rejects.toMatchObject({ code: '42P05' });
    // RECONNECT closes the server connection; a's pg client still believes the name is prepared.
    await transaction.admin(`RECONNECT "${ctx.db.name}"`);
    await expect(a.query({ name: 'dbm_probe', text: 'SELECT 1 AS one' })).rejects.toMatchObject({ code: '26000' });
  });

  it('accepts LISTEN without an error, yet a notice never reaches the client (so the reply cannot tell it works)', async () => {
    const pooled = await rawClient(through(transaction));
    const direct = await rawClient(ctx.db.directUrl);
    const heard = { pooled: 0, direct: 0 };
    pooled.on('notification', () => heard.pooled++);
    const directHeard = new Promise<void>((resolve) => direct.on('notification', () => (heard.direct++, resolve())));
    await expect(pooled.query('LISTEN "dbm_probe_channel"')).resolves.toBeDefined();
    await direct.query('LISTEN "dbm_probe_channel"');
    await direct.query(`NOTIFY "dbm_probe_channel", 'x'`);
    await directHeard; // the notice was sent: a direct listener got it
    // PgBouncer reads what arrives on an idle server connection (the notice for the LISTEN it ran)
    // and drops that connection; sent at once, the round trip below could still be handed that very
    // connection before PgBouncer looked at it, and carry the notice by luck.
    await sleep(200);
    await pooled.query('SELECT 1'); // a round trip through the pooler, which would carry a pending notice
    expect(heard).toEqual({ pooled: 0, direct: 1 });
  });

  it('with default options, switches to unnamed statements on the first mismatch, says so once, and every operation succeeds', async () => {
    const first = mutexAt(through(transaction));
    const second = mutexAt(through(transaction));
    const saidFirst = collectDegraded(first);
    const saidSecond = collectDegraded(second);
    for (let i = 0; i < 10; i++) {
      for (const m of [first, second]) {
        const lock = await m.acquire(`mismatch-${i}`, { waitMs: 30_000 });
        await m.inspect(lock.lockId);
        await lock.release();
      }
    }
    const said = [...saidFirst, ...saidSecond].filter((e) => e.feature === 'preparedStatements');
    // The second DbMutex's first Parse met the first one's statement on the single server connection.
    expect(saidSecond.filter((e) => e.feature === 'preparedStatements')).toHaveLength(1);
    expect(said.length).toBeLessThanOrEqual(2);
    expect(said[0]).toMatchObject({ code: 'DB_MUTEX_UNNAMED_STATEMENTS', cause: expect.objectContaining({ code: expect.stringMatching(/^(26000|42P05)$/) }) });
    expect(await ctx.sql.countHeldLocks()).toBe(0);
  });

  it('with preparedStatements: false and no listenUrl, waiters poll, it says so once, and they still get the lock', async () => {
    const holder = mutexAt(through(transaction), { preparedStatements: false, listenUrl: null });
    const waiter = mutexAt(through(transaction), { preparedStatements: false, pollIntervalMs: 20 });
    const said = collectDegraded(waiter);
    for (let i = 0; i < 3; i++) {
      const held = await holder.acquire('polled');
      const waiting = waiter.acquire('polled', { waitMs: 30_000 });
      await held.release();
      await (await waiting).release();
    }
    expect(said).toEqual([expect.objectContaining({ feature: 'listen', code: 'DB_MUTEX_POLLING' })]);
    expect(said.some((e) => e.feature === 'preparedStatements')).toBe(false);
  });

  it('with preparedStatements: false and listenUrl, a release notice wakes a waiter (polling alone would not within its wait)', async () => {
    const holder = mutexAt(through(transaction), { preparedStatements: false, listenUrl: ctx.db.directUrl });
    const waiter = mutexAt(through(transaction), { preparedStatements: false, listenUrl: ctx.db.directUrl, ...NO_POLLING });
    const said = collectDegraded(waiter);
    const held = await holder.acquire('notified');
    const refused = once(waiter, 'contended');
    const waiting = waiter.acquire('notified');
    await refused; // its first attempt came after its LISTEN was active, and was refused
    // Its LISTEN connection goes straight to the server: no server connection of PgBouncer ran it.
    const bouncerBackends = new Set((await transaction.admin('SHOW SERVERS')).map((r) => Number(r.remote_pid)));
    const listeners = await listenBackends();
    expect(listeners.length).toBeGreaterThanOrEqual(1);
    expect(listeners.filter((pid) => bouncerBackends.has(pid))).toEqual([]);
    await held.release();
    const lock = await waiting;
    expect(lock.lockId).toBe('notified');
    await lock.release();
    expect(said).toEqual([]);
  });

  it('with preparedStatements: false, several processes never run two critical sections at once and tokens follow the order', async () => {
    const scratch = mkdtempSync(path.join(tmpdir(), 'dbm-pgbouncer-'));
    try {
      const counterFile = path.join(scratch, 'counter');
      writeFileSync(counterFile, '0');
      const processes = 3;
      const iterations = 10;
      const children: Child[] = Array.from({ length: processes }, (_, i) =>
        group.spawn(
          CONTENDER,
          {
            url: through(transaction),
            mutexOptions: { preparedStatements: false, listenUrl: ctx.db.directUrl },
            mode: 'sections',
            lockId: 'pooled-counter',
            iterations,
            counterFile,
            sectionMs: 5,
          },
          { name: `contender-${i}` },
        ),
      );
      await Promise.all(children.map((c) => c.waitForType('ready', 30_000)));
      for (const c of children) c.tell('go');
      const records = await Promise.all(children.map(async (c) => (await c.waitForType('done', 90_000)).records as { fencingToken: number; startNs: string; endNs: string }[]));
      const sections = records.flat().map((s) => ({ token: s.fencingToken, start: BigInt(s.startNs), end: BigInt(s.endNs) }));
      expect(sections).toHaveLength(processes * iterations);
      expect(Number(readFileSync(counterFile, 'utf8'))).toBe(processes * iterations);
      sections.sort((x, y) => (x.start < y.start ? -1 : x.start > y.start ? 1 : 0));
      for (let i = 1; i < sections.length; i++) {
        expect(sections[i]!.start).toBeGreaterThanOrEqual(sections[i - 1]!.end);
        expect(sections[i]!.token).toBeGreaterThan(sections[i - 1]!.token);
      }
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  }, 120_000);
});

describeIf('behind PgBouncer in session mode', () => {
  it('needs nothing special: named statements and LISTEN work through the pooler, and a notice wakes a waiter', async () => {
    const holder = mutexAt(through(session));
    const waiter = mutexAt(through(session), NO_POLLING);
    const said = [...collectDegraded(holder), ...collectDegraded(waiter)];
    for (let i = 0; i < 3; i++) {
      const held = await holder.acquire('session-handoff');
      const refused = once(waiter, 'contended');
      const waiting = waiter.acquire('session-handoff');
      await refused;
      await held.release();
      await (await waiting).release();
    }
    expect(said).toEqual([]);
  });
});

/** Server backends of this test database that last ran LISTEN (the listener connections). */
async function listenBackends(): Promise<number[]> {
  const rows = await ctx.exec<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND ${LISTENER_BACKEND_SQL} AND pid <> pg_backend_pid()`,
  );
  return rows.map((r) => Number(r.pid));
}


if (!canRun) {
  it.skip(`needs PostgreSQL and the pgbouncer binary (this run: ${dialect}, pgbouncer ${findPgBouncer() ?? 'not installed'})`, () => undefined);
}

/**
 * MariaDB draws an acquisition's fencing token (NEXTVAL in the VALUES list) before the statement
 * claims the row. A statement delayed between the two steps must still never end up holding the
 * lock with a smaller token than an acquisition that came and went meanwhile. A BEFORE INSERT
 * trigger makes that delay deterministic: for one holder it waits on a gate (a named server lock the
 * test holds), so the test decides when the delayed statement goes on, instead of guessing how long a
 * sleep must be on a busy machine. PostgreSQL and SQLite claim the id before drawing, so this
 * reproduction only applies to the MariaDB server.
 */
import * as mariadb from 'mariadb';
import type { DbMutex, DbMutexHeldLock } from '../../src';
import { isMariaDb, itIf, TestContext } from '../helpers/db';

let ctx: TestContext | undefined;
let delayed: DbMutex;
let other: DbMutex;
/** Holds the gate (GET_LOCK is per connection, so a connection of its own, outside every pool). */
let gate: mariadb.Connection | undefined;
let gateName: string;

beforeAll(async () => {
  if (!isMariaDb) return;
  ctx = await TestContext.create();
  delayed = await ctx.mutex({ holder: 'delayed' });
  other = await ctx.mutex({ holder: 'other' });
  // Named locks are server-wide: the database name keeps parallel test files apart.
  gateName = `${ctx.db.name}_gate`;
  // Runs after the VALUES list (and so NEXTVAL) was evaluated, before the row is inserted or updated.
  // The gate is released again at once, so the trigger holds nothing once it lets the statement go.
  await ctx.exec(
    `CREATE TRIGGER dbm_test_delay BEFORE INSERT ON ${ctx.quote(delayed.options.tableName)} FOR EACH ROW
      SET @dbm_test_gate = IF(NEW.holder = 'delayed', IF(GET_LOCK('${gateName}', 60) = 1, RELEASE_LOCK('${gateName}'), -1), 0)`,
  );
  const u = new URL(ctx.db.url);
  gate = await mariadb.createConnection({
    host: u.hostname,
    port: Number(u.port || 3306),
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
  });
});
afterAll(async () => {
  await gate?.end();
  await ctx?.cleanup();
});

/** Closes the gate, starts the delayed acquisition, and resolves once it waits at the gate inside the trigger. */
async function startDelayed(): Promise<{ pending: Promise<DbMutexHeldLock>; open: () => Promise<void> }> {
  const [closed] = await gate!.query<{ ok: number }[]>('SELECT GET_LOCK(?, 0) AS ok', [gateName]);
  expect(Number(closed!.ok)).toBe(1);
  const pending = delayed.acquire('fenced', { heartbeat: false });
  // Mark it handled now (it is awaited later), so a failure before then is not an unhandled rejection.
  pending.catch(() => undefined);
  const deadline = performance.now() + 30_000;
  for (;;) {
    // The waiting statement shows as the trigger's own statement, in state "User lock".
    const [row] = await ctx!.exec<{ n: unknown }>(
      `SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE DB = DATABASE() AND STATE = 'User lock' AND INFO LIKE ?`,
      [`%GET_LOCK('${gateName}'%`],
    );
    if (Number(row!.n) === 1) break;
    if (performance.now() > deadline) throw new Error('the delayed acquisition never reached the gate in its trigger');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return { pending, open: async () => void (await gate!.query('SELECT RELEASE_LOCK(?)', [gateName])) };
}

describe('fencing tokens when an acquisition is delayed between drawing its token and claiming the row', () => {
  itIf(isMariaDb)('gives the delayed acquisition a token above that of a lock acquired and released meanwhile', async () => {
    const { pending, open } = await startDelayed();
    // The delayed statement has drawn its token but claimed nothing yet: the lock is free.
    const meanwhile = await other.acquire('fenced', { heartbeat: false });
    const meanwhileToken = meanwhile.fencingToken;
    await meanwhile.release();
    await open();
    const late = await pending;
    expect(late.fencingToken).toBeGreaterThan(meanwhileToken);
    await late.release();
    // That token was the kept one + 1, not drawn from the sequence; the sequence must still never
    // hand it out again, even to an acquisition that inserts a fresh row after a manual DELETE.
    await ctx!.sql.deleteLock('fenced');
    const fresh = await other.acquire('fenced', { heartbeat: false });
    expect(fresh.fencingToken).toBeGreaterThan(late.fencingToken);
    await fresh.release();
  });

  itIf(isMariaDb)('does so again once the lock id has been used before, and the released lock stays invisible', async () => {
    const { pending, open } = await startDelayed();
    // The delayed statement waits in its trigger, which runs before the duplicate-key check locks the
    // kept (released) row: the rival comes and goes meanwhile (any error, a refusal included, fails).
    const meanwhile = await other.acquire('fenced', { heartbeat: false });
    const meanwhileToken = meanwhile.fencingToken;
    await meanwhile.release();
    await open();
    const late = await pending;
    expect(late.fencingToken).toBeGreaterThan(meanwhileToken);
    expect((await other.inspect('fenced'))?.fencingToken).toBe(late.fencingToken);
    await late.release();
    expect(await other.inspect('fenced')).toBeNull();
    expect(await other.list({ filter: 'fenced' })).toEqual([]);
    expect(await other.counts('fenced')).toMatchObject({ total: 0 });
  });
});

/**
 * MariaDB draws an acquisition's fencing token (NEXTVAL in the VALUES list) before the statement
 * claims the row. A statement delayed between the two steps must still never end up holding the
 * lock with a smaller token than an acquisition that came and went meanwhile. A BEFORE INSERT
 * trigger that sleeps for one holder makes that delay deterministic. PostgreSQL and SQLite claim the
 * id before drawing, so this reproduction only applies to the MariaDB server.
 */
import type { DbMutex } from '../../src';
import { isMariaDb, itIf, TestContext } from '../helpers/db';

let ctx: TestContext | undefined;
let delayed: DbMutex;
let other: DbMutex;

beforeAll(async () => {
  if (!isMariaDb) return;
  ctx = await TestContext.create();
  delayed = await ctx.mutex({ holder: 'delayed' });
  other = await ctx.mutex({ holder: 'other' });
  // Runs after the VALUES list (and so NEXTVAL) was evaluated, before the row is inserted.
  await ctx.exec(
    `CREATE TRIGGER dbm_test_delay BEFORE INSERT ON ${ctx.quote(delayed.options.tableName)} FOR EACH ROW
      SET @dbm_test_slept = IF(NEW.holder = 'delayed', SLEEP(1), 0)`,
  );
});
afterAll(async () => {
  await ctx?.cleanup();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('fencing tokens when an acquisition is delayed between drawing its token and claiming the row', () => {
  itIf(isMariaDb)('gives the delayed acquisition a token above that of a lock acquired and released meanwhile', async () => {
    const pending = delayed.acquire('fenced', { heartbeat: false });
    await sleep(300);
    const meanwhile = await other.acquire('fenced', { heartbeat: false });
    const meanwhileToken = meanwhile.fencingToken;
    await meanwhile.release();
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
    const pending = delayed.acquire('fenced', { heartbeat: false });
    await sleep(300);
    // The delayed statement now updates the kept row under its row lock; a rival meanwhile is
    // either refused (the delayed one got there first) or comes and goes before it.
    const meanwhile = await other.acquire('fenced', { heartbeat: false, waitMs: 0 }).catch(() => null);
    const meanwhileToken = meanwhile?.fencingToken ?? 0;
    await meanwhile?.release();
    const late = await pending;
    expect(late.fencingToken).toBeGreaterThan(meanwhileToken);
    expect((await other.inspect('fenced'))?.fencingToken).toBe(late.fencingToken);
    await late.release();
    expect(await other.inspect('fenced')).toBeNull();
    expect(await other.list({ filter: 'fenced' })).toEqual([]);
    expect(await other.counts('fenced')).toMatchObject({ total: 0 });
  });
});

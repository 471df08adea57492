/**
 * Fencing tokens must increase in the order the lock is granted, per lock id: a resource that keeps
 * the highest token it has seen then refuses a holder that lost the lock. The soak run of the
 * contention test once found sections whose token was lower than that of a section that had ended
 * before them (the token was drawn before the acquire statement had won the row); this file
 * reproduces the interleaving that caused it, deterministically, with a trigger that delays one
 * holder's statement between drawing the token and inserting the row.
 */
import type { DbMutex, DbMutexHeldLock } from '../../src';
import { TestContext } from '../helpers/db';
import { describeSafety, safetyDialect, type SafetyDialect } from './helpers/dialect';
import { note } from './helpers/report';
import { pause } from './helpers/watch';

let ctx: TestContext;
let db: SafetyDialect;
let delayed: DbMutex;
let prompt: DbMutex;

describeSafety('fencing token order', () => {
  beforeAll(async () => {
    ctx = await TestContext.create();
    db = safetyDialect(ctx);
    delayed = await ctx.mutex({ holder: 'delayed' });
    prompt = await ctx.mutex({ holder: 'prompt' });
    await db.installSlowTrigger(delayed.options.tableName);
  });
  afterEach(() => db.setSlowness(0));
  afterAll(() => ctx?.cleanup());

  it('gives each acquisition a larger token than the one before when nothing is delayed', async () => {
    let last = 0;
    for (const mutex of [delayed, prompt, delayed, prompt]) {
      const lock = await mutex.acquire('in-order');
      expect(lock.fencingToken).toBeGreaterThan(last);
      last = lock.fencingToken;
      await lock.release();
    }
  });

  it('grants tokens in grant order even when an acquire statement stalls inside the database', async () => {
    // Every lock is released the moment it is granted; `granted` records the order of the grants.
    const granted: DbMutexHeldLock[] = [];
    const grantAndRelease = async (p: Promise<DbMutexHeldLock>) => {
      const lock = await p;
      granted.push(lock);
      await lock.release();
    };
    await db.setSlowness(1000, 'delayed');
    // Starts first, and stalls for a second inside its statement (after the VALUES, before the row).
    const first = grantAndRelease(delayed.acquire('fenced', { heartbeat: false }));
    await pause(300);
    // Starts while the first one stalls, and waits for the lock if it has to.
    const second = grantAndRelease(prompt.acquire('fenced', { heartbeat: false, waitMs: 10_000 }));
    await Promise.all([first, second]);
    note(`grant order: ${granted.map((l) => `${l.holder} (token ${l.fencingToken})`).join(', then ')}`);
    expect(granted).toHaveLength(2);
    expect(granted[1]!.fencingToken).toBeGreaterThan(granted[0]!.fencingToken);
  });
});

/**
 * Fencing tokens must increase in the order the lock is granted, per lock id: a resource that keeps
 * the highest token it has seen then refuses a holder that lost the lock. The soak run of the
 * contention test once found sections whose token was lower than that of a section that had ended
 * before them (the token was drawn before the acquire statement had won the row); this file
 * reproduces the interleaving that caused it, deterministically: a trigger holds one holder's
 * statement between drawing the token and claiming the row until the test lets it go, and the test
 * checks that the hold really happened (the database showed the statement waiting, the trigger logged
 * the token it had drawn). What a rival does meanwhile differs per database and is checked too:
 * MariaDB lets it overtake (the stalled statement must then take a fresh, larger token), PostgreSQL
 * serializes acquisitions of one id (the rival waits). SQLite draws the token under the file's write
 * lock, so no statement can stall between the two: there the test holds the write lock itself.
 */
import type { DbMutex, DbMutexHeldLock } from '../../src';
import { dialect, TestContext } from '../helpers/db';
import { safetyDialect, type SafetyDialect } from '../helpers/safety-dialect';
import { note } from '../helpers/report';
import { sleep } from '../helpers/wait';

let ctx: TestContext;
let db: SafetyDialect;
let delayed: DbMutex;
let prompt: DbMutex;
let openGate: (() => Promise<void>) | null = null;

describe(`fencing token order on ${dialect}`, () => {
  beforeAll(async () => {
    ctx = await TestContext.create();
    db = safetyDialect(ctx);
    delayed = await ctx.mutex({ holder: 'delayed' });
    prompt = await ctx.mutex({ holder: 'prompt' });
  });
  afterEach(async () => {
    await openGate?.();
    openGate = null;
  });
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
    // PostgreSQL, MariaDB: a trigger holds the delayed holder's statement after it drew its token and
    // before it claims the row, until the test opens the gate. SQLite draws the token under the
    // file's write lock, so the stall there is that lock, held by the test (see test/helpers/safety-dialect.ts).
    const gate = await db.gateAcquisitions(delayed.options.tableName, 'delayed');
    let gateOpen = false;
    // A failed check must not leave the gate shut: its open transaction would hold up the cleanup.
    openGate = async () => {
      gateOpen = true;
      await gate.open();
    };
    // Every lock is released the moment it is granted; `granted` records the order of the grants.
    const granted: { lock: DbMutexHeldLock; whileGateClosed: boolean }[] = [];
    const grantAndRelease = async (p: Promise<DbMutexHeldLock>) => {
      const lock = await p;
      granted.push({ lock, whileGateClosed: !gateOpen });
      await lock.release();
    };
    const first = grantAndRelease(delayed.acquire('fenced', { heartbeat: false }));
    // The delayed statement is seen waiting inside the database (where the database can show it).
    const seenStalled = await gate.waitForWaiting(1, AbortSignal.timeout(20_000));
    if (!seenStalled) await sleep(300); // SQLite: let the statement reach the write lock
    // Starts while the first one stalls, and waits for the lock if it has to.
    const second = grantAndRelease(prompt.acquire('fenced', { heartbeat: false, waitMs: 10_000 }));
    // The rival either gets the lock past the stalled statement (MariaDB), or is itself seen waiting
    // behind it (PostgreSQL: acquisitions of one id are serialized), or, where waiting statements
    // cannot be seen (SQLite), has had time to reach the write lock.
    const stop = new AbortController();
    await Promise.race([second, gate.waitForWaiting(2, stop.signal).then((seen) => (seen ? undefined : sleep(300)))]);
    stop.abort();
    const grantedBeforeOpen = granted.map((g) => g.lock.holder);
    await openGate();
    openGate = null;
    await Promise.all([first, second]);

    const stalls = await gate.stalls();
    const order = granted.map((g) => `${g.lock.holder} (token ${g.lock.fencingToken}${g.whileGateClosed ? ', gate closed' : ''})`);
    note(`${dialect}, stall by ${gate.mechanism}: grant order ${order.join(', then ')}; stalls recorded: ${JSON.stringify(stalls)}`);

    // The stall happened: the delayed holder was not granted before the gate opened ...
    expect(grantedBeforeOpen).not.toContain('delayed');
    expect(granted).toHaveLength(2);
    // ... and tokens follow the grant order.
    expect(granted[1]!.lock.fencingToken).toBeGreaterThan(granted[0]!.lock.fencingToken);

    const held = granted.find((g) => g.lock.holder === 'delayed')!.lock;
    const rival = granted.find((g) => g.lock.holder === 'prompt')!.lock;
    if (gate.afterTokenDrawn) {
      // The database saw the statement wait, and the trigger recorded exactly one stall, after the
      // token was drawn.
      expect(seenStalled).toBe(true);
      expect(stalls).toEqual([{ holder: 'delayed', drawnToken: expect.any(Number), startedUs: expect.any(Number), endedUs: expect.any(Number) }]);
      if (grantedBeforeOpen.includes('prompt')) {
        // The rival overtook the stalled statement (MariaDB): the stalled one had drawn the smaller
        // token, and must not have been granted with it.
        expect(stalls[0]!.drawnToken).toBeLessThan(rival.fencingToken);
        expect(held.fencingToken).toBeGreaterThan(rival.fencingToken);
      } else {
        // The rival was held behind the stalled statement (PostgreSQL's per-id serialization): it was
        // granted after the stalled one, which kept the token it had drawn.
        expect(granted.map((g) => g.lock.holder)).toEqual(['delayed', 'prompt']);
        expect(held.fencingToken).toBe(stalls[0]!.drawnToken);
      }
    } else {
      // SQLite: neither acquisition could pass the write lock the test held.
      expect(grantedBeforeOpen).toEqual([]);
      expect(stalls).toEqual([]);
    }
  });
});

/**
 * `advanceFencingTokens(floor)`: the token floor an operator sets after a failover that may have lost
 * the newest tokens (test/ha/failover-async.test.ts shows it on a real promoted standby). On this
 * run's database: tokens afterwards exceed the floor, the floor never lowers anything, twice does no
 * harm, and it is safe while other processes' connections acquire.
 */
import type { DbMutex } from '../../src';
import { dialect, TestContext } from '../helpers/db';

let ctx: TestContext;
let a: DbMutex;
let b: DbMutex;

beforeAll(async () => {
  ctx = await TestContext.create();
  a = await ctx.mutex({ holder: 'a' });
  b = await ctx.mutex({ holder: 'b' });
});
afterAll(() => ctx.cleanup());

async function tokenOf(mutex: DbMutex, lockId: string): Promise<number> {
  const lock = await mutex.acquire(lockId);
  await lock.release();
  return lock.fencingToken;
}

describe(`advanceFencingTokens on ${dialect}`, () => {
  it('makes every later token greater than the floor, for every lock id and every DbMutex on the table', async () => {
    const before = await tokenOf(a, 'floor/one');
    await a.advanceFencingTokens(before + 1000);
    expect(await tokenOf(b, 'floor/one')).toBeGreaterThan(before + 1000);
    expect(await tokenOf(a, 'floor/another')).toBeGreaterThan(before + 1000);
  });

  it('never lowers the tokens: a floor below them changes nothing', async () => {
    const high = await tokenOf(a, 'floor/low');
    await b.advanceFencingTokens(1);
    await b.advanceFencingTokens(0);
    const next = await tokenOf(a, 'floor/low');
    expect(next).toBeGreaterThan(high);
    // Not moved up to anything either: the next token is the next one the source would have given.
    expect(next).toBeLessThan(high + 10);
  });

  it('does no harm when run twice, even after the tokens went past it', async () => {
    const floor = (await tokenOf(a, 'floor/twice')) + 50;
    await a.advanceFencingTokens(floor);
    await a.advanceFencingTokens(floor);
    const first = await tokenOf(b, 'floor/twice');
    expect(first).toBeGreaterThan(floor);
    expect(first).toBeLessThan(floor + 10);
    await b.advanceFencingTokens(floor);
    expect(await tokenOf(a, 'floor/twice')).toBeGreaterThan(first);
  });

  it('keeps tokens increasing per lock id and above every finished floor while separate connections acquire', async () => {
    const contenders = await Promise.all([1, 2, 3].map((i) => ctx.mutex({ holder: `c${i}` })));
    let finishedFloor = 0;
    const violations: unknown[] = [];
    let running = true;
    const acquireLoop = async (mutex: DbMutex, lockId: string) => {
      let last = 0;
      while (running) {
        const floorBefore = finishedFloor;
        const token = await tokenOf(mutex, lockId);
        if (token <= last || token <= floorBefore) violations.push({ lockId, token, last, floorBefore });
        last = token;
      }
    };
    const loops = contenders.map((m, i) => acquireLoop(m, `floor/race/${i}`));
    for (let round = 1; round <= 15; round++) {
      const floor = (await tokenOf(a, 'floor/probe')) + 25;
      await b.advanceFencingTokens(floor);
      finishedFloor = floor;
    }
    running = false;
    await Promise.all(loops);
    expect(violations).toEqual([]);
  });

  it('rejects a floor that is not a non-negative safe integer before running any SQL', async () => {
    for (const bad of [-1, 1.5, Number.NaN, Number.MAX_SAFE_INTEGER + 1, '5', null]) {
      await expect(a.advanceFencingTokens(bad as number)).rejects.toThrow(RangeError);
    }
  });
});

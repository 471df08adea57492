/**
 * `db-mutex fence-floor <n>`: the token floor of a failover runbook from a terminal (the built bin, a
 * separate process), on this run's database. Tokens afterwards exceed n; bad input changes nothing.
 */
import type { DbMutex } from '../src';
import { ensureBuilt, runCli } from './helpers/built';
import { TestContext } from './helpers/db';

let ctx: TestContext;
let mutex: DbMutex;

const cli = (args: string[]) => runCli(args, { DATABASE_URL: ctx.db.url });

async function nextToken(): Promise<number> {
  const lock = await mutex.acquire('cli/floor');
  await lock.release();
  return lock.fencingToken;
}

beforeAll(async () => {
  await ensureBuilt();
  ctx = await TestContext.create();
  mutex = await ctx.mutex();
}, 180_000);
afterAll(() => ctx.cleanup());

describe('db-mutex fence-floor', () => {
  it('makes every later fencing token greater than n, and says so', async () => {
    const before = await nextToken();
    const run = await cli(['fence-floor', String(before + 500)]);
    expect(run).toEqual({ code: 0, stdout: `Every fencing token handed out from now on is greater than ${before + 500}.\n`, stderr: '' });
    expect(await nextToken()).toBeGreaterThan(before + 500);
  });

  it('changes nothing for a floor below the current tokens, and prints JSON with --json', async () => {
    const before = await nextToken();
    expect(await cli(['fence-floor', '1', '--json'])).toEqual({ code: 0, stdout: `${JSON.stringify({ status: 'done', floor: 1 }, null, 2)}\n`, stderr: '' });
    const next = await nextToken();
    expect(next).toBeGreaterThan(before);
    expect(next).toBeLessThan(before + 10);
  });

  it('rejects a missing, negative, fractional or oversized floor with exit status 2 and one line, changing nothing', async () => {
    const before = await nextToken();
    for (const args of [['fence-floor'], ['fence-floor', '--', '-1'], ['fence-floor', '1.5'], ['fence-floor', 'ten'], ['fence-floor', '9007199254740992'], ['fence-floor', '1', '2']]) {
      const run = await cli(args);
      expect({ args, code: run.code, stdout: run.stdout }).toEqual({ args, code: 2, stdout: '' });
      expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(run.stderr).toMatch(/^db-mutex fence-floor: /);
    }
    const next = await nextToken();
    expect(next).toBeLessThan(before + 10);
  });
});

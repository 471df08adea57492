/**
 * `db-mutex history` and `db-mutex purge-history`, run as the built bin in a separate process against a
 * real database: the table and its summary line, the JSON (the dashboard's shape), refused input, and
 * the purge of old entries.
 */
import type { DbMutex, DbMutexHeldLock } from '../src';
import { ensureBuilt, runCli } from './helpers/built';
import { TestContext } from './helpers/db';

const cli = runCli;

let ctx: TestContext;
let mutex: DbMutex;
let env: NodeJS.ProcessEnv;
const held: DbMutexHeldLock[] = [];

beforeAll(async () => {
  await ensureBuilt();
  ctx = await TestContext.create();
  mutex = await ctx.mutex({ holder: 'report-worker', heartbeat: false, ttlSeconds: 600 });
  env = { DATABASE_URL: ctx.db.url };
});

afterAll(async () => {
  for (const lock of held) await lock.release().catch(() => undefined);
  await ctx.cleanup();
});

/** One acquisition, released, then laid out as held for exactly `seconds` and ended `endedAgo` seconds ago. */
async function heldFor(lockId: string, seconds: number, by = mutex, endedAgo = 0): Promise<void> {
  const lock = await by.acquire(lockId);
  await lock.release();
  await ctx.sql.setEndedSecondsAgo(lockId, lock.fencingToken, { acquired_at: endedAgo + seconds, ended_at: endedAgo }, by.options.historyTableName);
}

describe('db-mutex history', () => {
  it('is listed in the top-level help, and its help names its options', async () => {
    const top = await cli(['--help'], { DATABASE_URL: '' });
    expect(top.stdout).toMatch(/history <id> +one lock's finished acquisitions/);
    expect(top.stdout).toMatch(/purge-history +delete history entries/);
    const own = await cli(['history', '--help'], { DATABASE_URL: '' });
    expect(own.code).toBe(0);
    for (const option of ['Usage: db-mutex history <lockId>', '--limit N', '--json', '--history-table', 'default 100, at most 10000']) {
      expect(own.stdout).toContain(option);
    }
    const purge = await cli(['help', 'purge-history'], { DATABASE_URL: '' });
    for (const option of ['Usage: db-mutex purge-history', '--older-than-days N', 'default 7']) expect(purge.stdout).toContain(option);
  });

  it('prints who holds the lock now, its entries newest first, and the counts and p50/p95/max', async () => {
    for (const [i, seconds] of [10, 20, 30].entries()) await heldFor('nightly/export', seconds, mutex, 100 - 10 * i);
    const stuck = await mutex.acquire('nightly/export');
    await mutex.forceRelease({ lockId: 'nightly/export', fencingToken: stuck.fencingToken, operator: 'alice', reason: 'worker hung' });
    await ctx.sql.setEndedSecondsAgo('nightly/export', stuck.fencingToken, { acquired_at: 40, created_at: 0 }, 'db_mutex_events');
    held.push(await mutex.acquire('nightly/export'));

    const run = await cli(['history', 'nightly/export'], env);
    expect([run.code, run.stderr]).toEqual([0, '']);
    const lines = run.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^"nightly\/export" is held now by report-worker on \S+ pid \d+ \(fencing token \d+, for [^,]+, active\)\.$/);
    expect(lines[2]).toMatch(/^ENDED \(UTC\) +OUTCOME +HELD FOR +TOKEN +HOLDER +PROCESS +DETAIL$/);
    expect(lines[3]).toMatch(/force-released +40 s +\d+ +report-worker +\S+:\d+ +worker hung \(by alice\)$/);
    expect(lines.slice(4, 7).map((l) => / released +(\d+ s) /.exec(l)?.[1])).toEqual(['30 s', '20 s', '10 s']);
    expect(lines[8]).toBe('4 acquisitions: 3 released, 1 force-released. Held p50 20 s, p95 40 s, max 40 s. Times are by the database clock.');
  });

  it('prints the dashboard JSON route\'s object with --json, and --limit cuts it to the newest', async () => {
    for (const [i, seconds] of [5, 6, 7].entries()) await heldFor('json/history', seconds, mutex, 10 - i);
    const run = await cli(['history', 'json/history', '--json', '--limit', '2'], env);
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout) as { lockId: string; current: unknown; summary: { count: number }; entries: { outcome: string; heldMs: number }[] };
    expect(out).toMatchObject({ lockId: 'json/history', current: null, summary: { count: 2, byOutcome: { released: 2 } } });
    // Newest first: the 7 s and the 6 s holds.
    expect(out.entries.map((e) => e.heldMs)).toEqual([7000, 6000]);
    expect(Object.keys(out.entries[0]!).sort()).toEqual(
      ['acquiredAt', 'detail', 'endedAt', 'fencingToken', 'heldMs', 'holder', 'hostname', 'lockId', 'operator', 'outcome', 'pid'].sort(),
    );
  });

  it('says a lock is free and has no history, and exits 0', async () => {
    const run = await cli(['history', 'never-used'], env);
    expect(run).toEqual({ code: 0, stdout: '"never-used" is free now.\nNo finished acquisitions recorded.\n', stderr: '' });
  });

  it('escapes control characters of ids and holders in its table', async () => {
    const jobs = await ctx.mutex({ holder: 'evil\u001b[2Jholder', heartbeat: false });
    await heldFor('esc\u001b]0;x\u0007id', 1, jobs);
    const run = await cli(['history', 'esc\u001b]0;x\u0007id'], env);
    expect(run.code).toBe(0);
    for (const control of ['\u001b', '\u0007']) expect(run.stdout).not.toContain(control);
    expect(run.stdout).toContain('evil\\x1b[2Jholder');
    expect(run.stdout).toContain('"esc\\x1b]0;x\\x07id" is free now.');
  });

  it('reads the table named by --history-table', async () => {
    const custom = await ctx.mutex({ tableName: 'other_locks', eventsTableName: 'other_events', historyTableName: 'other_past', heartbeat: false });
    await heldFor('custom/table', 3, custom);
    const args = ['--table', 'other_locks', '--events-table', 'other_events'];
    const run = await cli(['history', 'custom/table', ...args, '--history-table', 'other_past', '--json'], env);
    expect([run.code, (JSON.parse(run.stdout) as { summary: { count: number } }).summary.count]).toEqual([0, 1]);
  });

  it.each([
    [['history', '--json'], 'INVALID_LOCK_ID'],
    [['history', 'x'.repeat(256), '--json'], 'INVALID_LOCK_ID'],
    [['history', 'x', '--limit', '0', '--json'], 'INVALID_LIMIT'],
    [['history', 'x', '--limit', '10001', '--json'], 'INVALID_LIMIT'],
    [['history', 'x', '--history-table', '1x', '--json'], 'INVALID_HISTORY_TABLE_NAME'],
    [['purge-history', '--older-than-days', '0', '--json'], 'INVALID_OLDER_THAN_DAYS'],
    [['purge-history', '--older-than-days', 'week', '--json'], 'INVALID_OLDER_THAN_DAYS'],
    [['purge-history', '--older-than-days', '36501', '--json'], 'INVALID_OLDER_THAN_DAYS'],
    [['purge-history', '--older-than-days=-1', '--json'], 'INVALID_OLDER_THAN_DAYS'],
  ])('answers the refused input %j with exit 2, one line on stderr and the error naming the field on stdout', async (args, code) => {
    const run = await cli(args, env);
    expect(run.code).toBe(2);
    expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(JSON.parse(run.stdout)).toEqual({ error: { code, message: expect.any(String) } });
  });

  it('exits 2 with a usage line for a second lock id', async () => {
    const run = await cli(['history', 'a', 'b'], env);
    expect([run.code, run.stderr]).toEqual([2, 'db-mutex history: unexpected argument "b" (see db-mutex history --help)\n']);
  });
});

describe('db-mutex purge-history', () => {
  /** Two entries of `lockId`, one that ended `days` days ago and one just now. */
  async function oldAndNew(lockId: string, days: number): Promise<void> {
    const old = await mutex.acquire(lockId);
    await old.release();
    await ctx.sql.setEndedSecondsAgo(lockId, old.fencingToken, { acquired_at: days * 86_400 + 60, ended_at: days * 86_400 });
    await heldFor(lockId, 1);
  }

  it('deletes the entries older than the default retention of 7 days, and leaves the newer ones', async () => {
    await oldAndNew('purge/default', 8);
    const run = await cli(['purge-history'], env);
    expect(run).toEqual({ code: 0, stdout: 'Deleted 1 history entry that ended more than 7 days ago.\n', stderr: '' });
    expect(await mutex.history({ lockId: 'purge/default' })).toHaveLength(1);
    expect(await cli(['purge-history'], env)).toMatchObject({ code: 0, stdout: 'Deleted 0 history entries that ended more than 7 days ago.\n' });
  });

  it('takes --older-than-days, fractions too, and prints JSON with --json', async () => {
    await oldAndNew('purge/days', 0.5);
    const keep = await cli(['purge-history', '--older-than-days', '1', '--json'], env);
    expect([keep.code, JSON.parse(keep.stdout)]).toEqual([0, { deleted: 0, olderThanDays: 1 }]);
    const run = await cli(['purge-history', '--older-than-days', '0.25', '--json'], env);
    expect([run.code, JSON.parse(run.stdout)]).toEqual([0, { deleted: 1, olderThanDays: 0.25 }]);
    expect(await mutex.history({ lockId: 'purge/days' })).toHaveLength(1);
  });
});


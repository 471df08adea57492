import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { hostname, userInfo } from 'node:os';
import path from 'node:path';
import type { DbMutex, DbMutexHeldLock } from '../src';
import { ensureBuilt, ROOT, runCli } from './helpers/built';
import { createTestDatabase, dialect, itIf, pooler, TestContext, withDatabase, type TestDatabase } from './helpers/db';

const cli = runCli;

const OPERATOR = `${userInfo().username}@${hostname()}`;

/** One line, and nothing that looks like a stack trace. */
function expectOneLine(text: string) {
  expect(text.endsWith('\n')).toBe(true);
  expect(text.trimEnd().split('\n')).toHaveLength(1);
  expect(text).not.toMatch(/^\s+at /m);
}

describe('db-mutex CLI', () => {
  let ctx: TestContext;
  let mutex: DbMutex;
  /**
   * Holds the locks that stand for crashed workers: its lease is so long that its heartbeat never runs
   * during the test, so a heartbeat set into the past by `ctx.sql.setHeartbeatAgo` stays overdue.
   */
  let crashed: DbMutex;
  let env: NodeJS.ProcessEnv;
  const held: DbMutexHeldLock[] = [];

  beforeAll(async () => {
    await ensureBuilt();
    ctx = await TestContext.create();
    mutex = await ctx.mutex({ holder: 'report-worker' });
    crashed = await ctx.mutex({ holder: 'report-worker', leaseSeconds: 3000 });
    env = { DATABASE_URL: ctx.db.url };
  });
  afterAll(async () => {
    for (const lock of held) await lock.release().catch(() => undefined);
    await ctx.cleanup();
  });

  async function hold(lockId: string, options: Parameters<DbMutex['acquire']>[1] = {}, by = mutex) {
    const lock = await by.acquire(lockId, { ttlSeconds: 600, ...options });
    held.push(lock);
    return lock;
  }

  /** A lock whose holder stopped renewing 40 minutes ago (by the database clock): stale, not expired. */
  async function holdOverdue(lockId: string) {
    const lock = await hold(lockId, {}, crashed);
    await ctx.sql.setHeartbeatAgo(lockId, 2400);
    return lock;
  }

  /**
   * Rows that stand for other processes' locks are held here with heartbeat off, so this process never
   * renews them behind the test's back; the columns a heartbeat would set are written by `backdate`.
   */
  function lostEvent(lockId: string, by = mutex): Promise<void> {
    return new Promise((resolve) => {
      const listener = (event: { lockId: string }) => {
        if (event.lockId !== lockId) return;
        by.off('lost', listener);
        resolve();
      };
      by.on('lost', listener);
    });
  }

  async function eventCount(): Promise<number> {
    return Number((await ctx.exec<{ n: unknown }>('SELECT count(*) AS n FROM db_mutex_events'))[0]!.n);
  }

  describe('help and usage', () => {
    it('prints the top-level help with every command and exits 0, without needing a database', async () => {
      const run = await cli(['--help'], { DATABASE_URL: '' });
      expect(run.code).toBe(0);
      for (const command of ['list', 'release', 'release-stale', 'purge-expired', 'events', 'DATABASE_URL', 'Exit status']) {
        expect(run.stdout).toContain(command);
      }
    });

    it.each([
      ['list', ['--stale', '--filter', '--json', '--limit']],
      ['release', ['--fencing-token', '--reason', '--operator']],
      ['release-stale', ['--reason', '--operator']],
      ['purge-expired', ['--reason']],
      ['events', ['--json', '--lock', '--limit']],
    ])('prints the help of "%s" with its options', async (command, options) => {
      const run = await cli([command, '--help'], { DATABASE_URL: '' });
      expect(run.code).toBe(0);
      expect(run.stdout).toContain(`Usage: db-mutex ${command}`);
      for (const option of [...options, '--table', '--events-table']) expect(run.stdout).toContain(option);
    });

    it('also prints a command\'s help as "db-mutex help <command>"', async () => {
      expect(await cli(['help', 'release'], { DATABASE_URL: '' })).toEqual(await cli(['release', '-h'], { DATABASE_URL: '' }));
    });

    it('prints the package version', async () => {
      const { version } = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
      expect(await cli(['--version'])).toEqual({ code: 0, stdout: `${version}\n`, stderr: '' });
    });

    it('exits 2 with the help on stderr when no command is given', async () => {
      const run = await cli([]);
      expect(run.code).toBe(2);
      expect(run.stdout).toBe('');
      expect(run.stderr).toContain('Usage: db-mutex <command>');
    });

    it.each([
      [['frob'], 'db-mutex: unknown command "frob"'],
      [['list', '--bogus'], 'db-mutex list: unknown option --bogus'],
      [['release'], 'db-mutex release: missing the lock id'],
      [['release', 'a', 'b'], 'db-mutex release: unexpected argument "b"'],
      [['list', 'extra'], 'db-mutex list: unexpected argument "extra"'],
      [['release', 'x', '--fencing-token', '-1'], 'db-mutex release: --fencing-token needs a value'],
      [['list', '--limit', '0'], 'db-mutex list: --limit must be a whole number'],
    ])('exits 2 with one line for the usage error %j', async (args, message) => {
      const run = await cli(args);
      expect(run.code).toBe(2);
      expectOneLine(run.stderr);
      expect(run.stderr.startsWith(message)).toBe(true);
    });

    it.each([
      [['release', 'x', '--fencing-token', '1.5', '--json'], 'INVALID_FENCING_TOKEN'],
      [['release', '--json'], 'INVALID_LOCK_ID'],
      [['release', 'x'.repeat(256), '--json'], 'INVALID_LOCK_ID'],
      [['events', '--lock', 'x'.repeat(256), '--json'], 'INVALID_LOCK_ID'],
      [['list', '--limit', '0', '--json'], 'INVALID_LIMIT'],
      [['events', '--limit', '100001', '--json'], 'INVALID_LIMIT'],
      [['release-stale', '--operator=', '--json'], 'INVALID_OPERATOR'],
      [['fence-floor', 'ten', '--json'], 'INVALID_FLOOR'],
      [['list', '--table', 'no-such-table', '--json'], 'INVALID_TABLE_NAME'],
      [['list', '--events-table', '1x', '--json'], 'INVALID_EVENTS_TABLE_NAME'],
      [['release-stale', '--reason', 'r'.repeat(1001), '--json'], 'INVALID_REASON'],
    ])('with --json, answers the refused input %j with exit 2, its line on stderr, and an error naming the field on stdout', async (args, code) => {
      const run = await cli(args, env);
      expect(run.code).toBe(2);
      expectOneLine(run.stderr);
      const printed = JSON.parse(run.stdout) as { error: { code: string; message: string } };
      expect(printed).toEqual({ error: { code, message: expect.any(String) } });
      // The same message on both streams, the one the dashboard's API would give for that field.
      expect(run.stderr).toContain(printed.error.message);
    });

    it('without --json, prints refused input on stderr only', async () => {
      const run = await cli(['release', 'x', '--fencing-token', '1.5'], env);
      expect(run).toEqual({
        code: 2,
        stdout: '',
        stderr: 'db-mutex release: --fencing-token must be a whole number from 1 to 9007199254740991, got "1.5" (see db-mutex release --help)\n',
      });
    });

    it('exits 2 with one line when DATABASE_URL is not set', async () => {
      const run = await cli(['list'], { DATABASE_URL: '' });
      expect(run.code).toBe(2);
      expect(run.stderr).toBe('db-mutex list: DATABASE_URL is not set (e.g. postgres://user:password@host:5432/app)\n');
    });
  });

  describe('list', () => {
    it('says so when no lock is held, and exits 0', async () => {
      expect(await cli(['list'], env)).toEqual({ code: 0, stdout: 'No locks held.\n', stderr: '' });
      expect((await cli(['list', '--json'], env)).stdout).toBe('[]\n');
    });

    it('shows a table with age, expiry, heartbeat and status measured by the database clock', async () => {
      await hold('cache:warmup', { heartbeat: false });
      await ctx.sql.expireLock('cache:warmup');
      await holdOverdue('search:reindex');
      await hold('nightly-report', { heartbeat: false });

      const run = await cli(['list'], env);
      expect(run.code).toBe(0);
      const lines = run.stdout.split('\n');
      expect(lines[0]).toMatch(/^STATUS\s+AGE\s+EXPIRES\s+HEARTBEAT\s+TOKEN\s+HOLDER\s+PROCESS\s+LOCK ID$/);
      // Oldest first. (How durations read is admin/format's business, tested there; here: the right cells.)
      const age = '(< 1 s|\\d+ s)';
      expect(lines[1]).toMatch(new RegExp(`^stale\\s+${age}\\s+expired \\d+ s ago\\s+off\\s+\\d+\\s+report-worker\\s+\\S+:\\d+\\s+cache:warmup$`));
      expect(lines[2]).toMatch(new RegExp(`^stale\\s+${age}\\s+in 9 min \\d+ s\\s+40 min( \\d+ s)? ago\\s+\\d+\\s+report-worker\\s+\\S+\\s+search:reindex$`));
      expect(lines[3]).toMatch(new RegExp(`^active\\s+${age}\\s+in 9 min \\d+ s\\s+off\\s+\\d+\\s+report-worker\\s+\\S+\\s+nightly-report$`));
      expect(run.stdout).toContain('3 locks: 1 active, 2 stale. Times are by the database clock.');
    });

    it('shows only stale locks with --stale and only matching ids with --filter', async () => {
      const stale = await cli(['list', '--stale'], env);
      expect(stale.stdout).toContain('cache:warmup');
      expect(stale.stdout).toContain('search:reindex');
      expect(stale.stdout).not.toContain('nightly-report');
      expect(stale.stdout).toContain('2 stale locks.');
      const filtered = await cli(['list', '--filter', 'report'], env);
      expect(filtered.stdout).toContain('nightly-report');
      expect(filtered.stdout).not.toContain('cache:warmup');
      expect(filtered.stdout).toContain('1 lock matching "report": 1 active, 0 stale.');
      expect((await cli(['list', '--filter', 'nothing-like-this'], env)).stdout).toBe('No locks held matching "nothing-like-this".\n');
    });

    it('prints JSON with the same fields as the dashboard API, ages from the database clock', async () => {
      const run = await cli(['list', '--json', '--filter', 'cache'], env);
      expect(run.code).toBe(0);
      const rows = JSON.parse(run.stdout) as Record<string, unknown>[];
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ lockId: 'cache:warmup', holder: 'report-worker', status: 'stale', stale: true, leaseSeconds: null });
      // Both measured against the row's dbNow, so they are exact database-clock differences.
      const dbNow = Date.parse(rows[0]!.dbNow as string);
      expect(rows[0]!.ageSeconds).toBeCloseTo((dbNow - Date.parse(rows[0]!.acquiredAt as string)) / 1000, 3);
      expect(rows[0]!.expiresInSeconds).toBeCloseTo((Date.parse(rows[0]!.expiresAt as string) - dbNow) / 1000, 3);
      expect(rows[0]!.expiresInSeconds).toBeLessThan(0);
    });

    it('says how many rows it left out when --limit cuts the list', async () => {
      const run = await cli(['list', '--limit', '1'], env);
      expect(run.stdout.trim().split('\n')).toHaveLength(4);
      expect(run.stdout).toContain('(showing the oldest 1; see --limit)');
    });

    it('escapes control characters in lock ids so they cannot rewrite the terminal', async () => {
      const lock = await hold('evil\x1b[2Jid\u202e');
      const run = await cli(['list', '--filter', 'evil'], env);
      expect(run.stdout).toContain('evil\\x1b[2Jid\\u202e');
      expect(run.stdout).not.toContain('\x1b');
      await lock.release();
    });

    it('prints --json with invisible characters as \\u escapes that parse back to the exact values', async () => {
      const id = 'json\u202Eexe.txt\u200B\u0085';
      const holder = 'worker\u2066';
      const by = await ctx.mutex({ holder });
      await hold(id, {}, by);
      // Written from the specification: C1 controls, zero-width and bidirectional characters must not reach the terminal.
      const invisible = /[\u0080-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069]/;
      const list = await cli(['list', '--json', '--filter', 'json'], env);
      expect(list.code).toBe(0);
      expect(list.stdout).not.toMatch(invisible);
      expect(list.stdout).toContain('"lockId": "json\\u202eexe.txt\\u200b\\u0085"');
      const rows = JSON.parse(list.stdout) as { lockId: string; holder: string }[];
      expect(rows.map((r) => [r.lockId, r.holder])).toEqual([[id, holder]]);
      const released = await cli(['release', id, '--reason', 'r\u202Eeason', '--json'], env);
      expect(released.code).toBe(0);
      expect(released.stdout).not.toMatch(invisible);
      expect(JSON.parse(released.stdout)).toMatchObject({ event: { lockId: id, holder, reason: 'r\u202Eeason' } });
      const events = await cli(['events', '--lock', id, '--json'], env);
      expect(events.stdout).not.toMatch(invisible);
      expect((JSON.parse(events.stdout) as { lockId: string }[])[0]!.lockId).toBe(id);
    });
  });

  describe('release', () => {
    it('force-releases a lock, aborts its holder and writes the same audit entry as the dashboard', async () => {
      // A short lease so that, where the database has no release notification, the next renewal
      // (every second) tells the holder; PostgreSQL's NOTIFY tells it at once.
      const lock = await hold('billing:sync', { leaseSeconds: 3 });
      const lost = lostEvent('billing:sync');
      const run = await cli(['release', 'billing:sync', '--reason', 'deploy stuck'], env);
      expect(run.code).toBe(0);
      expect(run.stderr).toBe('');
      expect(run.stdout).toMatch(new RegExp(`^Released "billing:sync" \\(fencing token ${lock.fencingToken}, held by report-worker on .+ pid \\d+ for .+\\); audit entry #\\d+ by ${OPERATOR.replace(/[.]/g, '\\.')}\\.\n$`));
      await lost;
      expect(lock.signal.aborted).toBe(true);
      expect(await mutex.inspect('billing:sync')).toBeNull();
      const [event] = await mutex.events({ lockId: 'billing:sync' });
      expect(event).toMatchObject({ action: 'force-release', fencingToken: lock.fencingToken, holder: 'report-worker', operator: OPERATOR, reason: 'deploy stuck' });
    });

    it('records --operator instead of $USER@hostname', async () => {
      const lock = await hold('import/customers 2026-11');
      const run = await cli(['release', 'import/customers 2026-11', '--operator', 'alice@ops-laptop'], env);
      expect(run.code).toBe(0);
      const [event] = await mutex.events({ lockId: 'import/customers 2026-11' });
      expect(event).toMatchObject({ operator: 'alice@ops-laptop', reason: null, fencingToken: lock.fencingToken });
    });

    it('releases only the named acquisition with --fencing-token, and exits 1 with the current token otherwise', async () => {
      const lock = await hold('payroll');
      const before = await eventCount();
      const wrong = await cli(['release', 'payroll', '--fencing-token', String(lock.fencingToken + 1000)], env);
      expect(wrong.code).toBe(1);
      expect(wrong.stdout).toBe('');
      expect(wrong.stderr).toBe(
        `db-mutex release: lock "payroll" is held with fencing token ${lock.fencingToken}, not ${lock.fencingToken + 1000} (another acquisition): nothing released\n`,
      );
      expect(lock.isHeld()).toBe(true);
      expect(await eventCount()).toBe(before);
      const right = await cli(['release', 'payroll', '--fencing-token', String(lock.fencingToken), '--json'], env);
      expect(right.code).toBe(0);
      expect(JSON.parse(right.stdout)).toMatchObject({ status: 'released', event: { lockId: 'payroll', fencingToken: lock.fencingToken } });
      expect(await eventCount()).toBe(before + 1);
    });

    it('exits 1 and writes nothing for a lock nobody holds', async () => {
      const before = await eventCount();
      const run = await cli(['release', 'no-such-lock'], env);
      expect(run).toEqual({ code: 1, stdout: '', stderr: 'db-mutex release: no lock "no-such-lock" is held: nothing released\n' });
      expect(JSON.parse((await cli(['release', 'no-such-lock', '--json'], env)).stdout)).toEqual({ status: 'not-found' });
      expect(await eventCount()).toBe(before);
    });

    it.each(['-1', '0', '1.5', 'abc', '1e3', '99999999999999999999'])('exits 2 and writes nothing for the fencing token %s', async (token) => {
      const lock = await hold(`guarded-${token}`);
      const before = await eventCount();
      const run = await cli(['release', `guarded-${token}`, `--fencing-token=${token}`], env);
      expect(run.code).toBe(2);
      expectOneLine(run.stderr);
      expect(run.stderr).toContain(`--fencing-token must be a whole number from 1 to ${Number.MAX_SAFE_INTEGER}, got "${token}"`);
      expect(lock.isHeld()).toBe(true);
      expect(await eventCount()).toBe(before);
      await lock.release();
    });

    it.each([
      ['a lock id over 255 characters', ['release', 'x'.repeat(256)], 'lockId must be at most 255 characters'],
      ['a reason over 1000 characters', ['release', 'x', '--reason', 'r'.repeat(1001)], 'reason must be at most 1000 characters'],
      ['a bad table name', ['list', '--table', 'no such table'], 'tableName must match'],
    ])('exits 2 and writes nothing for %s', async (_what, args, message) => {
      const before = await eventCount();
      const run = await cli(args, env);
      expect(run.code).toBe(2);
      expectOneLine(run.stderr);
      expect(run.stderr).toContain(message);
      expect(await eventCount()).toBe(before);
    });

    it('accepts a lock id that starts with a dash after --', async () => {
      await hold('-odd-id');
      const run = await cli(['release', '--', '-odd-id'], env);
      expect(run.code).toBe(0);
      expect(await mutex.inspect('-odd-id')).toBeNull();
    });
  });

  describe('release-stale and purge-expired', () => {
    it('release-stale frees every stale lock and nothing else, audited; a second run exits 1', async () => {
      // From the list tests: cache:warmup (expired) and search:reindex (heartbeat overdue) are stale.
      const run = await cli(['release-stale', '--reason', 'holders gone'], env);
      expect(run.code).toBe(0);
      expect(run.stdout).toContain('Released "cache:warmup"');
      expect(run.stdout).toContain('Released "search:reindex"');
      expect(run.stdout).toContain('Released 2 locks.');
      expect((await mutex.list()).map((l) => l.lockId)).toEqual(['nightly-report']);
      const events = await mutex.events({ limit: 2 });
      expect(events.map((e) => [e.action, e.operator, e.reason])).toEqual([
        ['release-stale', OPERATOR, 'holders gone'],
        ['release-stale', OPERATOR, 'holders gone'],
      ]);
      expect(await cli(['release-stale'], env)).toEqual({ code: 1, stdout: '', stderr: 'db-mutex release-stale: no stale locks: nothing released\n' });
    });

    it('purge-expired deletes expired locks only, audited; with none it exits 1', async () => {
      await hold('thumbnails:rebuild', { heartbeat: false });
      await ctx.sql.expireLock('thumbnails:rebuild');
      // Heartbeat overdue but not expired: stale, yet not something purge-expired may touch.
      await holdOverdue('email:digest');
      const run = await cli(['purge-expired', '--json', '--operator', 'cron'], env);
      expect(run.code).toBe(0);
      expect((JSON.parse(run.stdout) as { lockId: string; action: string; operator: string }[]).map((e) => [e.lockId, e.action, e.operator])).toEqual([
        ['thumbnails:rebuild', 'purge-expired', 'cron'],
      ]);
      expect((await mutex.list()).map((l) => l.lockId).sort()).toEqual(['email:digest', 'nightly-report']);
      expect(await cli(['purge-expired'], env)).toEqual({ code: 1, stdout: '', stderr: 'db-mutex purge-expired: no expired locks: nothing purged\n' });
    });
  });

  describe('events', () => {
    it('shows the audit trail newest first, reasons on their own line, and as JSON', async () => {
      const run = await cli(['events', '--limit', '3'], env);
      expect(run.code).toBe(0);
      const lines = run.stdout.trimEnd().split('\n');
      expect(lines[0]).toMatch(/^TIME\s+ACTION\s+OPERATOR\s+TOKEN\s+HELD FOR\s+HOLDER\s+LOCK ID$/);
      expect(lines[1]).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\s+purge-expired\s+cron\s+\d+\s+\S.*\s+report-worker\s+thumbnails:rebuild$/);
      expect(run.stdout).toContain('    reason: holders gone');
      const all = JSON.parse((await cli(['events', '--json'], env)).stdout) as { lockId: string; createdAt: string }[];
      expect(all).toHaveLength(await eventCount());
      expect(all[0]!.lockId).toBe('thumbnails:rebuild');
      const one = JSON.parse((await cli(['events', '--json', '--lock', 'billing:sync'], env)).stdout) as { lockId: string; reason: string }[];
      expect(one).toEqual([expect.objectContaining({ lockId: 'billing:sync', reason: 'deploy stuck', action: 'force-release' })]);
      expect((await cli(['events', '--lock', 'never-released'], env)).stdout).toBe('No audit entries for "never-released".\n');
    });
  });

  describe('other tables', () => {
    it('works on the tables named by --table and --events-table', async () => {
      const other = await ctx.mutex({ tableName: 'ops_locks', eventsTableName: 'ops_events', leaseSeconds: 3 });
      const lock = await other.acquire('ops-only', { ttlSeconds: 60 });
      const lost = lostEvent('ops-only', other);
      const options = ['--table', 'ops_locks', '--events-table', 'ops_events'];
      expect((await cli([...options, 'list'], env)).stdout).toContain('ops-only');
      expect((await cli(['list'], env)).stdout).not.toContain('ops-only');
      expect((await cli(['release', 'ops-only', ...options], env)).code).toBe(0);
      await lost;
      expect(lock.isHeld()).toBe(false);
      expect((await other.events())[0]).toMatchObject({ lockId: 'ops-only', action: 'force-release' });
    });
  });

  describe('database problems', () => {
    let empty: TestDatabase;
    beforeAll(async () => {
      empty = await createTestDatabase();
    });
    afterAll(() => empty.drop());

    it('says in one line that the database is unreachable, without a stack trace, and exits 2', async () => {
      // A port that was just free: nothing listens there.
      const server = createServer();
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const port = (server.address() as { port: number }).port;
      await new Promise((resolve) => server.close(resolve));
      const url = `postgres://postgres:s3cret@127.0.0.1:${port}/app`;
      for (const command of [['list'], ['release', 'x'], ['events']]) {
        const run = await cli(command, { DATABASE_URL: url });
        expect(run.code).toBe(2);
        expectOneLine(run.stderr);
        expect(run.stderr).toBe(
          `db-mutex ${command[0]}: cannot connect to the database at postgres://postgres:***@127.0.0.1:${port}/app: ` +
            'connection refused (ECONNREFUSED); check DATABASE_URL and that the server is running\n',
        );
      }
    });

    it('says which table is missing and how to create it, and exits 2', async () => {
      for (const command of ['list', 'release-stale', 'events']) {
        const run = await cli([command], { DATABASE_URL: empty.url });
        expect(run.code).toBe(2);
        // release-stale touches both tables; which one a database trips over first is its own business.
        const table = { list: 'db_mutex_locks', 'release-stale': '(db_mutex_locks|db_mutex_events)', events: 'db_mutex_events' }[command];
        expect(run.stderr).toMatch(
          new RegExp(`^db-mutex ${command}: table ${table} not found: run the migration \\(npx sequelize-cli db:migrate\\) or mutex\\.sync\\(\\)\n$`),
        );
      }
    });

    // SQLite creates a missing database file on connect, so only the servers can say this.
    itIf(dialect !== 'sqlite')('says when the database itself does not exist', async () => {
      const run = await cli(['list'], { DATABASE_URL: withDatabase(ctx.db.url, `${ctx.db.name}_missing`) });
      expect(run.code).toBe(2);
      expectOneLine(run.stderr);
      // Through PgBouncer the refusal is the pooler's own, with its own SQLSTATE (08P01), same words.
      expect(run.stderr).toContain(dialect !== 'postgres' ? '(ER_BAD_DB_ERROR)' : pooler ? 'does not exist' : '(3D000)');
    });
  });
});

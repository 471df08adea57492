/**
 * The CLI never prints a password, whatever DATABASE_URL looks like: the real `db-mutex` process is run
 * against unreachable and reachable servers with URLs whose passwords hold every character that
 * confuses URL parsers, with Node told to print every warning it has, and neither output may contain
 * the password in any form. URLs that cannot be parsed give one line (exit 2) that quotes nothing.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DatabaseUrlError, parseDatabaseUrl, sequelizeOptions } from '../src/cli/database-url';
import { ensureBuilt, ROOT, runCli, type CliRun } from './helpers/built';
import { dialect, isMariaDb, itIf, TestContext } from './helpers/db';

/** Every warning Node has, printed: a URL in any of them would show. */
const LOUD_NODE_OPTIONS = '--trace-warnings --trace-deprecation --pending-deprecation';

function cli(args: string[], url: string): Promise<CliRun> {
  return runCli(args, { DATABASE_URL: url, NODE_OPTIONS: LOUD_NODE_OPTIONS }, 60_000);
}

/** The marker every test password contains: no output may contain it. */
const MARK = 'S3cretPW';

/** Passwords as a sloppy operator writes them, raw into the URL. */
const RAW_PASSWORDS = [
  `Pa#ss-${MARK}`,
  `1234/${MARK}`,
  `12#${MARK}`,
  `${MARK}?x=1`,
  `p@ss@${MARK}`,
  `a:b:${MARK}`,
  `50%off-${MARK}`,
  `${MARK}/../#?@:[]`,
];

function expectNoSecret(run: CliRun, url: string) {
  for (const [stream, text] of [['stdout', run.stdout], ['stderr', run.stderr]] as const) {
    // The URL rides along so a failure names the input that leaked.
    expect({ url, stream, leaked: text.includes(MARK) || text.includes(encodeURIComponent(MARK)) }).toEqual({ url, stream, leaked: false });
  }
}

function expectOneLine(run: CliRun) {
  expect(run.stderr.endsWith('\n')).toBe(true);
  expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
}

/** URLs of servers that do not answer: a closed port on both loopbacks, a socket directory with no socket. */
function unreachableUrls(scheme: string): string[] {
  // Parameters the driver knows (an unknown one makes mysql2 print a warning of its own).
  const params = scheme === 'postgres' ? 'sslmode=disable&application_name=x' : 'charset=utf8mb4';
  const out: string[] = [];
  for (const password of RAW_PASSWORDS) {
    out.push(`${scheme}://app:${password}@127.0.0.1:1/app`);
    out.push(`${scheme}://app:${encodeURIComponent(password)}@127.0.0.1:1/app`);
    out.push(`${scheme}://app:${password}@[::1]:1/app`);
    out.push(`${scheme}://app:${password}@127.0.0.1:1/app?${params}`);
  }
  out.push(`${scheme}://app:${MARK}@/app?host=/nonexistent-socket-dir`);
  out.push(`${scheme}://app:${MARK}@%2Fnonexistent-socket-dir/app`);
  out.push(`${scheme}://app:${MARK}@127.0.0.1:1/app?password=${MARK}`);
  return out;
}

/** Not URLs at all, or broken ones: each must be refused in one line that quotes nothing. */
const UNPARSABLE = [
  `app:${MARK}@db.internal:5432/app`,
  `${MARK}`,
  `postgres:${MARK}@db/app`,
  `postgres://app:${MARK}@[::1:5432/app`,
  `postgres://app:${MARK}@db:99999/app`,
  `postgres://app:${MARK}/db:5432/app`,
  `postgres://app@db:${MARK}/app`,
  `postgres://app:%E0%A4%A${MARK}@db/app`,
  `postgres://app:${MARK}@db/app?uselibpqcompat=true&sslmode=verify-ca`,
  `redis://app:${MARK}@db:6379`,
  `sqlite:/tmp/x.db?password=${MARK}`,
];

describe('DATABASE_URL parsing (the one parser of the CLI)', () => {
  it.each([
    ['postgres://app:Pa#ss-S3cret@127.0.0.1:5432/db', { host: '127.0.0.1', port: 5432, username: 'app', password: 'Pa#ss-S3cret', database: 'db' }],
    ['postgres://user:1234/S3cretPW@host/x', { host: 'host', port: undefined, username: 'user', password: '1234/S3cretPW', database: 'x' }],
    ['postgresql://user:12#S3cretPW@host:6432/x', { dialect: 'postgres', host: 'host', port: 6432, password: '12#S3cretPW' }],
    ['mariadb://root:p@ss@w?rd@db.internal/app', { dialect: 'mariadb', host: 'db.internal', username: 'root', password: 'p@ss@w?rd', database: 'app' }],
    ['mysql://u%40corp:p%2Fw%3Fx%25@h/d%20b', { dialect: 'mysql', username: 'u@corp', password: 'p/w?x%', database: 'd b' }],
    ['postgres://u:50%off@h/d', { password: '50%off' }],
    ['postgres://u:pw@[::1]:5433/d', { host: '::1', port: 5433 }],
    ['postgres://u:pw@[fe80::1%25eth0]/d', { host: 'fe80::1%eth0' }],
    ['postgres://u:pw@/d?host=/var/run/postgresql', { host: '/var/run/postgresql', database: 'd', query: { host: '/var/run/postgresql' } }],
    ['postgres://u:pw@%2Fvar%2Frun%2Fpostgresql/d', { host: '/var/run/postgresql', database: 'd' }],
    ['postgres://u@h', { username: 'u', password: undefined, database: undefined }],
    ['postgres://h/d?sslmode=require&application_name=a%20b', { username: undefined, query: { sslmode: 'require', application_name: 'a b' } }],
    ['sqlite:/tmp/a b/x#1.db', { dialect: 'sqlite', storage: '/tmp/a b/x#1.db' }],
    ['sqlite:///tmp/x.db', { dialect: 'sqlite', storage: '/tmp/x.db' }],
    ['sqlite::memory:', { dialect: 'sqlite', storage: ':memory:' }],
  ])('reads %s', (url, expected) => {
    expect(parseDatabaseUrl(url)).toMatchObject(expected);
  });

  it('shows a URL without its password and without its query', () => {
    expect(parseDatabaseUrl('postgres://app:1234/S3cretPW@db:5432/app?password=S3cretPW').display).toBe('postgres://app:***@db:5432/app');
    expect(parseDatabaseUrl('postgres://app:pw@[::1]:5432/app').display).toBe('postgres://app:***@[::1]:5432/app');
    expect(parseDatabaseUrl('postgres://app@/app?host=/var/run/postgresql').display).toBe('postgres://app@/app?host=/var/run/postgresql');
  });

  it.each(UNPARSABLE)('refuses %s with a message that quotes none of it', (url) => {
    let error: unknown;
    try {
      sequelizeOptions(parseDatabaseUrl(url));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(DatabaseUrlError);
    expect((error as Error).message).not.toContain(MARK);
  });
});

/**
 * The machine's PostgreSQL (and PgBouncer in front of it) trusts local connections, so a URL with any
 * password logs in and these tests show the URL was read right. The suite's own embedded PostgreSQL
 * checks passwords (and has no socket in /var/run/postgresql): there the tests below log in as a role of
 * their own with a nasty password, which proves the exact password is sent (as the MariaDB ones do).
 */
const postgresTrustsAnyPassword = dialect === 'postgres' && process.env.DB_MUTEX_TEST_EMBEDDED !== '1';
const postgresChecksPasswords = dialect === 'postgres' && process.env.DB_MUTEX_TEST_EMBEDDED === '1';

describe('db-mutex never prints a password', () => {
  let ctx: TestContext;
  const scheme = dialect === 'postgres' ? 'postgres' : dialect;

  beforeAll(async () => {
    await ensureBuilt();
    ctx = await TestContext.create();
    const mutex = await ctx.mutex();
    await mutex.close();
  });
  afterAll(() => ctx?.cleanup());

  itIf(dialect !== 'sqlite')(
    'against unreachable servers: exit 2, one line naming the host, and no password in any output',
    async () => {
      const urls = unreachableUrls(scheme);
      // A few at a time: each is a process that waits for a refused connection.
      for (let i = 0; i < urls.length; i += 4) {
        const batch = urls.slice(i, i + 4);
        const runs = await Promise.all(batch.map((url) => cli(['list'], url)));
        runs.forEach((run, j) => {
          expectNoSecret(run, batch[j]!);
          expect({ url: batch[j], code: run.code }).toEqual({ url: batch[j], code: 2 });
          expectOneLine(run);
          expect(run.stderr).toMatch(/^db-mutex list: cannot connect to the database at /);
        });
      }
    },
    240_000,
  );

  it.each(UNPARSABLE)('refuses the unparsable URL %s in one line (exit 2) that quotes nothing', async (url) => {
    const run = await cli(['list'], url);
    expectNoSecret(run, url);
    expect(run.code).toBe(2);
    expectOneLine(run);
    expect(run.stderr).toMatch(/^db-mutex list: DATABASE_URL /);
  });

  itIf(postgresTrustsAnyPassword)('connects with a nasty password over TCP and over the unix socket, and prints none of it', async () => {
    const u = new URL(ctx.db.url);
    const db = u.pathname.slice(1);
    // The test server trusts local connections, so any password gets in: what matters is that the
    // URL is read correctly (right host, port, database, user) and the password shown nowhere.
    const urls = RAW_PASSWORDS.flatMap((password) => [
      `postgres://${u.username}:${password}@${u.host}/${db}`,
      `postgresql://${u.username}:${encodeURIComponent(password)}@${u.host}/${db}?application_name=cli-test`,
    ]);
    urls.push(`postgres://${u.username}:${MARK}@/${db}?host=/var/run/postgresql`);
    urls.push(`postgres://${u.username}:${MARK}@%2Fvar%2Frun%2Fpostgresql/${db}`);
    // A few processes at a time: each starts Node, loads the package and connects (seconds on a busy machine).
    for (let i = 0; i < urls.length; i += 4) {
      const batch = urls.slice(i, i + 4);
      const runs = await Promise.all(batch.map((url) => cli(['list'], url)));
      runs.forEach((run, j) => {
        const url = batch[j]!;
        expectNoSecret(run, url);
        expect({ url, run }).toEqual({ url, run: { code: 0, stdout: 'No locks held.\n', stderr: '' } });
      });
    }
  }, 240_000);

  itIf(postgresTrustsAnyPassword)('lets sequelize-cli read the same URLs through the repository config, printing none of the password', async () => {
    const u = new URL(ctx.db.url);
    const url = `postgres://${u.username}:Pa#ss-${MARK}@${u.host}${u.pathname}`;
    const sequelizeCli = path.join(ROOT, 'node_modules', 'sequelize-cli', 'lib', 'sequelize');
    const run = await new Promise<CliRun>((resolve) => {
      const env = { ...process.env, DATABASE_URL: url, NODE_OPTIONS: LOUD_NODE_OPTIONS };
      execFile(process.execPath, [sequelizeCli, 'db:migrate:status'], { cwd: ROOT, env, timeout: 120_000 }, (error, stdout, stderr) => {
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr });
      });
    });
    expectNoSecret(run, url);
    // It connected (the migration's status is listed), so the URL was read right.
    expect({ code: run.code, stdout: run.stdout }).toEqual({ code: 0, stdout: expect.stringMatching(/create-db-mutex/) });
  }, 180_000);

  describe('on a MariaDB server that checks the password', () => {
    const user = `dbm_cli_${randomBytes(4).toString('hex')}`;
    const password = `p@ss:w/o#r?d%zz-${MARK}`;

    beforeAll(async () => {
      if (!isMariaDb) return;
      await ctx.exec(`CREATE USER '${user}'@'127.0.0.1' IDENTIFIED BY ?`, [password]);
      await ctx.exec(`GRANT ALL ON \`${ctx.db.name}\`.* TO '${user}'@'127.0.0.1'`);
    });
    afterAll(async () => {
      if (isMariaDb) await ctx.exec(`DROP USER IF EXISTS '${user}'@'127.0.0.1'`);
    });

    itIf(isMariaDb)('logs in with the exact password, raw or %-escaped, and prints none of it', async () => {
      const port = new URL(ctx.db.url).port || '3306';
      for (const written of [password, encodeURIComponent(password)]) {
        const url = `${scheme}://${user}:${written}@127.0.0.1:${port}/${ctx.db.name}`;
        const run = await cli(['list'], url);
        expectNoSecret(run, url);
        expect({ url, run }).toEqual({ url, run: { code: 0, stdout: 'No locks held.\n', stderr: '' } });
      }
    });

    itIf(isMariaDb)('is refused with a wrong password, in one line that names the user and not the password', async () => {
      const port = new URL(ctx.db.url).port || '3306';
      const url = `${scheme}://${user}:wrong/${MARK}#@127.0.0.1:${port}/${ctx.db.name}`;
      const run = await cli(['list'], url);
      expectNoSecret(run, url);
      expect(run.code).toBe(2);
      expectOneLine(run);
      expect(run.stderr).toContain(`cannot connect to the database at ${scheme}://${user}:***@127.0.0.1:${port}/${ctx.db.name}`);
    });
  });

  describe('on a PostgreSQL server that checks the password (the embedded one)', () => {
    const user = `dbm_cli_${randomBytes(4).toString('hex')}`;
    const password = `p@ss:w/o#r?d%zz-${MARK}`;

    beforeAll(async () => {
      if (!postgresChecksPasswords) return;
      const c = await ctx.client();
      try {
        // format() quotes the role name and the password literal (which holds @ : / # ? %).
        await c.query(`SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', $1::text, $2::text) AS sql`, [user, password]).then((r) =>
          c.query(r.rows[0].sql as string),
        );
        await c.query(`GRANT SELECT ON ALL TABLES IN SCHEMA public TO "${user}"`);
      } finally {
        await c.end();
      }
    });
    afterAll(async () => {
      if (!postgresChecksPasswords) return;
      const c = await ctx.client();
      try {
        await c.query(`REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "${user}"`);
        await c.query(`DROP ROLE IF EXISTS "${user}"`);
      } finally {
        await c.end();
      }
    });

    itIf(postgresChecksPasswords)('logs in with the exact password, raw or %-escaped, and prints none of it', async () => {
      const u = new URL(ctx.db.url);
      for (const written of [password, encodeURIComponent(password)]) {
        const url = `postgres://${user}:${written}@${u.host}${u.pathname}`;
        const run = await cli(['list'], url);
        expectNoSecret(run, url);
        expect({ url, run }).toEqual({ url, run: { code: 0, stdout: 'No locks held.\n', stderr: '' } });
      }
    });

    itIf(postgresChecksPasswords)('is refused with a wrong password, in one line that names the user and not the password', async () => {
      const u = new URL(ctx.db.url);
      const url = `postgres://${user}:wrong/${MARK}#@${u.host}${u.pathname}`;
      const run = await cli(['list'], url);
      expectNoSecret(run, url);
      expect(run.code).toBe(2);
      expectOneLine(run);
      expect(run.stderr).toContain(`cannot connect to the database at postgres://${user}:***@${u.host}${u.pathname}`);
    });
  });

  itIf(dialect === 'sqlite')('opens sqlite files named in every URL form, with #, % and spaces in the path', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dbm cli #%-'));
    try {
      const file = path.join(dir, 'a #1%.db');
      const relative = path.relative(ROOT, file);
      for (const url of [`sqlite:${file}`, `sqlite://${file}`, `sqlite:${relative}`]) {
        const run = await cli(['list'], url);
        // A new empty file has no lock table: the message proves which file was opened.
        expect({ url, run }).toEqual({
          url,
          run: { code: 2, stdout: '', stderr: 'db-mutex list: table db_mutex_locks not found: run the migration (npx sequelize-cli db:migrate) or mutex.sync()\n' },
        });
      }
      const run = await cli(['list'], ctx.db.url);
      expect(run).toEqual({ code: 0, stdout: 'No locks held.\n', stderr: '' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

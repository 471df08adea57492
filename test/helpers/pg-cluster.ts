/**
 * A real PostgreSQL primary + streaming standby for failover tests, built from Debian's PostgreSQL 15
 * binaries (initdb, pg_basebackup, pg_ctl), and a real PgBouncer in front of the primary that the
 * failover repoints (as a VIP or DNS switch would).
 *
 * - Everything lives in one temporary folder under the OS temp dir, owned by the `postgres` user when
 *   running as root (initdb and the server refuse root), with both data directories, the logs and
 *   the Unix sockets inside it. Both servers listen on 127.0.0.1 on free ports of their own; the
 *   machine's main cluster is never touched.
 * - `synchronous: true` names the standby in `synchronous_standby_names` (commits wait until the
 *   standby has flushed their WAL: `synchronous_commit = on`, or `remote_apply`); `false` streams
 *   asynchronously (a commit returns before the standby has anything).
 * - `dispose()` stops both servers (immediate mode) and PgBouncer and removes the folder; it is also
 *   run, synchronously, if the test process exits without calling it.
 */
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from 'pg';
import { withDatabase } from './db';
import { freePort } from './free-port';
import { startPgBouncer, type PgBouncer, type PgBouncerPoolMode } from './pgbouncer';
import { waitUntil } from './wait';

const run = promisify(execFile);

/** Where Debian puts PostgreSQL 15's server binaries; DB_MUTEX_PG_BIN_DIR overrides it. */
export const PG_BIN_DIR = process.env.DB_MUTEX_PG_BIN_DIR ?? '/usr/lib/postgresql/15/bin';
const BINARIES = ['initdb', 'pg_ctl', 'pg_basebackup', 'postgres'];
const RUN_AS = 'postgres';
const STANDBY_NAME = 'standby1';

/**
 * Why the failover tests cannot run here, or null when they can. Only a missing binary folder is a
 * reason to skip (a machine without server binaries at all); a folder with binaries missing is an
 * error the test reports.
 */
export function pgClusterUnavailable(): string | null {
  if (!existsSync(PG_BIN_DIR)) {
    return `${PG_BIN_DIR} does not exist: install Debian's postgresql-15 (apt-get install postgresql-15) or set DB_MUTEX_PG_BIN_DIR`;
  }
  return null;
}

const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

function runAsIds(): { uid: number; gid: number } | null {
  if (!isRoot()) return null;
  const uid = spawnSync('id', ['-u', RUN_AS], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', RUN_AS], { encoding: 'utf8' });
  if (uid.status !== 0) throw new Error(`PostgreSQL refuses to run as root and there is no "${RUN_AS}" user to run it as`);
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** argv that runs a PostgreSQL binary as the right user. */
function pgCommand(binary: string, args: string[]): [string, string[]] {
  const path = join(PG_BIN_DIR, binary);
  return isRoot() ? ['runuser', ['-u', RUN_AS, '--', path, ...args]] : [path, args];
}

async function pg(binary: string, args: string[], timeoutMs = 120_000): Promise<string> {
  const [file, argv] = pgCommand(binary, args);
  try {
    const { stdout } = await run(file, argv, { timeout: timeoutMs, encoding: 'utf8' });
    return stdout;
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${binary} ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

export interface PgClusterOptions {
  /** Synchronous replication to the standby (default false: asynchronous). */
  synchronous?: boolean;
  /** `synchronous_commit` on the primary when synchronous (default 'on': wait for the standby's flush). */
  synchronousCommit?: 'on' | 'remote_apply';
  /** Pool mode of the PgBouncer in front (default 'session'). */
  poolMode?: PgBouncerPoolMode;
}

type Role = 'primary' | 'standby';

export class PgCluster {
  /** Port of each server; the standby keeps its port when promoted. */
  readonly ports: Record<Role, number> = { primary: 0, standby: 0 };
  /** The PgBouncer the app talks to (in front of the primary until `failover()`). */
  bouncer: PgBouncer | null = null;
  /** Which server PgBouncer points at. */
  current: Role = 'primary';
  private readonly running = new Set<Role>();
  private disposed = false;
  private readonly exitHook = () => this.disposeSync();

  private constructor(
    readonly dir: string,
    readonly options: Required<PgClusterOptions>,
  ) {
    process.once('exit', this.exitHook);
  }

  static async start(options: PgClusterOptions = {}): Promise<PgCluster> {
    for (const binary of BINARIES) {
      if (!existsSync(join(PG_BIN_DIR, binary))) throw new Error(`${join(PG_BIN_DIR, binary)} is missing: reinstall postgresql-15`);
    }
    const ids = runAsIds();
    // Under the temp dir, but not inside a root-only folder: the postgres user must reach it.
    const dir = mkdtempSync(join(tmpdir(), 'dbm-pg-pair-'));
    mkdirSync(join(dir, 'sockets'));
    if (ids) for (const d of [dir, join(dir, 'sockets')]) chownSync(d, ids.uid, ids.gid);
    const cluster = new PgCluster(dir, {
      synchronous: options.synchronous ?? false,
      synchronousCommit: options.synchronousCommit ?? 'on',
      poolMode: options.poolMode ?? 'session',
    });
    try {
      await cluster.init();
    } catch (error) {
      await cluster.dispose();
      throw error;
    }
    return cluster;
  }

  private dataDir(role: Role): string {
    return join(this.dir, role);
  }

  private async init(): Promise<void> {
    const primary = this.dataDir('primary');
    await pg('initdb', ['-D', primary, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8', '--locale=C']);
    const settings = [
      "listen_addresses = '127.0.0.1'",
      `unix_socket_directories = '${join(this.dir, 'sockets')}'`,
      'wal_level = replica',
      'max_wal_senders = 5',
      'wal_keep_size = 256MB',
      'hot_standby = on',
      // Reports replay/flush progress often, so catch-up waits end promptly.
      'wal_receiver_status_interval = 1s',
      'max_connections = 150',
      'shared_buffers = 16MB',
      // Nothing here survives the test; no machine crash is simulated (stopping a server in
      // immediate mode keeps what it wrote in the OS cache), so fsync only costs time.
      'fsync = off',
      ...(this.options.synchronous
        ? [`synchronous_standby_names = '${STANDBY_NAME}'`, `synchronous_commit = ${this.options.synchronousCommit}`]
        : ["synchronous_standby_names = ''"]),
    ];
    appendFileSync(join(primary, 'postgresql.conf'), `\n# dbm pg-cluster\n${settings.join('\n')}\n`);
    this.ports.primary = await this.startServer('primary');

    const standby = this.dataDir('standby');
    await pg('pg_basebackup', ['-h', '127.0.0.1', '-p', String(this.ports.primary), '-U', 'postgres', '-D', standby, '-X', 'stream', '-c', 'fast', '--no-sync']);
    writeFileSync(join(standby, 'standby.signal'), '');
    if (isRoot()) {
      const ids = runAsIds()!;
      chownSync(join(standby, 'standby.signal'), ids.uid, ids.gid);
    }
    appendFileSync(
      join(standby, 'postgresql.conf'),
      [
        '',
        '# dbm pg-cluster: standby',
        `primary_conninfo = 'host=127.0.0.1 port=${this.ports.primary} user=postgres application_name=${STANDBY_NAME}'`,
        // Once promoted it has no standby of its own: waiting for one would hang every commit.
        "synchronous_standby_names = ''",
        '',
      ].join('\n'),
    );
    this.ports.standby = await this.startServer('standby');
    await waitUntil(
      async () => {
        const rows = await this.query('primary', `SELECT sync_state, state FROM pg_stat_replication WHERE application_name = $1`, [STANDBY_NAME]);
        const r = rows[0];
        return r !== undefined && r.state === 'streaming' && r.sync_state === (this.options.synchronous ? 'sync' : 'async');
      },
      60_000,
      'the standby to stream from the primary',
    );
    this.bouncer = await startPgBouncer({
      poolMode: this.options.poolMode,
      backendPort: this.ports.primary,
      // After a failed connection attempt PgBouncer waits this long before the next one (default 15 s):
      // short, so the repointed pool reconnects at once instead of sitting out the outage's last failure.
      settings: { server_login_retry: 1, max_client_conn: 500, default_pool_size: 40 },
    });
  }

  /** Starts a server on a free port (another free port is tried if someone takes it meanwhile). */
  private async startServer(role: Role): Promise<number> {
    let lastError: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = await freePort();
      try {
        await pg('pg_ctl', ['-D', this.dataDir(role), '-l', join(this.dir, `${role}.log`), '-w', '-t', '120', '-o', `-p ${port}`, 'start']);
        this.running.add(role);
        return port;
      } catch (error) {
        lastError = error;
      }
    }
    throw new Error(`could not start the ${role}: ${String(lastError)}\n${this.logTail(role)}`);
  }

  /** The last lines of a server's log, for failure messages. */
  logTail(role: Role): string {
    try {
      return execFileSync('tail', ['-n', '20', join(this.dir, `${role}.log`)], { encoding: 'utf8' });
    } catch {
      return '(no log)';
    }
  }

  /** A URL straight to one server (bypassing PgBouncer). */
  directUrl(role: Role, database = 'postgres'): string {
    return `postgres://postgres@127.0.0.1:${this.ports[role]}/${encodeURIComponent(database)}`;
  }

  /** The URL the app uses: through PgBouncer, whichever server is primary. */
  url(database: string): string {
    return withDatabase(this.bouncer!.url('postgres'), database);
  }

  async query(role: Role, sql: string, params: unknown[] = [], database = 'postgres'): Promise<Record<string, unknown>[]> {
    const client = new Client({ connectionString: this.directUrl(role, database) });
    // A server going down under a test is expected: report it through the query's rejection only.
    client.on('error', () => undefined);
    await client.connect();
    try {
      return (await client.query(sql, params)).rows as Record<string, unknown>[];
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  /** Creates a database on the primary and waits until the standby has it. */
  async createDatabase(name: string): Promise<string> {
    await this.query('primary', `CREATE DATABASE "${name.replace(/"/g, '""')}"`);
    await this.waitForStandbyReplay();
    return this.url(name);
  }

  /** Waits until the standby has replayed everything the primary has written so far. */
  async waitForStandbyReplay(timeoutMs = 60_000): Promise<void> {
    const [{ lsn }] = (await this.query('primary', 'SELECT pg_current_wal_lsn()::text AS lsn')) as [{ lsn: string }];
    await waitUntil(
      async () => {
        const [row] = await this.query('standby', 'SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS done', [lsn]);
        return row?.done === true;
      },
      timeoutMs,
      `the standby to replay up to ${lsn}`,
    );
  }

  /**
   * Cuts the standby off the primary (it stops receiving WAL), so whatever the primary commits from
   * now on exists only there: what asynchronous replication loses when the primary dies before its
   * standby caught up, made deterministic instead of left to timing. (Pausing replay would not do:
   * a promotion replays all the WAL the standby has received first.)
   */
  async detachStandby(): Promise<void> {
    if (this.options.synchronous) throw new Error('detachStandby() would make every commit on a synchronous primary wait forever');
    await this.query('standby', "ALTER SYSTEM SET primary_conninfo = ''");
    await this.query('standby', 'SELECT pg_reload_conf()');
    await waitUntil(
      async () => (await this.query('primary', 'SELECT count(*)::int AS n FROM pg_stat_replication'))[0]!.n === 0,
      30_000,
      'the standby to disconnect',
    );
  }

  /** Stops the primary in immediate mode: no shutdown checkpoint, sessions cut off (a crash, as far as clients can tell). */
  async stopPrimary(): Promise<void> {
    await pg('pg_ctl', ['-D', this.dataDir('primary'), '-m', 'immediate', '-w', '-t', '60', 'stop']);
    this.running.delete('primary');
  }

  /** Promotes the standby (waits until it accepts writes). */
  async promoteStandby(): Promise<void> {
    await pg('pg_ctl', ['-D', this.dataDir('standby'), '-w', '-t', '120', 'promote']);
    await waitUntil(
      async () => (await this.query('standby', 'SELECT pg_is_in_recovery() AS r'))[0]!.r === false,
      60_000,
      'the promoted standby to leave recovery',
    );
  }

  /** Points PgBouncer at the (promoted) standby: new server connections go there. */
  async repointToStandby(): Promise<void> {
    await this.bouncer!.repoint('127.0.0.1', this.ports.standby);
    // Server connections still attached to the old primary are dead; have PgBouncer drop them now
    // rather than when a client next trips over one.
    await this.bouncer!.admin('RECONNECT');
    this.current = 'standby';
  }

  /** Stops both servers and PgBouncer and removes the folder; twice does no harm. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    process.removeListener('exit', this.exitHook);
    await this.bouncer?.stop().catch(() => undefined);
    for (const role of [...this.running]) {
      await pg('pg_ctl', ['-D', this.dataDir(role), '-m', 'immediate', '-w', '-t', '60', 'stop']).catch(() => undefined);
      this.running.delete(role);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Last resort when the process exits without dispose(): nothing may outlive the test run. */
  private disposeSync(): void {
    if (this.disposed) return;
    this.disposed = true;
    const pid = this.bouncer?.pid;
    if (pid) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const role of this.running) {
      const [file, argv] = pgCommand('pg_ctl', ['-D', this.dataDir(role), '-m', 'immediate', '-w', 'stop']);
      spawnSync(file, argv, { timeout: 30_000 });
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

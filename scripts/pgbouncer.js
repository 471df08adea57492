'use strict';
/**
 * Starts and stops a real PgBouncer (the system's `pgbouncer` binary, Debian's 1.18 here) on its own
 * loopback port, with its own ini, auth file, pid file and log in a temporary folder, in front of a
 * PostgreSQL given by host and port. Used by the tests (test/helpers/pgbouncer.ts gives it types), the
 * bench and `.ci/run` (through the command line at the bottom), so all three start it the same way.
 *
 * PgBouncer refuses to run as root: as root it is started with `-u postgres` and its folder is handed
 * to that user. It daemonizes (`-d`), so it outlives the process that started it; `stop()` (or
 * `node scripts/pgbouncer.js stop <dir>`) ends it through its pid file and removes the folder.
 *
 * The admin console (database `pgbouncer`, user `postgres`) takes RELOAD, PAUSE, RESUME and SHOW; it
 * speaks only the simple query protocol, which is what `pg` uses for a query without parameters.
 */
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { freePort } = require('./embedded-pg');

const BINARY_CANDIDATES = ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer'];
const RUN_AS = 'postgres';
const POOL_MODES = ['session', 'transaction', 'statement'];

/** The pgbouncer binary, or null when none is installed. */
function findPgBouncer() {
  if (process.env.PGBOUNCER_BIN) return process.env.PGBOUNCER_BIN;
  for (const candidate of BINARY_CANDIDATES) if (fs.existsSync(candidate)) return candidate;
  const which = spawnSync('sh', ['-c', 'command -v pgbouncer'], { encoding: 'utf8' });
  const found = which.status === 0 ? which.stdout.trim() : '';
  return found || null;
}

const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

/** A value for pgbouncer.ini: a `"` inside a quoted auth-file field is doubled, ini values are bare. */
const authLine = (user, password) => `"${user.replace(/"/g, '""')}" "${String(password ?? '').replace(/"/g, '""')}"`;

function renderIni(state) {
  const lines = [
    '[databases]',
    // The wildcard entry: every database name the client asks for, on the backend server.
    `* = host=${state.backendHost} port=${state.backendPort}`,
    '',
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${state.port}`,
    // No Unix socket: two instances (and the machine's PostgreSQL) would fight over /var/run/postgresql.
    "unix_socket_dir = ''",
    `auth_type = ${state.authType}`,
    `auth_file = ${path.join(state.dir, 'userlist.txt')}`,
    `admin_users = ${state.adminUser}`,
    `pool_mode = ${state.poolMode}`,
    `pidfile = ${path.join(state.dir, 'pgbouncer.pid')}`,
    `logfile = ${path.join(state.dir, 'pgbouncer.log')}`,
    // Clients (pg's startup packet, Sequelize) send these; without them PgBouncer closes the connection.
    'ignore_startup_parameters = extra_float_digits,options,statement_timeout,idle_in_transaction_session_timeout',
  ];
  for (const [key, value] of Object.entries(state.settings)) lines.push(`${key} = ${value}`);
  return `${lines.join('\n')}\n`;
}

function writeFiles(state) {
  const users = { ...state.users };
  if (!(state.adminUser in users)) users[state.adminUser] = '';
  fs.writeFileSync(path.join(state.dir, 'userlist.txt'), `${Object.entries(users).map(([u, p]) => authLine(u, p)).join('\n')}\n`, { mode: 0o600 });
  fs.writeFileSync(path.join(state.dir, 'pgbouncer.ini'), renderIni(state), { mode: 0o600 });
  if (isRoot()) {
    const ids = spawnSync('id', ['-u', RUN_AS], { encoding: 'utf8' });
    const gids = spawnSync('id', ['-g', RUN_AS], { encoding: 'utf8' });
    if (ids.status !== 0) throw new Error(`pgbouncer refuses to run as root and there is no "${RUN_AS}" user to run it as`);
    const uid = Number(ids.stdout.trim());
    const gid = Number(gids.stdout.trim());
    for (const name of ['', 'userlist.txt', 'pgbouncer.ini']) fs.chownSync(path.join(state.dir, name), uid, gid);
  }
}

function readPid(dir) {
  try {
    const pid = Number(fs.readFileSync(path.join(dir, 'pgbouncer.pid'), 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function logTail(dir) {
  try {
    return fs.readFileSync(path.join(dir, 'pgbouncer.log'), 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Ends the PgBouncer whose folder is `dir` (SIGINT: safe shutdown without waiting for clients) and removes the folder. */
async function stopDir(dir, { keepDir = false } = {}) {
  const pid = readPid(dir);
  if (pid !== null && alive(pid)) {
    process.kill(pid, 'SIGINT');
    for (let i = 0; i < 100 && alive(pid); i++) await sleep(50);
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
  if (!keepDir) fs.rmSync(dir, { recursive: true, force: true });
}

async function waitForPort(port, dir, timeoutMs) {
  const net = require('node:net');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`pgbouncer did not listen on 127.0.0.1:${port} within ${timeoutMs} ms; log:\n${logTail(dir)}`);
    await sleep(50);
  }
}

/**
 * @typedef {object} PgBouncerOptions
 * @property {'session'|'transaction'|'statement'} [poolMode] default 'transaction'
 * @property {string} [backendHost] default '127.0.0.1'
 * @property {number} backendPort the PostgreSQL server's port
 * @property {number} [port] default: a free loopback port
 * @property {'trust'|'any'|'plain'|'md5'|'scram-sha-256'} [authType] default 'trust'
 * @property {Record<string, string>} [users] auth-file entries, user -> password (PgBouncer logs in to the
 *   backend with these passwords too); default `{ postgres: '' }`
 * @property {Record<string, string|number>} [settings] further [pgbouncer] settings (default_pool_size, …)
 */

/** @param {PgBouncerOptions} options */
async function startPgBouncer(options) {
  const binary = findPgBouncer();
  if (!binary) throw new Error('pgbouncer is not installed (apt-get install pgbouncer), or set PGBOUNCER_BIN');
  const poolMode = options.poolMode ?? 'transaction';
  if (!POOL_MODES.includes(poolMode)) throw new TypeError(`poolMode must be one of ${POOL_MODES.join(', ')}, got ${poolMode}`);
  if (!Number.isInteger(options.backendPort)) throw new TypeError('backendPort must be the backend PostgreSQL port');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbm-pgbouncer-'));
  fs.chmodSync(dir, 0o700);
  const state = {
    dir,
    port: options.port ?? (await freePort()),
    poolMode,
    backendHost: options.backendHost ?? '127.0.0.1',
    backendPort: options.backendPort,
    authType: options.authType ?? 'trust',
    adminUser: 'postgres',
    users: options.users ?? { postgres: '' },
    settings: { ...options.settings },
  };
  writeFiles(state);
  const args = ['-d', ...(isRoot() ? ['-u', RUN_AS] : []), path.join(dir, 'pgbouncer.ini')];
  const started = spawnSync(binary, args, { encoding: 'utf8' });
  if (started.status !== 0) {
    const message = `pgbouncer failed to start (exit ${started.status}): ${started.stderr || started.stdout}\n${logTail(dir)}`;
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(message);
  }
  try {
    await waitForPort(state.port, dir, 10_000);
  } catch (error) {
    await stopDir(dir);
    throw error;
  }
  return new PgBouncer(state);
}

class PgBouncer {
  constructor(state) {
    this.state = state;
  }

  get port() {
    return this.state.port;
  }

  get host() {
    return '127.0.0.1';
  }

  get dir() {
    return this.state.dir;
  }

  get poolMode() {
    return this.state.poolMode;
  }

  get pid() {
    return readPid(this.state.dir);
  }

  /** A connection string through this PgBouncer to `database` (any name: the wildcard entry passes it on). */
  url(database, user = 'postgres', password) {
    const pw = password ?? this.state.users[user] ?? '';
    const auth = pw ? `${encodeURIComponent(user)}:${encodeURIComponent(pw)}` : encodeURIComponent(user);
    return `postgres://${auth}@127.0.0.1:${this.state.port}/${encodeURIComponent(database)}`;
  }

  /** Runs one admin-console command (SHOW POOLS, RELOAD, PAUSE db, …) and returns its rows. */
  async admin(command) {
    const { Client } = require('pg');
    const client = new Client({ connectionString: this.url('pgbouncer', this.state.adminUser) });
    await client.connect();
    try {
      const result = await client.query(command);
      return result.rows ?? [];
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  /** Rewrites the ini with changed settings (poolMode, backend, settings) and has PgBouncer re-read it. */
  async reconfigure(changes) {
    if (changes.poolMode !== undefined) this.state.poolMode = changes.poolMode;
    if (changes.backendHost !== undefined) this.state.backendHost = changes.backendHost;
    if (changes.backendPort !== undefined) this.state.backendPort = changes.backendPort;
    if (changes.settings) this.state.settings = { ...this.state.settings, ...changes.settings };
    writeFiles(this.state);
    await this.reload();
  }

  /**
   * Points the wildcard database at another server (what a VIP or DNS switch does on failover).
   * RELOAD makes new server connections go to the new backend; existing server connections to the
   * old one are closed as soon as they are released (PgBouncer notices the changed connect string).
   */
  async repoint(backendHost, backendPort) {
    await this.reconfigure({ backendHost, backendPort });
  }

  reload() {
    return this.admin('RELOAD').then(() => undefined);
  }

  /** PAUSE: waits until every server connection is released, then holds new queries until RESUME. */
  pause(database) {
    return this.admin(database ? `PAUSE ${quoteIdent(database)}` : 'PAUSE').then(() => undefined);
  }

  resume(database) {
    return this.admin(database ? `RESUME ${quoteIdent(database)}` : 'RESUME').then(() => undefined);
  }

  /** The log so far (for failure messages). */
  log() {
    return logTail(this.state.dir);
  }

  /** Stops PgBouncer and removes its folder; twice does no harm. */
  stop() {
    return stopDir(this.state.dir);
  }
}

function quoteIdent(name) {
  return `"${String(name).replace(/"/g, '""')}"`;
}

module.exports = { startPgBouncer, findPgBouncer, stopPgBouncerDir: stopDir };

// Command line for .ci/run and manual use:
//   node scripts/pgbouncer.js start <session|transaction> <backendPort> [port]   prints the folder, then the port
//   node scripts/pgbouncer.js stop <folder>
if (require.main === module) {
  const [command, ...rest] = process.argv.slice(2);
  const main = async () => {
    if (command === 'start') {
      const [poolMode, backendPort, port] = rest;
      // Pool sizes that never make the test suite queue: in session mode every client pins a server
      // connection, as it would without the pooler; the server's max_connections is the real limit.
      const settings = { max_client_conn: 2000, default_pool_size: 90 };
      const b = await startPgBouncer({ poolMode, backendPort: Number(backendPort), port: port ? Number(port) : undefined, settings });
      process.stdout.write(`${b.dir}\n${b.port}\n`);
    } else if (command === 'stop' && rest[0]) {
      await stopDir(rest[0]);
    } else {
      throw new Error('usage: node scripts/pgbouncer.js start <session|transaction> <backendPort> [port] | stop <folder>');
    }
  };
  main().catch((error) => {
    process.stderr.write(`${error.message}\n`);
    process.exit(1);
  });
}

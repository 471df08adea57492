/**
 * `npm start`: the whole product on a fresh machine, with no configuration.
 *
 *  1. The database: DATABASE_URL if set, else an embedded PostgreSQL whose data lives in .embedded-pg/
 *     (git-ignored, kept between runs; as root, possibly moved: see paths.ts). Only one demo may use that
 *     folder at a time.
 *  2. The schema and the demo data, with sequelize-cli (db:migrate, db:seed:all).
 *  3. Two worker processes competing for the same job locks (worker.ts, jobs.ts).
 *  4. The Express app with the dashboard at http://localhost:PORT/admin/locks (app.ts).
 *
 * Ctrl-C / SIGTERM stops it all in the reverse order: the app, the workers (they release their locks),
 * then the database. Each step that started registers how to undo it, so a failure half-way through
 * start-up unwinds exactly what was started.
 */
import { fork, type ChildProcess } from 'node:child_process';
import type { Server } from 'node:http';
import path from 'node:path';
import { createDemoApp } from './app';
import {
  describeDemoCluster,
  externalDatabase,
  migrateAndSeed,
  openSequelize,
  planDemoCluster,
  startEmbeddedDatabase,
  type DemoDatabase,
} from './database';
import { errorMessage, logger } from './log';
import { initDbMutex } from './package';
import { INSTANCE_FILE } from './paths';
import { isPortFree, parsePort } from './ports';
import { claimInstance } from './single-instance';
import type { ToWorkerMessage, WorkerMessage } from './worker';

const log = logger('demo');
const WORKER_NAMES = ['worker-1', 'worker-2'];
const WORKER_READY_TIMEOUT_MS = 60_000;
const WORKER_STOP_TIMEOUT_MS = 15_000;
/** Loopback only: nothing outside this machine can reach the demo (the dashboard checks it too). */
const HOST = '127.0.0.1';

/** Undo actions of what has been started, run last-first by `shutdown`. */
const cleanups: { name: string; run: () => unknown }[] = [];
let shuttingDown: Promise<void> | null = null;
let startupCancelled = false;

class StartupCancelled extends Error {}

function checkpoint(): void {
  if (startupCancelled) throw new StartupCancelled('start-up cancelled');
}

/** `quiet`: nothing worth reporting was started yet (a refused start-up). */
function shutdown(why: string, exitCode: number, quiet = false): Promise<void> {
  if (shuttingDown) return shuttingDown;
  startupCancelled = true;
  if (!quiet) log(`shutting down (${why})…`);
  const force = setTimeout(() => {
    log('shutdown is taking too long; exiting anyway');
    process.exit(1);
  }, 60_000);
  force.unref();
  shuttingDown = (async () => {
    let code = exitCode;
    for (const { name, run } of cleanups.reverse()) {
      try {
        await run();
      } catch (error) {
        log(`could not stop ${name}: ${errorMessage(error)}`);
        code = 1;
      }
    }
    if (!quiet) log(code === 0 ? 'stopped cleanly.' : 'stopped.');
    process.exit(code);
  })();
  return shuttingDown;
}

function startWorker(name: string, url: string, dashboardUrl: string): Promise<ChildProcess> {
  const child = fork(path.join(__dirname, 'worker.js'), [], {
    env: { ...process.env, DATABASE_URL: url, DEMO_WORKER_NAME: name, DEMO_DASHBOARD_URL: dashboardUrl },
    stdio: 'inherit',
  });
  let stopping = false;
  cleanups.push({
    name,
    run: async () => {
      stopping = true;
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      if (child.connected) child.send({ type: 'shutdown' } satisfies ToWorkerMessage);
      else child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), WORKER_STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    },
  });
  child.on('exit', (code, signal) => {
    if (!stopping && !shuttingDown) void shutdown(`${name} exited unexpectedly (${signal ?? `code ${code}`})`, 1);
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start within ${WORKER_READY_TIMEOUT_MS / 1000} s`)), WORKER_READY_TIMEOUT_MS);
    child.on('message', (message: WorkerMessage) => {
      if (message?.type !== 'ready') return;
      clearTimeout(timer);
      resolve(child);
    });
    child.once('exit', () => {
      clearTimeout(timer);
      reject(new Error(`${name} exited during start-up`));
    });
  });
}

async function main(): Promise<void> {
  const port = parsePort(process.env.PORT, 3000);
  const dashboardUrl = `http://localhost:${port}/admin/locks`;
  const externalUrl = process.env.DATABASE_URL?.trim() || null;

  // 1. The database. The embedded one is guarded by the pid file first, then the port is checked, so a
  // second `npm start` fails before it touches the data folder or anything else.
  if (!externalUrl) {
    const claim = claimInstance(INSTANCE_FILE);
    cleanups.push({ name: 'the pid file', run: () => claim.release() });
  }
  if (!(await isPortFree(port, HOST))) {
    throw new Error(`Port ${port} is already in use (another demo?). Stop it, or choose another port: PORT=${port + 1} npm start`);
  }
  let database: DemoDatabase;
  if (externalUrl) {
    database = externalDatabase(externalUrl);
    log(`using the database at DATABASE_URL: ${database.label}`);
  } else {
    log(`no DATABASE_URL: starting an embedded PostgreSQL, ${describeDemoCluster(await planDemoCluster())} (kept between runs)…`);
    database = await startEmbeddedDatabase((why) => {
      if (!shuttingDown) void shutdown(why, 1);
    });
    cleanups.push({ name: 'the embedded PostgreSQL', run: () => database.stop() });
    log(`database ready: ${database.label}`);
  }
  checkpoint();

  // 2. Schema and demo data.
  await migrateAndSeed(database.url, log);
  checkpoint();

  // 3. The workers.
  const workers = await Promise.all(WORKER_NAMES.map((name) => startWorker(name, database.url, dashboardUrl)));
  log(`workers started: ${WORKER_NAMES.map((name, i) => `${name} (pid ${workers[i]!.pid})`).join(', ')}`);
  checkpoint();

  // 4. The app, with its own pool and DbMutex (the dashboard's, and the import route's locks).
  const sequelize = openSequelize(database.url, { logging: false, pool: { max: 5 } });
  cleanups.push({ name: "the app's database pool", run: () => sequelize.close() });
  const mutex = initDbMutex(sequelize, { holder: 'demo-app', setDefault: false });
  cleanups.push({ name: "the app's DbMutex", run: () => mutex.close() });
  const server: Server = await new Promise((resolve, reject) => {
    const s = createDemoApp({ mutex, port }).listen(port, HOST, () => resolve(s));
    s.once('error', reject);
  });
  cleanups.push({
    name: 'the web server',
    run: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  });
  checkpoint();

  log('The dashboard admits only requests from this machine (loopback): a DEMO-ONLY authorize() in examples/demo/app.ts.');
  log('A real app must check its own login and role there.');
  log(`Try an import that cannot run twice at once: curl -X POST http://localhost:${port}/imports/42 (twice quickly: the second gets 409)`);
  log(`Ready. Dashboard: ${dashboardUrl}   (Ctrl-C stops everything)`);
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  // Ctrl-C reaches every process of the terminal, and npm forwards it too: repeats are expected and ignored.
  process.on(signal, () => void shutdown(signal, 0));
}
if (process.env.npm_lifecycle_event === 'start') {
  // Under `npm start`, npm forwards SIGTERM to the shell running the script, which dies without passing it
  // on to us. Without this check the demo would keep running, orphaned, after `kill <npm's pid>`.
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) void shutdown('the `npm start` that launched it is gone', 0);
  }, 500).unref();
}

main().catch((error: unknown) => {
  if (error instanceof StartupCancelled) return; // shutdown() is already running
  console.error(`[demo] could not start: ${errorMessage(error)}`);
  void shutdown('start-up failed', 1, cleanups.length <= 1);
});

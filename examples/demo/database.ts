/**
 * The demo's database: the server at DATABASE_URL, or an embedded PostgreSQL run by a helper process
 * (embedded-db.ts); then the schema and the demo data, through the same sequelize-cli commands an app
 * would run (`db:migrate`, `db:seed:all`), so what the demo shows is exactly what the migration builds.
 */
import { execFile, fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { Sequelize, type Options } from 'sequelize';
import type { Log } from './log';
import { parseDatabaseUrl, redactUrl, sequelizeOptions } from './package';
import { EMBEDDED_DIR, REPO_ROOT } from './paths';

/** Where the embedded cluster lives (scripts/embedded-pg.js, `planEmbeddedPostgres`). */
export interface EmbeddedPlan {
  requestedDir: string;
  dir: string;
  dataDir: string;
  relocated: boolean;
  copyBinaries: boolean;
}

export interface EmbeddedServer {
  url: string;
  port: number;
  stop(): Promise<void>;
}

// The same helper the test suite uses to start its PostgreSQL (scripts/ is plain JavaScript).
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const embeddedPg = require('../../scripts/embedded-pg') as {
  planEmbeddedPostgres: (options: { dir: string }) => Promise<EmbeddedPlan>;
  describePlan: (plan: EmbeddedPlan) => string;
  startEmbeddedPostgres: (options: { dir: string; port: number; persistent: boolean }) => Promise<EmbeddedServer>;
  freePort: () => Promise<number>;
};

/** The demo's cluster: in .embedded-pg/, unless the server's OS user cannot reach it (see paths.ts). */
export function planDemoCluster(): Promise<EmbeddedPlan> {
  return embeddedPg.planEmbeddedPostgres({ dir: EMBEDDED_DIR });
}

/** For the start-up line: where the data is (relative when it is in the checkout) and why, if it moved. */
export function describeDemoCluster(plan: EmbeddedPlan): string {
  if (plan.relocated || plan.copyBinaries) return embeddedPg.describePlan(plan);
  return `data in ${path.relative(REPO_ROOT, plan.dataDir)}`;
}

/** Messages from the embedded-database helper process. */
export type DbHostMessage = { type: 'ready'; url: string; port: number } | { type: 'failed'; message: string };
/** Messages to it. */
export type SupervisorMessage = { type: 'stop' };

export interface DemoDatabase {
  url: string;
  /** Where it is, for the console (no password). */
  label: string;
  /** Stops the embedded server; nothing for an external one. */
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 180_000;
const STOP_TIMEOUT_MS = 30_000;

export function describeUrl(url: string): string {
  return redactUrl(url);
}

/** A Sequelize instance for `url`, built from the parsed parts: Sequelize never sees (or prints) the URL. */
export function openSequelize(url: string, options: Options): Sequelize {
  return new Sequelize(sequelizeOptions(parseDatabaseUrl(url), options));
}

export function externalDatabase(url: string): DemoDatabase {
  return { url, label: describeUrl(url), stop: async () => undefined };
}

function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/**
 * Starts the helper and waits for its server. `onLost` is called if the helper ends without being asked
 * to (the server crashed or someone killed it).
 */
export async function startEmbeddedDatabase(onLost: (why: string) => void): Promise<DemoDatabase> {
  const child = fork(path.join(__dirname, 'embedded-db.js'), [], {
    // Its own process group: the terminal's Ctrl-C must not reach the server (see embedded-db.ts).
    detached: true,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let stopRequested = false;
  const ready = await new Promise<{ url: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the embedded PostgreSQL did not start within ${START_TIMEOUT_MS / 1000} s`)), START_TIMEOUT_MS);
    child.once('message', (message: DbHostMessage) => {
      clearTimeout(timer);
      if (message.type === 'ready') resolve(message);
      else reject(new Error(`the embedded PostgreSQL did not start: ${message.message}`));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the embedded PostgreSQL helper exited during start-up (${signal ?? `code ${code}`})`));
    });
  }).catch(async (error: unknown) => {
    if (child.connected) child.disconnect();
    if (!(await waitForExit(child, STOP_TIMEOUT_MS))) child.kill('SIGKILL');
    throw error;
  });
  child.on('exit', (code, signal) => {
    if (!stopRequested) onLost(`the embedded PostgreSQL helper exited (${signal ?? `code ${code}`})`);
  });
  return {
    url: ready.url,
    label: `embedded PostgreSQL, ${describeUrl(ready.url)}`,
    async stop() {
      stopRequested = true;
      if (child.connected) child.send({ type: 'stop' } satisfies SupervisorMessage);
      if (!(await waitForExit(child, STOP_TIMEOUT_MS))) {
        child.kill('SIGKILL');
        throw new Error('the embedded PostgreSQL did not stop in time');
      }
    },
  };
}

/** `sequelize-cli <command>` against `url`, from the repository root (where .sequelizerc is). */
async function sequelizeCli(url: string, command: string): Promise<string> {
  const cli = require.resolve('sequelize-cli/lib/sequelize', { paths: [REPO_ROOT] });
  try {
    const { stdout } = await promisify(execFile)(process.execPath, [cli, command, '--env', 'development'], {
      cwd: REPO_ROOT,
      env: { ...process.env, DATABASE_URL: url },
      timeout: 120_000,
    });
    return stdout;
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
    throw new Error(`npx sequelize-cli ${command} failed:\n${`${stderr}\n${stdout}`.trim()}`, { cause: error });
  }
}

/** Names of the migrations or seeders a sequelize-cli run applied (its `== name: migrated` lines). */
function applied(stdout: string): string[] {
  return [...stdout.matchAll(/^== (.+?): migrated/gm)].map((m) => m[1]!);
}

export async function migrateAndSeed(url: string, log: Log): Promise<void> {
  const migrated = applied(await sequelizeCli(url, 'db:migrate'));
  log(migrated.length > 0 ? `schema created: ${migrated.join(', ')} (sequelize-cli db:migrate)` : 'schema up to date (sequelize-cli db:migrate)');
  const seeded = applied(await sequelizeCli(url, 'db:seed:all'));
  // The seeders leave existing rows alone, so seeding on every start is harmless.
  log(`demo data seeded: ${seeded.join(', ') || 'nothing to seed'} (sequelize-cli db:seed:all)`);
}

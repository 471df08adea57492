/**
 * Shared pieces of the failover tests: when they run, the pair each file builds (with a TestContext
 * on its database through PgBouncer, so it follows the failover like the app does), and waiting for
 * conditions.
 */
import type { DbMutex } from '../../src';
import { ensureBuilt } from './built';
import { dialect, TestContext } from './db';
import { PgCluster, pgClusterUnavailable, type PgClusterOptions } from './pg-cluster';
import { ChildGroup, type Child, type ChildMessage } from './children';

/**
 * The failover tests run when the suite runs on PostgreSQL (a server named by DATABASE_URL or the
 * embedded one) and Debian's PostgreSQL 15 server binaries are installed; the skip names the reason.
 * They bring their own primary, standby and PgBouncer whatever DATABASE_URL is, so the CI paths that
 * run the suite through a pooler (DB_MUTEX_TEST_POOLER) skip them rather than repeat the same run.
 */
export function describeFailover(name: string, fn: () => void): void {
  const missing = pgClusterUnavailable();
  if (dialect !== 'postgres') describe.skip(`${name} (PostgreSQL only)`, fn);
  else if (process.env.DB_MUTEX_TEST_POOLER) describe.skip(`${name} (run on the direct PostgreSQL paths; it brings its own PgBouncer)`, fn);
  else if (missing) describe.skip(`${name} (skipped: ${missing})`, fn);
  else describe(name, fn);
}

export interface FailoverPair {
  cluster: PgCluster;
  /** On the pair's database, through PgBouncer. */
  ctx: TestContext;
  /** A DbMutex of the test process itself (lock tables created). */
  observer: DbMutex;
  /** The app processes; all killed after the file. */
  readonly children: ChildGroup;
}

/**
 * Builds the file's pair in beforeAll and tears everything down in afterAll, whatever happened:
 * child processes, connections, both servers, PgBouncer and the folder.
 */
export function useFailoverPair(options: PgClusterOptions, database: string): FailoverPair {
  const pair = { children: new ChildGroup() } as FailoverPair;
  beforeAll(async () => {
    await ensureBuilt();
    pair.cluster = await PgCluster.start(options);
    const url = await pair.cluster.createDatabase(database);
    // The pair is disposed as a whole: nothing to drop per database.
    pair.ctx = new TestContext({ name: database, url, directUrl: url, dialect: 'postgres', drop: async () => undefined });
    pair.observer = await pair.ctx.mutex();
  }, 180_000);
  afterAll(async () => {
    await pair.children.dispose();
    await pair.ctx?.cleanup().catch(() => undefined);
    await pair.cluster?.dispose();
  }, 120_000);
  return pair;
}

export function messagesOf(child: Child, type: string): ChildMessage[] {
  return child.messages.filter((m) => m.type === type);
}

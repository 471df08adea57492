/**
 * Shared pieces of the failover tests: when they run, a TestContext on the pair's database (through
 * PgBouncer, so it follows the failover like the app does), and waiting for conditions.
 */
import { dialect, TestContext } from '../helpers/db';
import { pgClusterUnavailable, type PgCluster } from '../helpers/pg-cluster';
import type { Child, ChildMessage } from '../safety/helpers/children';

export { waitUntil } from '../helpers/pg-cluster';

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

/** A TestContext on a database of the pair, reached through its PgBouncer. */
export async function clusterContext(cluster: PgCluster, database: string): Promise<TestContext> {
  const url = await cluster.createDatabase(database);
  // The pair is disposed as a whole: nothing to drop per database.
  return new TestContext({ name: database, url, dialect: 'postgres', drop: async () => undefined });
}

export function messagesOf(child: Child, type: string): ChildMessage[] {
  return child.messages.filter((m) => m.type === type);
}

/**
 * Everything dialect-specific on the test side of the safety suite: the probe tables the critical
 * sections write to, and the fault injectors (a slow-statement trigger, backend termination, listener
 * counting). Generic helpers (expiring a lock, the database clock in ms) come from TestContext's
 * `ctx.sql`; the SQL the child processes run lives in test/fixtures/safety/probe-sql.js. A new
 * dialect adds an entry here and there; until then its safety files are skipped, not failed.
 */
import type { Options } from 'sequelize';
import { dialect, type TestContext, type TestDialect } from '../../helpers/db';
import type { Section } from './contention';

export interface SafetyDialect {
  /** Counter rows (one per lock id, value 0) and the section log, empty. */
  createProbeTables(lockIds: readonly string[]): Promise<void>;
  /** Tables of the deliberately broken lock the detector self-test uses. */
  createBrokenLockTables(): Promise<void>;
  readSections(): Promise<Section[]>;
  readCounters(): Promise<Map<string, number>>;
  /** A trigger on the lock table that makes INSERT/UPDATE statements on it sleep (0 = off). */
  installSlowTrigger(tableName: string): Promise<void>;
  /** How long each INSERT/UPDATE sleeps; with `holder`, only rows written for that holder label. */
  setSlowness(ms: number, holder?: string): Promise<void>;
  /** Sequelize options that label every connection, so its backends can be found and killed. */
  labelledConnection(applicationName: string): Options;
  /** Kills the server side of every connection with this label; returns how many. */
  terminateBackends(applicationName: string): Promise<number>;
  /** Backends sitting in LISTEN (one per DbMutex that waits or holds), optionally only those with a label. */
  countListenerBackends(applicationName?: string): Promise<number>;
  /** Backends with this label, however idle. */
  countBackends(applicationName: string): Promise<number>;
}

function postgres(ctx: TestContext): SafetyDialect {
  const one = async (sql: string, params: unknown[] = []) => Number((await ctx.exec<{ n: unknown }>(sql, params))[0]!.n);
  return {
    async createProbeTables(lockIds) {
      await ctx.exec('CREATE TABLE IF NOT EXISTS safety_counter (lock_id text PRIMARY KEY, value integer NOT NULL)');
      await ctx.exec(`CREATE TABLE IF NOT EXISTS safety_log (id bigserial PRIMARY KEY, lock_id text NOT NULL,
        fencing_token bigint NOT NULL, worker integer NOT NULL, started_us bigint NOT NULL, ended_us bigint NOT NULL)`);
      await ctx.exec('TRUNCATE safety_counter, safety_log');
      for (const lockId of lockIds) await ctx.exec('INSERT INTO safety_counter (lock_id, value) VALUES (?, 0)', [lockId]);
    },
    async createBrokenLockTables() {
      // No primary key on purpose: nothing stops two rows for one lock id.
      await ctx.exec('CREATE TABLE IF NOT EXISTS broken_locks (lock_id text NOT NULL, token bigint NOT NULL)');
      await ctx.exec('CREATE SEQUENCE IF NOT EXISTS broken_fencing_seq');
      await ctx.exec('TRUNCATE broken_locks');
    },
    async readSections() {
      const rows = await ctx.exec<Record<string, string>>(
        `SELECT lock_id, fencing_token::text AS fencing_token, worker, started_us::text AS started_us,
          ended_us::text AS ended_us FROM safety_log ORDER BY id`,
      );
      return rows.map((x) => ({
        lockId: x.lock_id!,
        fencingToken: Number(x.fencing_token),
        worker: Number(x.worker),
        startUs: Number(x.started_us),
        endUs: Number(x.ended_us),
      }));
    },
    async readCounters() {
      const rows = await ctx.exec<{ lock_id: string; value: number }>('SELECT lock_id, value FROM safety_counter');
      return new Map(rows.map((x) => [x.lock_id, Number(x.value)]));
    },
    async installSlowTrigger(tableName) {
      await ctx.exec('CREATE TABLE IF NOT EXISTS safety_slowness (id integer PRIMARY KEY, ms integer NOT NULL, holder text)');
      await ctx.exec('INSERT INTO safety_slowness (id, ms) VALUES (1, 0) ON CONFLICT (id) DO UPDATE SET ms = 0, holder = NULL');
      // A BEFORE ROW trigger runs after the statement's VALUES were computed and before the row is
      // checked against the primary key: the delay lands between the two.
      await ctx.exec(`CREATE OR REPLACE FUNCTION safety_slow_down() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE delay integer; target_holder text;
        BEGIN
          SELECT ms, holder INTO delay, target_holder FROM safety_slowness WHERE id = 1;
          IF delay > 0 AND (target_holder IS NULL OR target_holder = NEW.holder) THEN PERFORM pg_sleep(delay / 1000.0); END IF;
          RETURN NEW;
        END $$`);
      await ctx.exec(`DROP TRIGGER IF EXISTS safety_slow ON ${ctx.quote(tableName)}`);
      await ctx.exec(`CREATE TRIGGER safety_slow BEFORE INSERT OR UPDATE ON ${ctx.quote(tableName)}
        FOR EACH ROW EXECUTE FUNCTION safety_slow_down()`);
    },
    async setSlowness(ms, holder) {
      await ctx.exec('UPDATE safety_slowness SET ms = ?, holder = ? WHERE id = 1', [ms, holder ?? null]);
    },
    labelledConnection(applicationName) {
      return { dialectOptions: { application_name: applicationName } };
    },
    terminateBackends(applicationName) {
      // Only connections older than a moment: Sequelize attaches its 'error' listener to a new
      // connection one tick after the connection is ready, so a backend killed in exactly that gap
      // crashes the client process with an unhandled 'error' event (a Sequelize race, seen once under
      // heavy load; not what this fault is about: the heartbeat's established connections).
      return one(
        `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = ? AND pid <> pg_backend_pid()
            AND backend_start < clock_timestamp() - interval '250 milliseconds'`,
        [applicationName],
      );
    },
    countListenerBackends(applicationName) {
      return one(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'
          AND (CAST(? AS text) IS NULL OR application_name = ?)`,
        [applicationName ?? null, applicationName ?? null],
      );
    },
    countBackends(applicationName) {
      return one(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = ?`, [
        applicationName,
      ]);
    },
  };
}

const DIALECTS: Partial<Record<TestDialect, (ctx: TestContext) => SafetyDialect>> = { postgres };

/** Whether this run's dialect has the safety suite's probes and fault injectors yet. */
export const SAFETY_SUPPORTED = DIALECTS[dialect] !== undefined;

/**
 * `describe` where the run's dialect has the safety probes, `describe.skip` elsewhere. The restart
 * test (a throw-away embedded server) and LISTEN counting are PostgreSQL facts: `onlyOn('postgres')`.
 */
export const describeSafety: jest.Describe = SAFETY_SUPPORTED ? describe : describe.skip;

export function onlyOn(...dialects: TestDialect[]): jest.Describe {
  return dialects.includes(dialect) ? describe : describe.skip;
}

export function safetyDialect(ctx: TestContext): SafetyDialect {
  const make = DIALECTS[ctx.dialect];
  if (!make) throw new Error(`the safety suite has no probes or fault injectors for ${ctx.dialect} yet`);
  return make(ctx);
}

/**
 * Everything dialect-specific on the test side of the safety suite, in one place:
 * - the probe tables the critical sections write to, and the SQL the contention workers run on them
 *   (`probeSql`, handed to each worker in its configuration, so the fixtures stay dialect-free);
 * - the deliberately broken lock of the detector self-test;
 * - the acquisition gate of fencing-order.test.ts (holds one holder's acquire statement inside the
 *   database until the test opens it);
 * - the slow-statement trigger of the connection-faults probe (PostgreSQL, MariaDB; killing and
 *   counting connections is connection-faults.ts).
 * Generic helpers (expiring a lock, the database clock in ms) come from TestContext's `ctx.sql`.
 *
 * Section times are the database clock as integer microseconds since the epoch (no driver date
 * parsing). PostgreSQL: clock_timestamp() (the time of the call, not of the transaction). MariaDB:
 * SYSDATE(6) (the time of the call; NOW(6) would be the statement's start, which also lies inside the
 * section but is further from its end). SQLite: julianday('now'), which has millisecond resolution
 * (its clock has no finer one), so a section's interval is rounded to whole milliseconds; sections
 * that touch are allowed by the detector, and every section lasts several milliseconds, so an overlap
 * still shows (and always shows as a lost update too).
 */
import { QueryTypes, Transaction, type Sequelize } from 'sequelize';
import { dialect, type TestContext, type TestDialect } from './db';
import type { Section } from './contention';
import { sleep } from './wait';

/** The SQL a contention worker runs (Sequelize `:name` replacements). */
export interface ProbeSql {
  /** The counter of a lock id, and the database clock (µs) as `now_us`: the start of a section. */
  readCounter: string;
  writeCounter: string;
  /** Logs a finished section; its end is the database clock at this statement. */
  logSection: string;
  /** The broken lock: how many rows hold this lock id (`n`). */
  brokenCheck: string;
  /** The broken lock: inserts a row and returns its fencing token (`token`, text). */
  brokenInsert: string;
  brokenRelease: string;
  /** A fencing token from the broken lock's token source (`token`, text), for the 'early-token' run. */
  drawToken: string;
}

/** A stall of one holder's acquire statement, held inside the database until `open()`. */
export interface AcquireGate {
  /** How the stall is made on this database, for the report. */
  readonly mechanism: string;
  /**
   * Whether the stall sits between drawing the fencing token and claiming the row (PostgreSQL,
   * MariaDB: a BEFORE trigger), or before the statement starts (SQLite: the file's write lock, under
   * which the token is drawn, so a statement can never stall between the two).
   */
  readonly afterTokenDrawn: boolean;
  /**
   * Resolves true once `n` statements are seen waiting inside the database; false (at once) where the
   * database cannot show waiting statements (SQLite). Polls until `signal` aborts.
   */
  waitForWaiting(n: number, signal: AbortSignal): Promise<boolean>;
  /** Lets the held statements go on. */
  open(): Promise<void>;
  /**
   * The stalls the database recorded (PostgreSQL, MariaDB: the trigger logs the token the held
   * statement had drawn and when it waited, by the database clock); [] on SQLite.
   */
  stalls(): Promise<{ holder: string; drawnToken: number; startedUs: number; endedUs: number }[]>;
}

export interface SafetyDialect {
  /** Counter rows (one per lock id, value 0) and the section log, empty. */
  createProbeTables(lockIds: readonly string[]): Promise<void>;
  /** The statements a contention worker runs on the probe tables (and on the broken lock's). */
  readonly probeSql: ProbeSql;
  /** Tables of the deliberately broken lock the detector self-test uses. */
  createBrokenLockTables(): Promise<void>;
  readSections(): Promise<Section[]>;
  readCounters(): Promise<Map<string, number>>;
  /**
   * Arms a gate on the lock table: the next acquire statement of `holder` stalls inside the database
   * (after drawing its token, where the database allows) until the gate is opened. One-shot.
   */
  gateAcquisitions(tableName: string, holder: string): Promise<AcquireGate>;
  /** A trigger on the lock table that makes INSERT/UPDATE statements on it sleep (0 = off). */
  installSlowTrigger(tableName: string): Promise<void>;
  /** How long each INSERT/UPDATE sleeps; with `holder`, only rows written for that holder label. */
  setSlowness(ms: number, holder?: string): Promise<void>;
}

/** Per-dialect SQL of the probes (the rest of SafetyDialect is built on it generically). */
interface ProbeText {
  createProbeTables: string[];
  emptyProbeTables: string[];
  createBrokenLockTables: string[];
  emptyBrokenLockTables: string[];
  readSections: string;
  probe: ProbeSql;
}

const SECTION_COLUMNS = (asText: (c: string) => string) =>
  `SELECT lock_id, ${asText('fencing_token')} AS fencing_token, worker, ${asText('started_us')} AS started_us,
    ${asText('ended_us')} AS ended_us FROM safety_log ORDER BY id`;

/** The section statements, which differ per dialect only in the clock and the cast to text. */
function sectionSql(clockUs: string, asText: (c: string) => string) {
  return {
    readSections: SECTION_COLUMNS(asText),
    probe: {
      readCounter: `SELECT value, ${asText(clockUs)} AS now_us FROM safety_counter WHERE lock_id = :lockId`,
      writeCounter: 'UPDATE safety_counter SET value = :value WHERE lock_id = :lockId',
      logSection: `INSERT INTO safety_log (lock_id, fencing_token, worker, started_us, ended_us)
        VALUES (:lockId, :fencingToken, :worker, :startedUs, ${clockUs})`,
      brokenRelease: 'DELETE FROM broken_locks WHERE token = :token',
    },
  };
}

/** Database clock in integer microseconds since the epoch, per dialect (see the file comment). */
export const CLOCK_US = {
  postgres: '(extract(epoch from clock_timestamp()) * 1000000)::bigint',
  // Sequelize pins the session time zone ('+00:00'), and UNIX_TIMESTAMP reads SYSDATE's value in
  // that same zone, so the result is the true epoch.
  mariadb: 'CAST(UNIX_TIMESTAMP(SYSDATE(6)) * 1000000 AS SIGNED)',
  sqlite: "(CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000)",
};

// A leading comment keeps Sequelize's SQLite query from treating `INSERT … RETURNING` as an insert
// whose rows it drops (it picks its driver method from the statement's first words).
const BROKEN_INSERT_NOTE = '/* broken lock: take */';

const SECTIONS_POSTGRES = sectionSql(CLOCK_US.postgres, (c) => `${c}::text`);
const POSTGRES_PROBES: ProbeText = {
  createProbeTables: [
    'CREATE TABLE IF NOT EXISTS safety_counter (lock_id text PRIMARY KEY, value integer NOT NULL)',
    `CREATE TABLE IF NOT EXISTS safety_log (id bigserial PRIMARY KEY, lock_id text NOT NULL,
      fencing_token bigint NOT NULL, worker integer NOT NULL, started_us bigint NOT NULL, ended_us bigint NOT NULL)`,
  ],
  emptyProbeTables: ['TRUNCATE safety_counter, safety_log'],
  // No primary key on the lock id on purpose: nothing stops two rows for one lock id.
  createBrokenLockTables: [
    'CREATE TABLE IF NOT EXISTS broken_locks (lock_id text NOT NULL, token bigint NOT NULL)',
    'CREATE SEQUENCE IF NOT EXISTS broken_fencing_seq',
  ],
  emptyBrokenLockTables: ['TRUNCATE broken_locks'],
  ...SECTIONS_POSTGRES,
  probe: {
    ...SECTIONS_POSTGRES.probe,
    // Look first, insert after, with nothing (no unique key, no single statement) tying the two together.
    brokenCheck: 'SELECT count(*)::int AS n FROM broken_locks WHERE lock_id = :lockId',
    brokenInsert: `${BROKEN_INSERT_NOTE} INSERT INTO broken_locks (lock_id, token) VALUES (:lockId, nextval('broken_fencing_seq'))
      RETURNING token::text AS token`,
    drawToken: "SELECT nextval('broken_fencing_seq')::text AS token",
  },
};

const SECTIONS_MARIADB = sectionSql(CLOCK_US.mariadb, (c) => `CAST(${c} AS CHAR)`);
const MARIADB_PROBES: ProbeText = {
  createProbeTables: [
    'CREATE TABLE IF NOT EXISTS safety_counter (lock_id VARCHAR(255) PRIMARY KEY, value INT NOT NULL) ENGINE=InnoDB',
    `CREATE TABLE IF NOT EXISTS safety_log (id BIGINT AUTO_INCREMENT PRIMARY KEY, lock_id VARCHAR(255) NOT NULL,
      fencing_token BIGINT NOT NULL, worker INT NOT NULL, started_us BIGINT NOT NULL, ended_us BIGINT NOT NULL) ENGINE=InnoDB`,
  ],
  emptyProbeTables: ['TRUNCATE TABLE safety_counter', 'TRUNCATE TABLE safety_log'],
  // The token is the primary key (so a release locks one index record, not a scan), the lock id is
  // not unique: nothing stops two rows for one lock id.
  createBrokenLockTables: [
    'CREATE TABLE IF NOT EXISTS broken_locks (token BIGINT PRIMARY KEY, lock_id VARCHAR(255) NOT NULL) ENGINE=InnoDB',
    'CREATE SEQUENCE IF NOT EXISTS broken_fencing_seq',
  ],
  emptyBrokenLockTables: ['TRUNCATE TABLE broken_locks'],
  ...SECTIONS_MARIADB,
  probe: {
    ...SECTIONS_MARIADB.probe,
    brokenCheck: 'SELECT CAST(COUNT(*) AS CHAR) AS n FROM broken_locks WHERE lock_id = :lockId',
    brokenInsert: `${BROKEN_INSERT_NOTE} INSERT INTO broken_locks (lock_id, token) VALUES (:lockId, NEXTVAL(broken_fencing_seq))
      RETURNING CAST(token AS CHAR) AS token`,
    drawToken: 'SELECT CAST(NEXTVAL(broken_fencing_seq) AS CHAR) AS token',
  },
};

const SECTIONS_SQLITE = sectionSql(CLOCK_US.sqlite, (c) => `CAST(${c} AS TEXT)`);
const SQLITE_PROBES: ProbeText = {
  createProbeTables: [
    'CREATE TABLE IF NOT EXISTS safety_counter (lock_id TEXT PRIMARY KEY, value INTEGER NOT NULL)',
    `CREATE TABLE IF NOT EXISTS safety_log (id INTEGER PRIMARY KEY AUTOINCREMENT, lock_id TEXT NOT NULL,
      fencing_token INTEGER NOT NULL, worker INTEGER NOT NULL, started_us INTEGER NOT NULL, ended_us INTEGER NOT NULL)`,
  ],
  emptyProbeTables: ['DELETE FROM safety_counter', 'DELETE FROM safety_log'],
  // AUTOINCREMENT never hands out a token twice, even after deletes; the lock id is not unique.
  createBrokenLockTables: [
    'CREATE TABLE IF NOT EXISTS broken_locks (token INTEGER PRIMARY KEY AUTOINCREMENT, lock_id TEXT NOT NULL)',
    // SQLite has no sequences: a token source of its own, which never hands out a number twice.
    'CREATE TABLE IF NOT EXISTS broken_tokens (token INTEGER PRIMARY KEY AUTOINCREMENT)',
  ],
  emptyBrokenLockTables: ['DELETE FROM broken_locks'],
  ...SECTIONS_SQLITE,
  probe: {
    ...SECTIONS_SQLITE.probe,
    brokenCheck: 'SELECT count(*) AS n FROM broken_locks WHERE lock_id = :lockId',
    brokenInsert: `${BROKEN_INSERT_NOTE} INSERT INTO broken_locks (lock_id) VALUES (:lockId) RETURNING CAST(token AS TEXT) AS token`,
    drawToken: `${BROKEN_INSERT_NOTE} INSERT INTO broken_tokens DEFAULT VALUES RETURNING CAST(token AS TEXT) AS token`,
  },
};

const PROBES: Record<TestDialect, ProbeText> = {
  postgres: POSTGRES_PROBES,
  mariadb: MARIADB_PROBES,
  mysql: MARIADB_PROBES,
  sqlite: SQLITE_PROBES,
};

/** The generic half of every dialect: probe tables, sections and counters through `ctx.exec`. */
function probes(ctx: TestContext) {
  const text = PROBES[ctx.dialect];
  const run = async (statements: readonly string[]) => {
    for (const sql of statements) await ctx.exec(sql);
  };
  return {
    probeSql: text.probe,
    async createProbeTables(lockIds: readonly string[]) {
      await run(text.createProbeTables);
      await run(text.emptyProbeTables);
      for (const lockId of lockIds) await ctx.exec('INSERT INTO safety_counter (lock_id, value) VALUES (?, 0)', [lockId]);
    },
    async createBrokenLockTables() {
      await run(text.createBrokenLockTables);
      await run(text.emptyBrokenLockTables);
    },
    async readSections(): Promise<Section[]> {
      const rows = await ctx.exec<Record<string, unknown>>(text.readSections);
      return rows.map((x) => ({
        lockId: String(x.lock_id),
        fencingToken: Number(x.fencing_token),
        worker: Number(x.worker),
        startUs: Number(x.started_us),
        endUs: Number(x.ended_us),
      }));
    },
    async readCounters() {
      const rows = await ctx.exec<{ lock_id: string; value: unknown }>('SELECT lock_id, value FROM safety_counter');
      return new Map(rows.map((x) => [String(x.lock_id), Number(x.value)]));
    },
  };
}

/**
 * The gate: the test holds a row lock on `safety_gate` (or, on SQLite, the file's write lock) in an
 * open transaction of its own connection; the held statement waits for it. Opening = committing.
 */
async function holdInTransaction(ctx: TestContext, type: Transaction.TYPES | undefined, statement: string | null) {
  const s: Sequelize = ctx.sequelize({ pool: { max: 1 } });
  const t = await s.transaction(type ? { type } : {});
  try {
    if (statement) await s.query(statement, { transaction: t, type: QueryTypes.SELECT });
  } catch (error) {
    await t.rollback();
    throw error;
  }
  return async () => {
    await t.commit();
  };
}

const STALL_COLUMNS = (asText: (c: string) => string) =>
  `SELECT holder, ${asText('drawn_token')} AS drawn_token, ${asText('started_us')} AS started_us, ${asText('ended_us')} AS ended_us
    FROM safety_stalls ORDER BY id`;

async function readStalls(ctx: TestContext, sql: string) {
  const rows = await ctx.exec<Record<string, unknown>>(sql);
  return rows.map((r) => ({
    holder: String(r.holder),
    drawnToken: Number(r.drawn_token),
    startedUs: Number(r.started_us),
    endedUs: Number(r.ended_us),
  }));
}

/**
 * PostgreSQL and MariaDB, once their trigger is installed: shuts the gate (the test's transaction
 * takes the row lock the trigger waits for) and arms it for `holder`.
 */
async function shutGate(
  ctx: TestContext,
  holder: string,
  how: { countWaiting: () => Promise<number>; readStalls: string },
): Promise<AcquireGate> {
  const open = await holdInTransaction(ctx, undefined, 'SELECT id FROM safety_gate WHERE id = 1 FOR UPDATE');
  await ctx.exec('INSERT INTO safety_gate_target (holder) VALUES (?)', [holder]);
  return {
    mechanism: 'a BEFORE trigger waiting for a row lock the test holds',
    afterTokenDrawn: true,
    waitForWaiting: (n, signal) => pollUntil(how.countWaiting, n, signal),
    open,
    stalls: () => readStalls(ctx, how.readStalls),
  };
}

/** Polls `count()` until it reaches `n` (true) or `signal` aborts (false). */
async function pollUntil(count: () => Promise<number>, n: number, signal: AbortSignal): Promise<boolean> {
  while (!signal.aborted) {
    if ((await count()) >= n) return true;
    await sleep(20);
  }
  return false;
}

function postgres(ctx: TestContext): SafetyDialect {
  const one = async (sql: string, params: unknown[] = []) => Number((await ctx.exec<{ n: unknown }>(sql, params))[0]!.n);
  return {
    ...probes(ctx),
    async gateAcquisitions(tableName, holder) {
      await ctx.exec('CREATE TABLE IF NOT EXISTS safety_gate (id integer PRIMARY KEY)');
      await ctx.exec('INSERT INTO safety_gate (id) VALUES (1) ON CONFLICT DO NOTHING');
      await ctx.exec('CREATE TABLE IF NOT EXISTS safety_gate_target (holder text PRIMARY KEY)');
      await ctx.exec(`CREATE TABLE IF NOT EXISTS safety_stalls (id bigserial PRIMARY KEY, holder text NOT NULL,
        drawn_token bigint NOT NULL, started_us bigint NOT NULL, ended_us bigint NOT NULL)`);
      await ctx.exec('TRUNCATE safety_stalls, safety_gate_target');
      // A BEFORE ROW trigger runs once the statement's values (the drawn token among them) are
      // computed and before the row is claimed: the wait lands between the two. The target row makes
      // it one-shot (deleted by the statement it held) and limits it to one holder.
      await ctx.exec(`CREATE OR REPLACE FUNCTION safety_gate_wait() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE started bigint;
        BEGIN
          IF EXISTS (SELECT 1 FROM safety_gate_target WHERE holder = NEW.holder) THEN
            started := ${CLOCK_US.postgres};
            PERFORM 1 FROM safety_gate WHERE id = 1 FOR SHARE;
            DELETE FROM safety_gate_target WHERE holder = NEW.holder;
            INSERT INTO safety_stalls (holder, drawn_token, started_us, ended_us)
              VALUES (NEW.holder, NEW.fencing_token, started, ${CLOCK_US.postgres});
          END IF;
          RETURN NEW;
        END $$`);
      await ctx.exec(`DROP TRIGGER IF EXISTS safety_gate ON ${ctx.quote(tableName)}`);
      await ctx.exec(`CREATE TRIGGER safety_gate BEFORE INSERT OR UPDATE ON ${ctx.quote(tableName)}
        FOR EACH ROW EXECUTE FUNCTION safety_gate_wait()`);
      return shutGate(ctx, holder, {
        countWaiting: () =>
          one(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`),
        readStalls: STALL_COLUMNS((c) => `${c}::text`),
      });
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
  };
}

/** For the fault injectors a database has no equivalent of: an error that says so, never a silent pass. */
function unavailable(what: string, why: string): never {
  throw new Error(`${what} is not available on ${dialect}: ${why}`);
}

function mariadb(ctx: TestContext): SafetyDialect {
  const one = async (sql: string, params: unknown[] = []) => Number((await ctx.exec<{ n: unknown }>(sql, params))[0]!.n);
  /** MariaDB triggers have one event each: the same procedure behind a BEFORE INSERT and a BEFORE UPDATE trigger. */
  const triggerPair = async (tableName: string, name: string, procedure: string) => {
    for (const event of ['INSERT', 'UPDATE']) {
      const trigger = `${name}_${event.toLowerCase()}`;
      await ctx.exec(`DROP TRIGGER IF EXISTS ${trigger}`);
      await ctx.exec(`CREATE TRIGGER ${trigger} BEFORE ${event} ON ${ctx.quote(tableName)} FOR EACH ROW CALL ${procedure}(NEW.holder, NEW.fencing_token)`);
    }
  };
  return {
    ...probes(ctx),
    async gateAcquisitions(tableName, holder) {
      await ctx.exec('CREATE TABLE IF NOT EXISTS safety_gate (id INT PRIMARY KEY) ENGINE=InnoDB');
      await ctx.exec('INSERT IGNORE INTO safety_gate (id) VALUES (1)');
      await ctx.exec('CREATE TABLE IF NOT EXISTS safety_gate_target (holder VARCHAR(255) PRIMARY KEY) ENGINE=InnoDB');
      await ctx.exec(`CREATE TABLE IF NOT EXISTS safety_stalls (id BIGINT AUTO_INCREMENT PRIMARY KEY, holder VARCHAR(255) NOT NULL,
        drawn_token BIGINT NOT NULL, started_us BIGINT NOT NULL, ended_us BIGINT NOT NULL) ENGINE=InnoDB`);
      await ctx.exec('TRUNCATE TABLE safety_stalls');
      await ctx.exec('TRUNCATE TABLE safety_gate_target');
      // The acquire is INSERT … VALUES (…, NEXTVAL(seq), …) ON DUPLICATE KEY UPDATE: the VALUES (the
      // drawn token among them) are computed before the BEFORE INSERT trigger, and the row is written
      // (or found taken) after it, so the wait lands between the two. A locking read waits for the
      // row lock the test holds (innodb_lock_wait_timeout, 50 s by default, is far beyond the test).
      await ctx.exec(`CREATE OR REPLACE PROCEDURE safety_gate_wait(IN who VARCHAR(255), IN drawn BIGINT)
        BEGIN
          DECLARE started BIGINT; DECLARE ignored INT;
          IF EXISTS (SELECT 1 FROM safety_gate_target WHERE holder = who) THEN
            SET started = ${CLOCK_US.mariadb};
            SELECT id INTO ignored FROM safety_gate WHERE id = 1 LOCK IN SHARE MODE;
            DELETE FROM safety_gate_target WHERE holder = who;
            INSERT INTO safety_stalls (holder, drawn_token, started_us, ended_us) VALUES (who, drawn, started, ${CLOCK_US.mariadb});
          END IF;
        END`);
      await triggerPair(tableName, 'safety_gate', 'safety_gate_wait');
      return shutGate(ctx, holder, {
        // A statement waiting at the gate shows its trigger's locking read in the process list (its
        // transaction does not always show as LOCK WAIT in INNODB_TRX: the read waits while the
        // optimizer looks up the row); any other statement waiting for a row lock shows there.
        countWaiting: () =>
          one(`SELECT COUNT(DISTINCT id) AS n FROM (
            SELECT ID AS id FROM information_schema.PROCESSLIST WHERE DB = DATABASE() AND INFO LIKE 'SELECT id INTO ignored FROM safety_gate %'
            UNION SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT') AS waiting`),
        readStalls: STALL_COLUMNS((c) => `CAST(${c} AS CHAR)`),
      });
    },
    async installSlowTrigger(tableName) {
      await ctx.exec('CREATE TABLE IF NOT EXISTS safety_slowness (id INT PRIMARY KEY, ms INT NOT NULL, holder VARCHAR(255)) ENGINE=InnoDB');
      await ctx.exec('INSERT INTO safety_slowness (id, ms) VALUES (1, 0) ON DUPLICATE KEY UPDATE ms = 0, holder = NULL');
      // As on PostgreSQL, the BEFORE trigger sleeps after the VALUES were computed and before the row
      // is written. SLEEP() ends early when the statement is killed or hits max_statement_time.
      await ctx.exec(`CREATE OR REPLACE PROCEDURE safety_slow_down(IN who VARCHAR(255), IN drawn BIGINT)
        BEGIN
          DECLARE delay INT; DECLARE target VARCHAR(255);
          SELECT ms, holder INTO delay, target FROM safety_slowness WHERE id = 1;
          IF delay > 0 AND (target IS NULL OR target = who) THEN DO SLEEP(delay / 1000); END IF;
        END`);
      await triggerPair(tableName, 'safety_slow', 'safety_slow_down');
    },
    async setSlowness(ms, holder) {
      await ctx.exec('UPDATE safety_slowness SET ms = ?, holder = ? WHERE id = 1', [ms, holder ?? null]);
    },
  };
}

function sqlite(ctx: TestContext): SafetyDialect {
  const noSleep = 'SQLite has no sleep in SQL and the sqlite3 driver has no user-defined functions';
  return {
    ...probes(ctx),
    async gateAcquisitions() {
      // Every SQLite write statement takes the file's write lock before it reads anything and draws
      // the token under it, so no statement can stall between drawing and claiming. The nearest stall
      // is the write lock itself, held by the test's own transaction: every acquire waits (busy
      // timeout) until it is released, the held holder's as well as its rival's.
      const open = await holdInTransaction(ctx, Transaction.TYPES.IMMEDIATE, null);
      return {
        mechanism: "the file's write lock, held by the test (BEGIN IMMEDIATE)",
        afterTokenDrawn: false,
        waitForWaiting: async () => false,
        open,
        stalls: async () => [],
      };
    },
    installSlowTrigger: () => unavailable('a slow-statement trigger', noSleep),
    setSlowness: () => unavailable('a slow-statement trigger', noSleep),
  };
}

const DIALECTS: Record<TestDialect, (ctx: TestContext) => SafetyDialect> = { postgres, mariadb, mysql: mariadb, sqlite };

export function safetyDialect(ctx: TestContext): SafetyDialect {
  return DIALECTS[ctx.dialect](ctx);
}

'use strict';
/**
 * sequelize-cli seeder: a realistic snapshot for the dashboard and the `db-mutex` CLI to show.
 *
 *   DATABASE_URL=postgres://… npx sequelize-cli db:migrate && npx sequelize-cli db:seed:all
 *
 * - Every instant is computed by the database (now() minus an offset), never by this process's clock,
 *   exactly as real locks are; all statements share one transaction, hence one now().
 * - Fencing tokens come from the lock table's own sequence, so a lock taken later over a seeded one
 *   still gets a higher token.
 * - Running it again does no harm: locks are inserted ON CONFLICT DO NOTHING (a lock id already held,
 *   by a real holder or an earlier seed, is left alone) and an audit entry is added only when the same
 *   entry is not already there. sequelize-cli does not remember seeders by default, so this matters.
 * - Seeded locks carry fixed owner tokens that no real holder can have (real ones are random UUIDs),
 *   so `db:seed:undo:all` removes exactly the seeded rows and never a live lock of the same id.
 * - Only the default table names (db_mutex_locks, db_mutex_events) are seeded, on PostgreSQL.
 *
 * The "active" locks are a snapshot: nobody renews them, so the heartbeat ones turn stale after a few
 * minutes (as a crashed worker's would), while the TTL-only ones stay active until their expiry.
 */

const LOCKS = 'db_mutex_locks';
const EVENTS = 'db_mutex_events';
const SEQUENCE = 'db_mutex_locks_fencing_seq';

const MIN = 60;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

/** Offsets in seconds relative to the database's now(); null = no value (never expires / heartbeat off). */
const SEEDED_LOCKS = [
  {
    // TTL only (heartbeat off): stays active for two hours after it was taken.
    lockId: 'nightly-report',
    ownerToken: '5eed0000-0000-4000-8000-000000000001',
    holder: 'reports-worker', hostname: 'app-1', pid: 4101,
    acquiredAgo: 4 * MIN, heartbeatAgo: 4 * MIN, expiresIn: 2 * HOUR - 4 * MIN, deadlineIn: 2 * HOUR - 4 * MIN, leaseSeconds: null,
  },
  {
    // A heartbeat holder that renewed 5 s ago (lease 10 min, TTL 30 min).
    lockId: 'billing:sync',
    ownerToken: '5eed0000-0000-4000-8000-000000000002',
    holder: 'billing-worker', hostname: 'app-2', pid: 5120,
    acquiredAgo: 3 * MIN, heartbeatAgo: 5, expiresIn: 10 * MIN - 5, deadlineIn: 27 * MIN, leaseSeconds: 10 * MIN,
  },
  {
    // Lock ids are free text: spaces and slashes are fine.
    lockId: 'import/customers 2026-11',
    ownerToken: '5eed0000-0000-4000-8000-000000000003',
    holder: 'import-worker', hostname: 'app-1', pid: 4177,
    acquiredAgo: 12 * MIN, heartbeatAgo: 12 * MIN, expiresIn: HOUR - 12 * MIN, deadlineIn: HOUR - 12 * MIN, leaseSeconds: null,
  },
  {
    // Expired 17 minutes ago and not taken over yet: stale, and what purge-expired removes.
    lockId: 'cache:warmup',
    ownerToken: '5eed0000-0000-4000-8000-000000000004',
    holder: 'cache-worker', hostname: 'app-3', pid: 6011,
    acquiredAgo: 47 * MIN, heartbeatAgo: 47 * MIN, expiresIn: -17 * MIN, deadlineIn: -17 * MIN, leaseSeconds: null,
  },
  {
    // Heartbeat overdue: last renewal 8 min ago with a 10 min lease (renewals are due every 3 min 20 s).
    // Not expired yet, but stale: its holder is most likely gone, an operator may free it.
    lockId: 'search:reindex',
    ownerToken: '5eed0000-0000-4000-8000-000000000005',
    holder: 'search-worker', hostname: 'app-2', pid: 5233,
    acquiredAgo: 25 * MIN, heartbeatAgo: 8 * MIN, expiresIn: 2 * MIN, deadlineIn: 35 * MIN, leaseSeconds: 10 * MIN,
  },
];

/** Audit entries, oldest first (ids are assigned in this order). `ago` is when the operator acted. */
const SEEDED_EVENTS = [
  {
    action: 'purge-expired', lockId: 'thumbnails:rebuild',
    holder: 'media-worker', hostname: 'app-1', pid: 4420,
    ago: 2 * DAY, heldSeconds: 35 * MIN, operator: 'carol@bastion', reason: null,
  },
  {
    action: 'force-release', lockId: 'nightly-report',
    holder: 'reports-worker', hostname: 'app-1', pid: 3987,
    ago: DAY, heldSeconds: 2 * HOUR + 2 * MIN, operator: 'alice@ops-laptop', reason: 'report job hung on a slow query',
  },
  {
    action: 'release-stale', lockId: 'payments:reconcile',
    holder: 'payments-worker', hostname: 'app-2', pid: 5301,
    ago: HOUR, heldSeconds: 90 * MIN, operator: 'bob@ops', reason: 'heartbeat stopped after the database failover',
  },
  {
    action: 'force-release', lockId: 'email:digest',
    holder: 'mailer-worker', hostname: 'app-3', pid: 6230,
    ago: 20 * MIN, heldSeconds: 2 * HOUR + 40 * MIN, operator: 'alice@ops-laptop', reason: 'worker pod was evicted; lock left behind',
  },
];

/** now() shifted by a number of seconds (bound as a parameter, never spliced into the SQL). */
const at = (param) => `now() + ${param}::float8 * interval '1 second'`;
const atOrNull = (param) => `CASE WHEN ${param}::float8 IS NULL THEN NULL ELSE ${at(param)} END`;

/** The columns that identify a seeded audit entry (ids are assigned by the database). */
const EVENT_IDENTITY =
  'action = $1::text AND lock_id = $2::text AND holder = $3::text AND hostname = $4::text AND pid = $5::int AND operator = $6::text';

function eventIdentity(e) {
  return [e.action, e.lockId, e.holder, e.hostname, e.pid, e.operator];
}

function requirePostgres(sequelize) {
  if (sequelize.getDialect() !== 'postgres') {
    throw new Error(`the db-mutex demo seeder is written for PostgreSQL, not ${sequelize.getDialect()}`);
  }
}

module.exports = {
  async up(queryInterface) {
    const sequelize = queryInterface.sequelize;
    requirePostgres(sequelize);
    await sequelize.transaction(async (transaction) => {
      // Audit entries first: they are older, so their fencing tokens come before the current locks' ones.
      for (const e of SEEDED_EVENTS) {
        await sequelize.query(
          `INSERT INTO ${EVENTS} (action, lock_id, fencing_token, holder, hostname, pid, acquired_at, age_seconds, operator, reason, created_at)
            SELECT $1::text, $2::text, nextval('${SEQUENCE}'), $3::text, $4::text, $5::int,
              ${at('-($8::float8 + $9::float8)')}, $9::float8, $6::text, $7::text, ${at('-$8')}
            WHERE NOT EXISTS (SELECT 1 FROM ${EVENTS} WHERE ${EVENT_IDENTITY})`,
          { bind: [...eventIdentity(e), e.reason, e.ago, e.heldSeconds], transaction },
        );
      }
      for (const l of SEEDED_LOCKS) {
        await sequelize.query(
          `INSERT INTO ${LOCKS} (lock_id, owner_token, fencing_token, holder, hostname, pid,
              acquired_at, expires_at, deadline_at, heartbeat_at, lease_seconds)
            VALUES ($1::text, $2::uuid, nextval('${SEQUENCE}'), $3::text, $4::text, $5::int,
              ${at('-$6')}, ${atOrNull('$7')}, ${atOrNull('$8')}, ${at('-$9')}, $10::float8)
            ON CONFLICT (lock_id) DO NOTHING`,
          {
            bind: [l.lockId, l.ownerToken, l.holder, l.hostname, l.pid, l.acquiredAgo, l.expiresIn, l.deadlineIn, l.heartbeatAgo, l.leaseSeconds],
            transaction,
          },
        );
      }
    });
  },

  async down(queryInterface) {
    const sequelize = queryInterface.sequelize;
    requirePostgres(sequelize);
    await sequelize.transaction(async (transaction) => {
      await sequelize.query(`DELETE FROM ${LOCKS} WHERE owner_token = ANY($1::uuid[])`, {
        bind: [SEEDED_LOCKS.map((l) => l.ownerToken)],
        transaction,
      });
      for (const e of SEEDED_EVENTS) {
        await sequelize.query(`DELETE FROM ${EVENTS} WHERE ${EVENT_IDENTITY}`, { bind: eventIdentity(e), transaction });
      }
    });
  },
};

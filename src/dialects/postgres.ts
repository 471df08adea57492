/**
 * PostgreSQL: every lock operation is one statement; releases NOTIFY waiters and holders.
 *
 * Why these shapes:
 * - Acquire is one statement: `INSERT … ON CONFLICT DO NOTHING` for a free id plus `UPDATE … WHERE
 *   expired` for an expired row, under a per-id advisory claim. A live row is left alone (zero rows
 *   returned) without being locked or written, so refused attempts cost the holder nothing.
 * - `now()` is the database clock at transaction start; an acquirer that waited on the claim or a
 *   row lock uses the earlier instant, which can only make it more reluctant to take over, never less.
 * - Fencing tokens come from one sequence per table, so they increase across release, expiry,
 *   takeover and even a manual DELETE of the row.
 * - Timestamps travel as epoch milliseconds (float8) so no type parser of the host app matters.
 */
import type { SchemaNames } from '../schema';
import {
  parseAcquisition,
  parseCount,
  parseCounts,
  parseEventRows,
  parseExtend,
  parseHistoryRows,
  parseLockRows,
  parseOwnerTokens,
  parseRelease,
  parseSemaphoreRow,
} from './rows';
import { SqlLockStore } from './store';
import type { AcquireParams, Audit, Dialect, DialectDriver, HeldFacts, LeaseKey, ListParams, ReleaseWhere, Rows, SemaphoreAcquireParams, StoreOperation } from './types';

interface PgClient {
  query(config: { name?: string; text: string; values?: unknown[]; query_timeout?: number }): Promise<{ rows: Rows }>;
}

const driver: DialectDriver = {
  async run(connection, statement, timeoutMs) {
    const client = connection as PgClient;
    const result = await client.query({
      // Named statements are parsed and planned once per connection, then only bound and executed.
      // An empty name is the unnamed statement (what a transaction-mode pooler can pass on).
      name: statement.name || undefined,
      text: statement.text,
      values: statement.values as unknown[],
      query_timeout: timeoutMs,
    });
    return result.rows;
  },
  async control(connection, command, timeoutMs) {
    await (connection as PgClient).query({ text: command, values: [], query_timeout: timeoutMs });
  },
  isBroken(connection, error) {
    // After a client-side timeout the server may still be running the statement; the connection's
    // protocol state is unknown, so it must be destroyed rather than reused.
    const message = error instanceof Error ? error.message : '';
    const c = connection as { _ending?: boolean; _invalid?: boolean };
    return message.includes('Query read timeout') || c._ending === true || c._invalid === true;
  },
  isRetryable(error) {
    // deadlock_detected: the server rolled the victim statement back as a whole.
    return (error as { code?: unknown } | null)?.code === '40P01';
  },
  isPreparedStatementMismatch(error) {
    // 26000 invalid_sql_statement_name (Bind found no such statement), 42P05 duplicate_prepared_statement
    // (Parse found one): both before execution.
    const code = (error as { code?: unknown } | null)?.code;
    return code === '26000' || code === '42P05';
  },
};

const q = (identifier: string) => `"${identifier.replace(/"/g, '""')}"`;
const ms = (expr: string) => `(extract(epoch from ${expr}) * 1000)::float8`;
const secs = (param: string) => `(${param}::float8 * interval '1 second')`;

/**
 * Stored instants are whole milliseconds: JavaScript Dates are, and the keyset cursor
 * (acquired_at, lock_id) must round-trip exactly through one.
 */
const NOW_MS = `date_trunc('milliseconds', now())`;

const LOCK_COLUMNS = `lock_id, holder, hostname, pid, fencing_token::text AS fencing_token,
  ${ms('acquired_at')} AS acquired_ms, ${ms('expires_at')} AS expires_ms, ${ms('deadline_at')} AS deadline_ms,
  ${ms('heartbeat_at')} AS heartbeat_ms, lease_seconds, ${ms('now()')} AS now_ms, kind, semaphore_id, permit, permit_limit`;

const ACQUIRE_COLUMNS = `lock_id, owner_token, fencing_token, holder, hostname, pid,
  acquired_at, expires_at, deadline_at, heartbeat_at, lease_seconds`;
/** The lock acquisition writes the kind columns too (a takeover of a permit's row makes it a lock). */
const LOCK_ACQUIRE_COLUMNS = `${ACQUIRE_COLUMNS}, kind, semaphore_id, permit, permit_limit`;
const ACQUIRED = `true AS won, fencing_token::text AS fencing_token, ${ms('acquired_at')} AS acquired_ms,
  ${ms('expires_at')} AS expires_ms, NULL::text AS holder`;
/** The same columns for the live row that refused us. */
const REFUSED = `false AS won, NULL::text AS fencing_token, NULL::float8 AS acquired_ms, ${ms('expires_at')} AS expires_ms, holder`;

/** The history table's columns, in the order every history INSERT below lists its values. */
const HISTORY_COLUMNS = 'lock_id, fencing_token, holder, hostname, pid, acquired_at, ended_at, outcome, detail';

/** Expired, or no heartbeat for more than two renewal periods (2/3 of a lease). */
const STALE = `(expires_at <= now() OR (lease_seconds IS NOT NULL
  AND heartbeat_at < now() - lease_seconds * interval '1 second' * 2 / 3))`;

/** The ($1, $2) arrays that unnest() pairs up into (lock_id, owner_token) rows. */
function pairs(locks: readonly LeaseKey[]): unknown[] {
  return [locks.map((l) => l.lockId), locks.map((l) => l.ownerToken)];
}

class PostgresStore extends SqlLockStore {
  private readonly seq = `'${q(sequenceName(this.names))}'`;
  private readonly channel = channelName(this.names);
  /** First key of the advisory locks on lock ids: one namespace per lock table. */
  private readonly advisoryClass = int32Hash(`sequelize-db-mutex:${this.names.tableName}`);

  /** Second-level namespace of the advisory locks that mark lock ids as awaited (see `waiterMarkSql`). */
  private readonly waitClass = waitClassOf(this.names);
  /**
   * The hot path's statement texts and names, built once: the texts are long and each call would
   * otherwise rebuild (and pg compare) them. Each in two forms, with the history write (the default)
   * and without; the names differ, since a name stands for one text on a connection.
   */
  private readonly acquireStatements = {
    history: { name: `${this.prefix}_acquire`, text: this.buildAcquireText(true) },
    plain: { name: `${this.prefix}_acquire_plain`, text: this.buildAcquireText(false) },
  };
  private readonly releaseStatements = {
    history: { name: `${this.prefix}_release`, text: this.buildReleaseText(true) },
    plain: { name: `${this.prefix}_release_plain`, text: this.buildReleaseText(false) },
  };

  protected quote(identifier: string): string {
    return q(identifier);
  }

  private buildAcquireText(history: boolean): string {
    const { t, seq, advisoryClass } = this;
    const fresh = `$1, $2::uuid, nextval(${seq}), $3, $4, $5, ${NOW_MS},
        CASE WHEN $7::float8 IS NULL THEN ${NOW_MS} + ${secs('$6')} ELSE LEAST(${NOW_MS} + ${secs('$7')}, ${NOW_MS} + ${secs('$6')}) END,
        ${NOW_MS} + ${secs('$6')}, ${NOW_MS}, $7::float8, $8::text, NULL::text, NULL::integer, NULL::integer`;
    // The token must be drawn only once this statement has the lock id to itself: a token drawn
    // earlier could be older than that of an acquisition that came and went (row inserted and
    // deleted) while this statement waited, and fencing tokens must strictly increase per lock id.
    // A transaction-scoped advisory lock on the id, taken before nextval() (both branches draw
    // the token from a projection over `claim`), serializes acquisitions of one id until commit;
    // releases need not take it.
    //
    // A free id is inserted; an expired row is taken over by the UPDATE, which locks the row and
    // rechecks `expires_at` on its newest version, so two takers cannot both win. A live row is
    // left alone without a row lock: `ON CONFLICT DO NOTHING` skips it and the UPDATE's WHERE
    // filters it out before locking. (`ON CONFLICT … DO UPDATE … WHERE expired` would lock the
    // live row even when refusing, making every refused attempt write WAL, wait for a flush while
    // holding the claim, and queue the holder's release behind it; measured in bench/.)
    // At most one branch returns a row: the UPDATE's snapshot cannot see the INSERT's row.
    //
    // When neither branch won, `refused` returns the holder's row from the statement's snapshot
    // with a plain read (no row lock, so the property above holds), for DbMutexError.holder and
    // .expiresAt at no extra round trip. Its NOT EXISTS tests are uncorrelated (one-time filters),
    // so a successful acquire never scans for it. A row that is expired in the snapshot yet
    // refused us was renewed after the snapshot: that stale copy is not reported (no row: the
    // caller reads the holder with inspect).
    //
    // With history, a takeover also records how the acquisition it replaces ended (`expired`, taken
    // over), from the expired row as the statement's snapshot saw it; the insert runs only when the
    // takeover won (a one-time filter), so other acquisitions pay nothing for it. The row replaced is
    // the one in the snapshot unless that one was itself replaced, and the replacement had expired
    // too, while this statement waited for the claim: then this history row names the older one.
    const recordTakeover = history
      ? `,
          prev AS (SELECT lock_id, fencing_token, holder, hostname, pid, acquired_at, expires_at FROM ${t}
            WHERE lock_id = $1 AND expires_at <= now()),
          ended AS (INSERT INTO ${this.h} (${HISTORY_COLUMNS})
            SELECT lock_id, fencing_token, holder, hostname, pid, acquired_at, expires_at, 'expired', 'taken over' FROM prev
            WHERE EXISTS (SELECT 1 FROM taken_over) ON CONFLICT DO NOTHING)`
      : '';
    return `WITH claim AS (SELECT pg_advisory_xact_lock(${advisoryClass}, hashtext($1))),
          inserted AS (INSERT INTO ${t} AS l (${LOCK_ACQUIRE_COLUMNS}) SELECT ${fresh} FROM claim
            ON CONFLICT (lock_id) DO NOTHING RETURNING ${ACQUIRED}),
          taken_over AS (UPDATE ${t} AS l SET (${LOCK_ACQUIRE_COLUMNS}) = (SELECT ${fresh} FROM claim)
            WHERE l.lock_id = $1 AND l.expires_at <= now() RETURNING ${ACQUIRED}),
          refused AS (SELECT ${REFUSED} FROM ${t}
            WHERE lock_id = $1 AND (expires_at IS NULL OR expires_at > now())
              AND NOT EXISTS (SELECT 1 FROM inserted) AND NOT EXISTS (SELECT 1 FROM taken_over))${recordTakeover}
          SELECT * FROM inserted UNION ALL SELECT * FROM taken_over UNION ALL SELECT * FROM refused`;
  }

  async acquire(p: AcquireParams) {
    const values = [p.lockId, p.ownerToken, p.holder, p.hostname, p.pid, p.ttlSeconds, p.leaseSeconds, p.kind ?? 'lock'];
    const send = (s: { name: string; text: string }) => this.run('acquire', { ...s, values });
    const rows = this.recording ? await this.orWithoutHistory(() => send(this.acquireStatements.history), () => send(this.acquireStatements.plain)) : await send(this.acquireStatements.plain);
    return parseAcquisition(rows);
  }

  async acquireSemaphore(p: SemaphoreAcquireParams) {
    // One round trip: the function (see semaphoreFunctionSql) claims the semaphore and decides, and
    // always answers with one row (won, or why not).
    const text = `SELECT * FROM ${q(semaphoreFunctionName(this.names))}($1, $2::uuid, $3, $4, $5::integer, $6::float8, $7::float8, $8::integer)`;
    const values = [p.semaphoreId, p.ownerToken, p.holder, p.hostname, p.pid, p.ttlSeconds, p.leaseSeconds, p.limit];
    const attempt = parseSemaphoreRow(await this.run('acquireSemaphore', this.named('semaphore_acquire', text, values)), p);
    if (!attempt) throw new Error('the semaphore function returned no row');
    return attempt;
  }

  async listPermits(p: { filter: string | null; limit: number }) {
    const text = `SELECT ${LOCK_COLUMNS}, ${STALE} AS stale FROM ${this.t}
        WHERE semaphore_id IS NOT NULL AND kind = 'semaphore' AND ($1::text IS NULL OR strpos(semaphore_id, $1) > 0)
        ORDER BY semaphore_id, permit LIMIT $2`;
    return parseLockRows(await this.run('listPermits', this.named('list_permits', text, [p.filter, p.limit])));
  }

  async releasePermitOf(semaphoreId: string, ownerToken: string) {
    const text = `WITH d AS (DELETE FROM ${this.t} WHERE semaphore_id = $1 AND owner_token = $2::uuid RETURNING lock_id)
        SELECT pg_notify('${this.channel}', $2::text || d.lock_id) AS notified FROM d`;
    return (await this.run('releasePermitOf', this.named('release_permit_of', text, [semaphoreId, ownerToken]))).length > 0;
  }

  private buildReleaseText(history: boolean): string {
    // The release alone commits without waiting for the WAL flush: if the database crashes right
    // after, the release may be lost and the lock stays taken until its lease (or TTL) runs out.
    // That delays the next holder; it can never let two hold at once. Acquire stays durable.
    //
    // It notifies only when some process waits for this lock id: a waiting process holds a shared
    // advisory lock on (waitClass, id) on its LISTEN connection (taken before the attempt that it
    // then sleeps on), so this exclusive try fails exactly then. Most releases have nobody waiting
    // and skip the NOTIFY, its commit-time queue work and its delivery to every listener (the
    // releasing process's own included). A waiter whose mark finds this try holding the key (a
    // release committing right now) retries at once instead of sleeping; a mark taken after this
    // release committed is followed by an attempt that finds the lock free. CASE evaluates the
    // notify only when the try fails; the try's lock ends with this statement's transaction.
    //
    // A permit's row (semaphore_id set) is awaited under its semaphore id, which its waiters mark
    // (they wait for any permit, not for this row key), so the release tries that key too; the row
    // key is still tried for a lock whose id is exactly that key (it waits while the permit is held).
    //
    // With history, the same statement records the end from the deleted row: `released`, or `lost`
    // (expired) at its expiry when the lease had already run out. A loss the holder recorded first
    // stays (the key is the acquisition).
    const recordEnd = history
      ? `, ended AS (INSERT INTO ${this.h} (${HISTORY_COLUMNS})
            SELECT lock_id, fencing_token, holder, hostname, pid, acquired_at,
              CASE WHEN expires_at <= now() THEN expires_at ELSE ${NOW_MS} END,
              CASE WHEN expires_at <= now() THEN 'lost' ELSE 'released' END,
              CASE WHEN expires_at <= now() THEN 'expired' END
            FROM d ON CONFLICT DO NOTHING)`
      : '';
    const returning = history ? 'lock_id, semaphore_id, expires_at, fencing_token, holder, hostname, pid, acquired_at' : 'lock_id, semaphore_id, expires_at';
    return `WITH d AS (DELETE FROM ${this.t} WHERE lock_id = $1 AND owner_token = $2::uuid RETURNING ${returning})${recordEnd}
          SELECT COALESCE(d.expires_at <= now(), false) AS expired,
            CASE WHEN pg_try_advisory_xact_lock(${this.waitClass}, hashtext(d.lock_id))
                AND (d.semaphore_id IS NULL OR pg_try_advisory_xact_lock(${this.waitClass}, hashtext(d.semaphore_id))) THEN NULL
              ELSE pg_notify('${this.channel}', $2::text || d.lock_id) END AS notified,
            set_config('synchronous_commit', 'off', true) AS async_commit FROM d`;
  }

  async release({ lockId, ownerToken }: LeaseKey) {
    const send = (s: { name: string; text: string }) => this.run('release', { ...s, values: [lockId, ownerToken] });
    const rows = this.recording ? await this.orWithoutHistory(() => send(this.releaseStatements.history), () => send(this.releaseStatements.plain)) : await send(this.releaseStatements.plain);
    return parseRelease(rows);
  }

  async recordLoss(lock: HeldFacts, detail: string) {
    const text = `INSERT INTO ${this.h} (${HISTORY_COLUMNS})
          VALUES ($1, $2::bigint, $3, $4, $5, to_timestamp($6::float8 / 1000), ${NOW_MS}, 'lost', $7) ON CONFLICT DO NOTHING`;
    const values = [lock.lockId, lock.fencingToken, lock.holder, this.hostname, this.pid, lock.acquiredAt.getTime(), detail];
    await this.recordBestEffort(() => this.run('recordLoss', this.named('record_loss', text, values)));
  }

  async history(lockId: string, limit: number) {
    // The key's prefix (lock_id, fencing_token) serves this: newest acquisition first.
    const text = `SELECT lock_id, fencing_token::text AS fencing_token, holder, hostname, pid, ${ms('acquired_at')} AS acquired_ms,
            ${ms('ended_at')} AS ended_ms, outcome, detail
          FROM ${this.h} WHERE lock_id = $1 ORDER BY fencing_token DESC LIMIT $2`;
    return parseHistoryRows(await this.run('history', this.named('history', text, [lockId, limit])));
  }

  async purgeHistory(days: number) {
    const text = `WITH d AS (DELETE FROM ${this.h} WHERE ended_at < now() - ${secs('$1')} * 86400 RETURNING 1) SELECT count(*)::int AS n FROM d`;
    return parseCount(await this.run('purgeHistory', this.named('purge_history', text, [days])));
  }

  async renew(locks: readonly LeaseKey[]) {
    // One statement renews every lock this DbMutex holds; never past the TTL deadline, never
    // resurrecting a lease that already ran out.
    const text = `UPDATE ${this.t} AS l SET heartbeat_at = now(),
            expires_at = LEAST(now() + l.lease_seconds * interval '1 second', l.deadline_at)
          FROM unnest($1::text[], $2::uuid[]) AS h(lock_id, owner_token)
          WHERE l.lock_id = h.lock_id AND l.owner_token = h.owner_token AND l.lease_seconds IS NOT NULL
            AND l.expires_at > now()
          RETURNING l.owner_token::text AS owner_token`;
    return parseOwnerTokens(await this.run('renew', this.named('renew', text, pairs(locks))));
  }

  async classify(locks: readonly LeaseKey[]) {
    const text = `SELECT l.owner_token::text AS owner_token FROM ${this.t} AS l
          JOIN unnest($1::text[], $2::uuid[]) AS h(lock_id, owner_token) ON l.lock_id = h.lock_id AND l.owner_token = h.owner_token
          WHERE l.expires_at <= now()`;
    return parseOwnerTokens(await this.run('classify', this.named('classify', text, pairs(locks))));
  }

  async extend({ lockId, ownerToken }: LeaseKey, seconds: number | null) {
    const text = `UPDATE ${this.t} SET heartbeat_at = now(), deadline_at = now() + ${secs('$3')},
            expires_at = CASE WHEN lease_seconds IS NULL THEN now() + ${secs('$3')}
              ELSE LEAST(now() + lease_seconds * interval '1 second', now() + ${secs('$3')}) END
          WHERE lock_id = $1 AND owner_token = $2::uuid AND (expires_at IS NULL OR expires_at > now())
          RETURNING ${ms('expires_at')} AS expires_ms, ${ms('deadline_at')} AS deadline_ms`;
    return parseExtend(await this.run('extend', this.named('extend', text, [lockId, ownerToken, seconds])));
  }

  async inspect(lockId: string) {
    const text = `SELECT ${LOCK_COLUMNS}, ${STALE} AS stale FROM ${this.t} WHERE lock_id = $1`;
    return parseLockRows(await this.run('inspect', this.named('inspect', text, [lockId])))[0] ?? null;
  }

  async list(p: ListParams) {
    // Keyset pagination on (acquired_at, lock_id) stays fast at any depth, unlike OFFSET.
    const text = `SELECT ${LOCK_COLUMNS}, ${STALE} AS stale FROM ${this.t}
          WHERE ($1::text IS NULL OR strpos(lock_id, $1) > 0)
            AND (NOT $2::boolean OR ${STALE})
            AND ($4::float8 IS NULL OR (acquired_at, lock_id) > (to_timestamp($4::float8 / 1000), $5::text))
          ORDER BY acquired_at, lock_id LIMIT $3`;
    const after = p.after ? [p.after.acquiredAt.getTime(), p.after.lockId] : [null, null];
    return parseLockRows(await this.run('list', this.named('list', text, [p.filter, p.staleOnly, p.limit, ...after])));
  }

  async counts(filter: string | null) {
    const text = `SELECT count(*)::int AS total, count(*) FILTER (WHERE ${STALE})::int AS stale FROM ${this.t}
          WHERE ($1::text IS NULL OR strpos(lock_id, $1) > 0)`;
    return parseCounts(await this.run('counts', this.named('counts', text, [filter])));
  }

  /** One statement: a data-modifying WITH deletes, records and notifies at once. */
  protected async releaseAudited(where: ReleaseWhere, action: string, audit: Audit, operation: StoreOperation) {
    const { t, ev, channel } = this;
    const select = (condition: string) => `WITH d AS (DELETE FROM ${t} WHERE ${condition} RETURNING *),
    e AS (INSERT INTO ${ev} (action, lock_id, fencing_token, holder, hostname, pid, acquired_at, age_seconds, operator, reason, created_at)
      SELECT '${action}', d.lock_id, d.fencing_token, d.holder, d.hostname, d.pid, d.acquired_at,
        extract(epoch from now() - d.acquired_at)::float8, $1, $2, now() FROM d
      RETURNING *)
    SELECT e.id::text AS id, e.action, e.lock_id, e.fencing_token::text AS fencing_token, e.holder, e.hostname, e.pid,
      ${ms('e.acquired_at')} AS acquired_ms, e.age_seconds, e.operator, e.reason, ${ms('e.created_at')} AS created_ms,
      pg_notify('${channel}', d.owner_token::text || d.lock_id) AS notified
    FROM e JOIN d ON d.lock_id = e.lock_id`;
    const rows =
      where.kind === 'one'
        ? await this.run(
            operation,
            this.named(`force_${action}`, select(`lock_id = $3 AND ($4::bigint IS NULL OR fencing_token = $4::bigint)`), [
              audit.operator,
              audit.reason,
              where.lockId,
              where.fencingToken,
            ]),
          )
        : await this.run(
            operation,
            this.named(`${where.kind}_${action}`, select(where.kind === 'stale' ? STALE : 'expires_at <= now()'), [audit.operator, audit.reason]),
          );
    return parseEventRows(rows);
  }

  async events(limit: number, lockId: string | null) {
    const ev = this.ev;
    const text = `SELECT id::text AS id, action, lock_id, fencing_token::text AS fencing_token, holder, hostname, pid,
            ${ms('acquired_at')} AS acquired_ms, age_seconds, operator, reason, ${ms('created_at')} AS created_ms
          FROM ${ev} WHERE ($2::text IS NULL OR lock_id = $2) ORDER BY ${ev}.id DESC LIMIT $1`;
    return parseEventRows(await this.run('events', this.named('events', text, [limit, lockId])));
  }

  async fencingFloor(floor: number) {
    await this.transaction('fencingFloor', [
      // nextval() is not transactional, so a read-then-setval could move the sequence back
      // below tokens that concurrent acquisitions drew in between. Every draw happens inside an
      // acquire statement, which holds ROW EXCLUSIVE on the lock table until it commits: this
      // lock waits for those in flight and holds off new ones (and other floors) until commit.
      this.named('floor_lock', `LOCK TABLE ${this.t} IN SHARE ROW EXCLUSIVE MODE`, []),
      // The highest token handed out is last_value once is_called, last_value - 1 before.
      this.named(
        'floor',
        `SELECT setval(${this.seq}, $1::bigint, true) AS floor FROM ${q(sequenceName(this.names))}
            WHERE (CASE WHEN is_called THEN last_value ELSE last_value - 1 END) < $1::bigint`,
        [floor],
      ),
    ]);
  }
}

function semaphoreFunctionName(names: SchemaNames): string {
  return `${names.tableName}_semaphore_acquire`;
}

const SEMAPHORE_FUNCTION_ARGS = '(text, uuid, text, text, integer, float8, float8, integer)';

/**
 * The semaphore acquisition, as a function so that it stays one round trip and still decides on
 * fresh data. A single statement reads its snapshot when it starts, before it waits for the
 * semaphore's advisory lock: permits taken by the acquisitions it waited for would be invisible to
 * it, and an acquirer with another limit could then be admitted next to them (over-admission). In a
 * VOLATILE SQL function each statement takes a new snapshot (READ COMMITTED), so the second one,
 * which runs once the claim is ours, sees every permit committed before. The claim is held until
 * commit, so acquisitions of one semaphore id happen one after another: the fencing token, drawn
 * under it, increases with every permit of that semaphore (the sequence is also the lock's, so tokens
 * increase across the whole table). The times are the database clock once the claim is ours, so
 * acquisition times are in the same order as the tokens.
 *
 * The lowest free permit (no row, or an expired one) is taken; the PRIMARY KEY on lock_id keeps every
 * permit to one holder even against a lock acquired under that very row key. Refused: the live
 * permits' count, the first one to run out, and whether the limit differs.
 */
/**
 * Wraps DDL so that concurrent runs take turns. Several instances of an app often start together and
 * each runs sync(); two concurrent CREATE OR REPLACE FUNCTION of one name fail with "tuple
 * concurrently updated". A transaction-scoped advisory lock taken in the same statement serializes
 * them (and a migration running alongside), on a direct connection or through a pooler alike.
 */
function serializedDdl(names: SchemaNames, ddl: string): string {
  const key = int32Hash(`sequelize-db-mutex-schema:${names.tableName}`);
  return `DO $db_mutex_ddl$ BEGIN PERFORM pg_advisory_xact_lock(${key}); EXECUTE $db_mutex_fn$${ddl}$db_mutex_fn$; END $db_mutex_ddl$`;
}

function semaphoreFunctionSql(names: SchemaNames): string {
  const t = q(names.tableName);
  const seq = `'${q(sequenceName(names))}'`;
  const advisoryClass = int32Hash(`sequelize-db-mutex-semaphore:${names.tableName}`);
  const live = (a: string) => `(${a}.expires_at IS NULL OR ${a}.expires_at > at.now)`;
  const secs = (p: string) => `(${p} * interval '1 second')`;
  return `CREATE OR REPLACE FUNCTION ${q(semaphoreFunctionName(names))}(p_id text, p_owner uuid, p_holder text,
    p_hostname text, p_pid integer, p_ttl float8, p_lease float8, p_limit integer)
  RETURNS TABLE (outcome text, fencing_token text, acquired_ms float8, expires_ms float8, permit integer, used integer,
    current_limit integer, holder text)
  LANGUAGE sql VOLATILE AS $db_mutex$
  SELECT pg_advisory_xact_lock(${advisoryClass}, hashtext(p_id));
  WITH at AS (SELECT date_trunc('milliseconds', clock_timestamp()) AS now),
    live AS (SELECT l.permit_limit, l.holder, l.expires_at FROM ${t} AS l, at
      WHERE l.semaphore_id = p_id AND l.kind = 'semaphore' AND ${live('l')}),
    mismatch AS (SELECT live.permit_limit FROM live WHERE live.permit_limit IS DISTINCT FROM p_limit LIMIT 1),
    free AS (SELECT p_id || '/permit/' || n AS lock_id, n FROM generate_series(0, p_limit - 1) AS n, at
      WHERE NOT EXISTS (SELECT 1 FROM mismatch)
        AND NOT EXISTS (SELECT 1 FROM ${t} AS o WHERE o.lock_id = p_id || '/permit/' || n AND ${live('o')})
      ORDER BY n LIMIT 1),
    won AS (INSERT INTO ${t} AS l (${ACQUIRE_COLUMNS}, kind, semaphore_id, permit, permit_limit)
      SELECT free.lock_id, p_owner, nextval(${seq}), p_holder, p_hostname, p_pid, at.now,
        LEAST(at.now + ${secs('p_lease')}, at.now + ${secs('p_ttl')}), at.now + ${secs('p_ttl')}, at.now, p_lease,
        'semaphore', p_id, free.n, p_limit
      FROM free, at
      ON CONFLICT (lock_id) DO UPDATE SET (${ACQUIRE_COLUMNS}, kind, semaphore_id, permit, permit_limit) =
        (EXCLUDED.lock_id, EXCLUDED.owner_token, EXCLUDED.fencing_token, EXCLUDED.holder, EXCLUDED.hostname, EXCLUDED.pid,
          EXCLUDED.acquired_at, EXCLUDED.expires_at, EXCLUDED.deadline_at, EXCLUDED.heartbeat_at, EXCLUDED.lease_seconds,
          EXCLUDED.kind, EXCLUDED.semaphore_id, EXCLUDED.permit, EXCLUDED.permit_limit)
        WHERE l.expires_at <= (SELECT at.now FROM at)
      RETURNING l.fencing_token, l.acquired_at, l.expires_at, l.permit)
  SELECT 'won', won.fencing_token::text, ${ms('won.acquired_at')}, ${ms('won.expires_at')}, won.permit, NULL::integer, p_limit, NULL::text
    FROM won
  UNION ALL
  SELECT CASE WHEN EXISTS (SELECT 1 FROM mismatch) THEN 'mismatch' WHEN EXISTS (SELECT 1 FROM free) THEN 'raced' ELSE 'full' END,
    NULL::text, NULL::float8, (SELECT ${ms('live.expires_at')} FROM live ORDER BY live.expires_at NULLS LAST LIMIT 1), NULL::integer,
    (SELECT count(*)::integer FROM live), COALESCE((SELECT mismatch.permit_limit FROM mismatch), p_limit),
    (SELECT live.holder FROM live ORDER BY live.expires_at NULLS LAST LIMIT 1)
  WHERE NOT EXISTS (SELECT 1 FROM won)
  $db_mutex$`;
}

/** FNV-1a, folded to a signed 32-bit integer (the type of an advisory lock's first key). */
function int32Hash(text: string): number {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(text, 'utf8')) {
    h ^= byte;
    h = Math.imul(h, 0x01000193);
  }
  return h | 0;
}

function sequenceName(names: SchemaNames): string {
  return `${names.tableName}_fencing_seq`;
}

function channelName(names: SchemaNames): string {
  return `db_mutex_${names.tableName}`;
}

/** First key of the advisory locks by which processes mark the lock ids they wait for (one namespace per lock table). */
function waitClassOf(names: SchemaNames): number {
  return int32Hash(`sequelize-db-mutex:waiting:${names.tableName}`);
}

const UUID_LENGTH = 36;

export const postgresDialect: Dialect = {
  name: 'postgres',
  driver,
  notifies: true,
  schemaExtrasSql: (names) => [`CREATE SEQUENCE IF NOT EXISTS ${q(sequenceName(names))} AS bigint`],
  dropExtrasSql: (names) => [`DROP SEQUENCE IF EXISTS ${q(sequenceName(names))}`],
  kindExtrasSql: (names) => [serializedDdl(names, semaphoreFunctionSql(names))],
  dropKindExtrasSql: (names) => [`DROP FUNCTION IF EXISTS ${q(semaphoreFunctionName(names))}${SEMAPHORE_FUNCTION_ARGS}`],
  store: (names, sender, settings, variant) => new PostgresStore(names, sender, settings, variant),
  channel: channelName,
  waiterMarkSql(names) {
    const waitClass = waitClassOf(names);
    // Session-level and shared: any number of processes mark the same id; the mark ends with the
    // LISTEN connection, whose loss also ends the notices it would have brought (and the listener's
    // reconnect wakes every waiter to try again). The try never blocks the LISTEN connection: it fails
    // only while a release of that id is committing, and the waiter then retries at once.
    return {
      mark: `SELECT pg_try_advisory_lock_shared(${waitClass}, hashtext($1)) AS marked`,
      unmark: `SELECT pg_advisory_unlock_shared(${waitClass}, hashtext($1)) AS unmarked`,
    };
  },
  parseNotice(payload) {
    if (payload.length <= UUID_LENGTH) return null;
    return { ownerToken: payload.slice(0, UUID_LENGTH), lockId: payload.slice(UUID_LENGTH) };
  },
};

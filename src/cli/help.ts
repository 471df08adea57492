/** Help texts of the `db-mutex` CLI (kept apart so the command code stays readable). */
import {
  DEFAULT_EVENTS_LIMIT,
  DEFAULT_EVENTS_TABLE_NAME,
  DEFAULT_HISTORY_LIMIT,
  DEFAULT_HISTORY_RETENTION_DAYS,
  DEFAULT_LIST_LIMIT,
  DEFAULT_TABLE_NAME,
  MAX_HISTORY_DAYS,
  MAX_HISTORY_LIMIT,
  MAX_REASON_LENGTH,
} from '../limits';

export const COMMANDS = ['list', 'semaphores', 'release', 'release-stale', 'purge-expired', 'events', 'history', 'purge-history', 'fence-floor'] as const;
export type CommandName = (typeof COMMANDS)[number];

const OPTIONS = `Options for every command:
  --table NAME          lock table (default ${DEFAULT_TABLE_NAME})
  --events-table NAME   audit table (default ${DEFAULT_EVENTS_TABLE_NAME})
  --history-table NAME  history table (default: the lock table's name + _history)
  -h, --help            this help`;

const ENVIRONMENT = `Environment:
  DATABASE_URL          the database, e.g. postgres://user:password@host:5432/app (required)`;

const EXIT = `Exit status: 0 done; 1 nothing done (unknown lock, fencing token mismatch, nothing stale or
expired); 2 usage error, database unreachable, table missing or any other error.`;

const OPERATOR = `  --operator NAME       who does it, recorded in the audit trail (default: $USER@hostname)
  --reason TEXT         why, recorded in the audit trail (at most ${MAX_REASON_LENGTH} characters)`;

export const TOP_HELP = `db-mutex: inspect and free the locks of sequelize-db-mutex from a terminal

Usage: db-mutex <command> [options]

Commands:
  list            locks held now, oldest first, with age and status (active or stale)
  semaphores      counting semaphores: used / limit, and each permit's holder, age, heartbeat, token
  release <id>    force-release one lock; its holder is told it lost the lock (audited)
  release-stale   force-release every stale lock: expired or heartbeat overdue (audited)
  purge-expired   delete every expired lock (audited)
  events          the audit trail of releases and purges, newest first
  history <id>    one lock's finished acquisitions: holder, held for, how each ended; p50/p95/max
  purge-history   delete history entries older than the retention (or --older-than-days)
  fence-floor <n> after a failover: every later fencing token is greater than n

${OPTIONS}
  --version             print the version

${ENVIRONMENT}

Ages and expiries are measured by the database clock, like the dashboard's. Every release and
purge goes through the same audited operation as the dashboard's buttons.

${EXIT}

Run "db-mutex <command> --help" for the options of a command.
`;

export const COMMAND_HELP: Readonly<Record<CommandName, string>> = {
  list: `Usage: db-mutex list [--stale] [--filter TEXT] [--limit N] [--json]

Lists the locks held now (including expired ones nobody has taken over yet), oldest first.
STATUS is "stale" when the lock expired or its heartbeat is overdue (its holder is probably gone).

  --stale               only stale locks
  --filter TEXT         only lock ids containing TEXT (plain text, case-sensitive)
  --limit N             at most N locks (default ${DEFAULT_LIST_LIMIT})
  --json                a JSON array (same fields as the dashboard's JSON API) instead of a table

${OPTIONS}

${ENVIRONMENT}

Exit status: 0 (also when no lock is held); 2 on errors.
`,
  release: `Usage: db-mutex release <lockId> [--fencing-token N] [--reason TEXT] [--operator NAME] [--json]

Force-releases one lock and records it in the audit trail, exactly like the dashboard's Release
button. The holder's lock.signal aborts (at once on PostgreSQL, at its next renewal elsewhere) and
its critical section ends with DbMutexTimeoutError.
A lock id starting with "-" goes after "--": db-mutex release -- -odd-id

  --fencing-token N     release only this acquisition: if the lock was re-acquired meanwhile (its
                        token changed), nothing is released and the exit status is 1
${OPERATOR}
  --json                print the outcome as JSON

${OPTIONS}

${ENVIRONMENT}

${EXIT}
`,
  'release-stale': `Usage: db-mutex release-stale [--reason TEXT] [--operator NAME] [--json]

Force-releases every stale lock (expired, or heartbeat overdue), each recorded in the audit trail.
See them first with: db-mutex list --stale

${OPERATOR}
  --json                print the released locks' audit entries as JSON

${OPTIONS}

${ENVIRONMENT}

${EXIT}
`,
  'purge-expired': `Usage: db-mutex purge-expired [--reason TEXT] [--operator NAME] [--json]

Deletes every expired lock (nobody is protected by it any more), each recorded in the audit trail.
Expired locks are also taken over by the next acquirer, so this is only housekeeping.

${OPERATOR}
  --json                print the purged locks' audit entries as JSON

${OPTIONS}

${ENVIRONMENT}

${EXIT}
`,
  semaphores: `Usage: db-mutex semaphores [--filter TEXT] [--limit N] [--json]

Lists the counting semaphores whose permits are held (or expired and not yet taken over): one entry
per semaphore with USED / LIMIT, then one line per permit with its holder, age, heartbeat and fencing
token. Release one holder's permit with: db-mutex release <permit key> --fencing-token N (audited).

  --filter TEXT         only semaphore ids containing TEXT (plain text, case-sensitive)
  --limit N             at most N permits in all (default 1000)
  --json                a JSON array of {semaphoreId, used, limit, holders} instead of a table

${OPTIONS}

${ENVIRONMENT}

Exit status: 0 (also when no permit is held); 2 on errors.
`,
  events: `Usage: db-mutex events [--lock ID] [--limit N] [--json]

The audit trail, newest first: force-releases, release-stale and purge-expired, by whom and why.

  --lock ID             only entries of this lock id
  --limit N             at most N entries (default ${DEFAULT_EVENTS_LIMIT})
  --json                a JSON array instead of a table

${OPTIONS}

${ENVIRONMENT}

Exit status: 0 (also when the trail is empty); 2 on errors.
`,
  history: `Usage: db-mutex history <lockId> [--limit N] [--json]

One lock's finished acquisitions, newest first: when each ended, how (released, lost,
force-released, expired), how long it was held, its fencing token, holder and process, and the
detail (why it was lost; who force-released it and why). Then the counts by outcome and the hold
times' p50, p95 and max over the entries shown. The first line says who holds the lock now.
The same data as the dashboard's lock page and its JSON route.
A lock id starting with "-" goes after "--": db-mutex history -- -odd-id

  --limit N             at most N entries (default ${DEFAULT_HISTORY_LIMIT}, at most ${MAX_HISTORY_LIMIT})
  --json                {"lockId", "current", "summary", "entries"}, as the dashboard's
                        api/locks/<id>/history answers, instead of a table

${OPTIONS}

${ENVIRONMENT}

Exit status: 0 (also when the lock has no history); 2 on errors.
`,
  'purge-history': `Usage: db-mutex purge-history [--older-than-days N] [--json]

Deletes the history entries of every lock that ended more than N days ago. Apps already prune
their history automatically (historyRetentionDays, default ${DEFAULT_HISTORY_RETENTION_DAYS}); this is for a one-off cleanup,
or for a database no app prunes any more. The audit trail is left alone: force-releases and the
other operator actions stay in each lock's history, as long as the audit trail keeps them.

  --older-than-days N   the age in days, fractions allowed (0.5 = 12 hours), at most ${MAX_HISTORY_DAYS}
                        (default ${DEFAULT_HISTORY_RETENTION_DAYS}, the default retention)
  --json                print {"deleted": count, "olderThanDays": N}

${OPTIONS}

${ENVIRONMENT}

Exit status: 0 (also when nothing was old enough); 2 on errors.
`,
  'fence-floor': `Usage: db-mutex fence-floor <n> [--json]

After a failover to a standby that may have missed the newest fencing tokens (asynchronous
replication), makes every fencing token handed out from now on greater than n, for every lock id of
the table. Pass the highest token your protected resources have seen, or any bound above it. Never
lowers the tokens: a smaller n, or the same n twice, changes nothing. Safe while apps acquire.
Not recorded in the audit trail (it releases nothing).

  --json                print {"status":"done","floor":n}

${OPTIONS}

${ENVIRONMENT}

Exit status: 0 done (also when the tokens were already past n); 2 usage or database error.
`,
};

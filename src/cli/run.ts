/**
 * The `db-mutex` operator CLI: argument parsing, the five commands, and the exit-status contract
 * (0 done, 1 nothing done, 2 usage or database error). Everything that changes data goes through the
 * same audited DbMutex operations the dashboard uses, so the audit trail cannot tell them apart except
 * by operator name.
 */
import { readFileSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Options, Sequelize } from 'sequelize';
import { eventJson, eventView, formatUtcBare, lockJson, lockView } from '../admin/format';
import { describeEnding, formatHeld, lockHistoryJson } from '../admin/history-format';
import { semaphoreJson, semaphoreView } from '../admin/semaphore-format';
import type { DbMutex } from '../db-mutex';
import type { EventRow } from '../dialects/types';
import { HISTORY_OUTCOMES, summarizeHistory } from '../history';
import { checkInput, checkInputOf, InputError, type InputField } from '../input-error';
import {
  DEFAULT_EVENTS_LIMIT,
  DEFAULT_EVENTS_TABLE_NAME,
  DEFAULT_HISTORY_LIMIT,
  DEFAULT_LIST_LIMIT,
  DEFAULT_TABLE_NAME,
  MAX_EVENTS_LIMIT,
  MAX_HISTORY_DAYS,
  MAX_HISTORY_LIMIT,
  MAX_LIST_LIMIT,
} from '../limits';
import { validateDays, validateHolder, validateLockId, validateTableName } from '../options';
import { DatabaseUrlError, parseDatabaseUrl, sequelizeOptions, type ParsedDatabaseUrl } from './database-url';
import { printable, printableJson } from '../printable';
import { describeFailure, NothingDone, SetupError, UsageError } from './failure';
import { COMMAND_HELP, COMMANDS, TOP_HELP, type CommandName } from './help';
import { renderTable } from './table';

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: NodeJS.ProcessEnv;
}

type OptionSpec = { type: 'string' | 'boolean'; short?: string };

const GLOBAL_OPTIONS = {
  table: { type: 'string' },
  'events-table': { type: 'string' },
  'history-table': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} satisfies Record<string, OptionSpec>;

const AUDIT_OPTIONS = {
  reason: { type: 'string' },
  operator: { type: 'string' },
  json: { type: 'boolean' },
} satisfies Record<string, OptionSpec>;

const COMMAND_OPTIONS: Readonly<Record<CommandName, Record<string, OptionSpec>>> = {
  list: { stale: { type: 'boolean' }, filter: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' } },
  semaphores: { filter: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' } },
  release: { 'fencing-token': { type: 'string' }, ...AUDIT_OPTIONS },
  'release-stale': AUDIT_OPTIONS,
  'purge-expired': AUDIT_OPTIONS,
  events: { lock: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' } },
  'fence-floor': { json: { type: 'boolean' } },
  history: { limit: { type: 'string' }, json: { type: 'boolean' } },
  'purge-history': { 'older-than-days': { type: 'string' }, json: { type: 'boolean' } },
};

/** The one positional argument a command takes: what its usage calls it, and the field it gives. */
const POSITIONAL: Partial<Record<CommandName, { label: string; field: InputField }>> = {
  release: { label: 'the lock id', field: 'lockId' },
  history: { label: 'the lock id', field: 'lockId' },
  'fence-floor': { label: 'the floor <n>', field: 'floor' },
};

type Values = Record<string, string | boolean | undefined>;

interface Parsed {
  command: CommandName;
  values: Values;
  positionals: string[];
}

/** Runs one command line and resolves to its exit status. Never throws. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let command: CommandName | null = null;
  let jsonOutput = false;
  try {
    const first = findCommand(argv);
    if (first === null) {
      if (argv.includes('--version')) {
        io.stdout(`${version()}\n`);
        return 0;
      }
      if (argv.includes('--help') || argv.includes('-h') || argv.includes('help')) {
        io.stdout(TOP_HELP);
        return 0;
      }
      io.stderr(TOP_HELP);
      return 2;
    }
    if (first.name === 'help') {
      const topic = argv[first.index + 1];
      io.stdout(topic && isCommand(topic) ? COMMAND_HELP[topic] : TOP_HELP);
      return 0;
    }
    if (!isCommand(first.name)) {
      io.stderr(`db-mutex: unknown command "${printable(first.name)}" (commands: ${COMMANDS.join(', ')}; see db-mutex --help)\n`);
      return 2;
    }
    command = first.name;
    const parsed = parse(command, [...argv.slice(0, first.index), ...argv.slice(first.index + 1)]);
    if (parsed.values.help === true) {
      io.stdout(COMMAND_HELP[command]);
      return 0;
    }
    jsonOutput = parsed.values.json === true;
    checkPositionals(parsed);
    return await execute(parsed, io);
  } catch (error) {
    const where = command ? `db-mutex ${command}` : 'db-mutex';
    if (error instanceof UsageError || error instanceof InputError) {
      io.stderr(`${where}: ${printable(error.message)} (see ${where} --help)\n`);
      // With --json, refused input is also an error object naming the field, as the dashboard's API answers it.
      if (error instanceof InputError && jsonOutput) io.stdout(json(error.toJSON()));
    } else if (error instanceof SetupError) {
      io.stderr(`${where}: ${printable(error.message)}\n`);
    } else {
      io.stderr(`${where}: error: ${printable(error instanceof Error ? error.message : String(error))}\n`);
    }
    return 2;
  }
}

function isCommand(name: string): name is CommandName {
  return (COMMANDS as readonly string[]).includes(name);
}

/** The first argument that is neither an option nor the value of a global string option. */
function findCommand(argv: readonly string[]): { name: string; index: number } | null {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') return null;
    if (arg === '--table' || arg === '--events-table' || arg === '--history-table') {
      i++;
      continue;
    }
    if (!arg.startsWith('-')) return { name: arg, index: i };
  }
  return null;
}

function parse(command: CommandName, args: string[]): Parsed {
  try {
    const { values, positionals } = parseArgs({
      args,
      options: { ...GLOBAL_OPTIONS, ...COMMAND_OPTIONS[command] },
      allowPositionals: true,
      strict: true,
    });
    return { command, values: values, positionals };
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(parseArgsMessage(error as Error & { code?: string }));
  }
}

/** Exactly the positional argument the command takes (none for most). */
function checkPositionals({ command, positionals }: Parsed): void {
  const positional = POSITIONAL[command];
  const expected = positional ? 1 : 0;
  if (positional && positionals.length < expected) throw new InputError(positional.field, `missing ${positional.label}`);
  if (positionals.length > expected) throw new UsageError(`unexpected argument "${positionals[expected]}"`);
}

/** parseArgs explains itself over several lines; the contract is one line. */
function parseArgsMessage(error: Error & { code?: string }): string {
  const option = /'(-[^']*)'/.exec(error.message)?.[1];
  if (error.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && option) {
    return `unknown option ${option} (a lock id starting with "-" goes after "--")`;
  }
  if (error.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && option && error.message.includes('ambiguous')) {
    return `${option} needs a value; for a value starting with "-" write ${option}=VALUE`;
  }
  return error.message.replace(/\s*\n\s*/g, ' ');
}

function stringOption(values: Values, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

function positiveInteger(values: Values, name: string, field: InputField, max: number): number | undefined {
  const raw = stringOption(values, name);
  if (raw === undefined) return undefined;
  const n = /^[0-9]+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > max) {
    throw new InputError(field, `--${name} must be a whole number from 1 to ${max}, got "${raw}"`);
  }
  return n;
}

/** `$USER@hostname`: who ran the command, as the audit trail will show it. */
export function defaultOperator(env: NodeJS.ProcessEnv): string {
  let user: string | undefined;
  try {
    user = userInfo().username;
  } catch {
    // No passwd entry (some containers): fall back to the environment.
  }
  user = user || env.USER || env.LOGNAME || 'unknown';
  return `${user}@${hostname()}`;
}

/**
 * Input checks that need no database, so a bad command line never opens a connection. The library's own
 * validators (the same the dashboard relies on) name the parameter; `checkInput` names the field.
 */
function validateInputs(parsed: Parsed, io: CliIo) {
  const { values } = parsed;
  const takesLockId = parsed.command === 'release' || parsed.command === 'history';
  const lockId = takesLockId ? checkInput('lockId', () => validateLockId(parsed.positionals[0], 'lockId')) : undefined;
  const eventsLock = stringOption(values, 'lock');
  if (eventsLock !== undefined) checkInput('lockId', () => validateLockId(eventsLock, '--lock'));
  const operator = checkInput('operator', () => validateHolder(stringOption(values, 'operator') ?? defaultOperator(io.env), '--operator'));
  if (operator.trim() === '') throw new InputError('operator', '--operator must not be empty');
  const floorArg = parsed.command === 'fence-floor' ? parsed.positionals[0]! : undefined;
  const floor = floorArg === undefined ? undefined : /^[0-9]+$/.test(floorArg) ? Number(floorArg) : NaN;
  if (floor !== undefined && !Number.isSafeInteger(floor)) {
    throw new InputError('floor', `the floor must be a whole number from 0 to ${Number.MAX_SAFE_INTEGER}, got "${printable(floorArg!)}"`);
  }
  return {
    lockId,
    floor,
    operator,
    fencingToken: positiveInteger(values, 'fencing-token', 'fencingToken', Number.MAX_SAFE_INTEGER),
    limit: positiveInteger(values, 'limit', 'limit', LIMIT_MAX[parsed.command] ?? MAX_LIST_LIMIT),
    olderThanDays: days(values, 'older-than-days'),
    reason: stringOption(values, 'reason') ?? null,
  };
}

/** The largest --limit of the commands whose limit is not a lock listing's. */
const LIMIT_MAX: Partial<Record<CommandName, number>> = { events: MAX_EVENTS_LIMIT, history: MAX_HISTORY_LIMIT };

/**
 * A number of days: plain decimal digits, a fraction allowed ("0.5"), so that "1e3" or "Infinity" never
 * pass as numbers; then the library's own range check, the one purgeHistory() applies.
 */
function days(values: Values, name: string): number | undefined {
  const raw = stringOption(values, name);
  if (raw === undefined) return undefined;
  if (!/^[0-9]{1,9}(\.[0-9]{1,9})?$/.test(raw)) {
    throw new InputError('olderThanDays', `--${name} must be a number of days above 0 and at most ${MAX_HISTORY_DAYS}, got "${printable(raw)}"`);
  }
  return checkInput('olderThanDays', () => validateDays(Number(raw), `--${name}`));
}

async function execute(parsed: Parsed, io: CliIo): Promise<number> {
  const inputs = validateInputs(parsed, io);
  const url = io.env.DATABASE_URL;
  if (!url) throw new SetupError('DATABASE_URL is not set (e.g. postgres://user:password@host:5432/app)');
  const tableName = stringOption(parsed.values, 'table') ?? DEFAULT_TABLE_NAME;
  const eventsTableName = stringOption(parsed.values, 'events-table') ?? DEFAULT_EVENTS_TABLE_NAME;
  const historyTableName = stringOption(parsed.values, 'history-table');

  let database: ParsedDatabaseUrl;
  let options: Options;
  try {
    database = parseDatabaseUrl(url);
    options = sequelizeOptions(
      database,
      {
        logging: false,
        // One operator command needs one connection; fail fast instead of the pool's 60 s default.
        pool: { max: 2, min: 0, acquire: 20_000, idle: 1000 },
      },
      connectOptions(database.dialect),
    );
  } catch (error) {
    if (error instanceof DatabaseUrlError) throw new SetupError(error.message);
    throw error;
  }

  // Loaded only now, so --help and usage errors answer at once instead of after loading Sequelize.
  const [{ Sequelize: SequelizeClass }, { initDbMutex }] = await Promise.all([import('sequelize'), import('../default-mutex')]);
  let sequelize: Sequelize;
  try {
    // Options, never the URL string: Sequelize's own URL parsing can print the password (DEP0170).
    sequelize = new SequelizeClass(options);
  } catch (error) {
    // Sequelize's messages here are about the dialect's driver package, never the credentials.
    throw new SetupError(`DATABASE_URL is not usable: ${(error as Error).message}`);
  }
  let mutex: DbMutex | null = null;
  try {
    checkInput('tableName', () => validateTableName(tableName, 'tableName'));
    checkInput('eventsTableName', () => validateTableName(eventsTableName, 'eventsTableName'));
    if (historyTableName !== undefined) checkInput('historyTableName', () => validateTableName(historyTableName, 'historyTableName'));
    mutex = initDbMutex(sequelize, {
        setDefault: false,
        tableName,
        eventsTableName,
        // Unset, it follows --table (`<table>_history`), as the DbMutex's own default does.
        ...(historyTableName === undefined ? {} : { historyTableName }),
        // The CLI never acquires: a stray DB_MUTEX_TTL_SECONDS in the environment must not block it.
        ttlSeconds: null,
        // A one-shot process runs each statement once or twice: preparing it buys nothing, and unnamed
        // statements work through any pooler (PgBouncer in transaction mode included).
        preparedStatements: false,
    });
    const run = COMMAND_RUNNERS[parsed.command];
    return await run(mutex, parsed, inputs, io);
  } catch (error) {
    if (error instanceof UsageError || error instanceof SetupError || error instanceof InputError) throw error;
    if (error instanceof NothingDone) {
      io.stderr(`db-mutex ${parsed.command}: ${printable(error.message)}\n`);
      return 1;
    }
    io.stderr(`db-mutex ${parsed.command}: ${printable(describeFailure(error, { display: database.display, tableName, eventsTableName }))}\n`);
    return 2;
  } finally {
    await mutex?.close().catch(() => undefined);
    await sequelize.close().catch(() => undefined);
  }
}

/** A connect timeout in each driver's own option name (an unknown option makes some drivers warn). */
function connectOptions(dialect: ParsedDatabaseUrl['dialect']): Record<string, unknown> {
  if (dialect === 'postgres') return { connectionTimeoutMillis: 10_000, application_name: 'db-mutex-cli' };
  if (dialect === 'mariadb' || dialect === 'mysql') return { connectTimeout: 10_000 };
  return {};
}

type Inputs = ReturnType<typeof validateInputs>;
type Runner = (mutex: DbMutex, parsed: Parsed, inputs: Inputs, io: CliIo) => Promise<number>;

/** Invisible characters in ids, holders and reasons become \u escapes: visible, and parsed back exactly. */
const json = (value: object) => `${printableJson(value, 2)}\n`;
const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

const COMMAND_RUNNERS: Readonly<Record<CommandName, Runner>> = {
  async list(mutex, { values }, { limit }, io) {
    const filter = stringOption(values, 'filter') ?? null;
    const staleOnly = values.stale === true;
    // The filter is the one input the DbMutex checks itself (the limit was checked above).
    const rows = await checkInputOf('filter', mutex.list({ filter, staleOnly, limit: limit ?? DEFAULT_LIST_LIMIT }));
    if (values.json === true) {
      io.stdout(json(rows.map(lockJson)));
      return 0;
    }
    const counts = await mutex.counts(filter);
    const matching = filter ? ` matching "${filter}"` : '';
    if (rows.length === 0) {
      io.stdout(printable(staleOnly ? `No stale locks${matching}.` : `No locks held${matching}.`) + '\n');
      return 0;
    }
    const views = rows.map(lockView);
    io.stdout(
      renderTable(
        [
          { header: 'STATUS' },
          { header: 'AGE', align: 'right' },
          { header: 'EXPIRES' },
          { header: 'HEARTBEAT' },
          { header: 'TOKEN', align: 'right' },
          { header: 'HOLDER', maxWidth: 32 },
          { header: 'PROCESS', maxWidth: 32 },
          { header: 'LOCK ID' },
        ],
        views.map((v) => [v.status, v.age, v.expiresIn, v.heartbeat, String(v.fencingToken), v.holder, `${v.hostname}:${v.pid}`, v.lockId]),
      ),
    );
    const total = staleOnly ? counts.stale : counts.total;
    const summary = staleOnly
      ? `${plural(counts.stale, 'stale lock')}${matching}`
      : `${plural(counts.total, 'lock')}${matching}: ${counts.active} active, ${counts.stale} stale`;
    const shown = rows.length < total ? ` (showing the oldest ${rows.length}; see --limit)` : '';
    io.stdout(`\n${printable(summary)}${shown}. Times are by the database clock.\n`);
    return 0;
  },

  async semaphores(mutex, { values }, { limit }, io) {
    const filter = stringOption(values, 'filter') ?? null;
    const entries = await mutex.semaphores({ filter, limit: limit ?? DEFAULT_LIST_LIMIT });
    if (values.json === true) {
      io.stdout(json(entries.map(semaphoreJson)));
      return 0;
    }
    const matching = filter ? ` matching "${filter}"` : '';
    if (entries.length === 0) {
      io.stdout(printable(`No semaphore permits held${matching}.`) + '\n');
      return 0;
    }
    const rows = entries.flatMap((entry) =>
      semaphoreView(entry).holders.map((h, i) => [
        i === 0 ? entry.semaphoreId : '',
        i === 0 ? `${entry.used} / ${entry.limit}` : '',
        String(h.permit),
        h.status,
        h.age,
        h.heartbeat,
        String(h.fencingToken),
        h.holder,
        h.lockId,
      ]),
    );
    io.stdout(
      renderTable(
        [
          { header: 'SEMAPHORE', maxWidth: 40 },
          { header: 'USED', align: 'right' },
          { header: 'PERMIT', align: 'right' },
          { header: 'STATUS' },
          { header: 'AGE', align: 'right' },
          { header: 'HEARTBEAT' },
          { header: 'TOKEN', align: 'right' },
          { header: 'HOLDER', maxWidth: 32 },
          { header: 'PERMIT KEY' },
        ],
        rows,
      ),
    );
    io.stdout(`\n${printable(`${plural(entries.length, 'semaphore')}${matching}`)}. Times are by the database clock.\n`);
    return 0;
  },

  async release(mutex, { values }, { lockId, fencingToken, operator, reason }, io) {
    // The reason is the one input the DbMutex checks itself (the others were checked above).
    const result = await checkInputOf('reason', mutex.forceRelease({ lockId: lockId!, fencingToken: fencingToken ?? null, operator, reason }));
    if (values.json === true) {
      const out =
        result.status === 'released'
          ? { status: result.status, event: eventJson(result.event) }
          : result.status === 'token-mismatch'
            ? { status: result.status, currentFencingToken: result.currentFencingToken }
            : { status: result.status };
      io.stdout(json(out));
      return result.status === 'released' ? 0 : 1;
    }
    if (result.status === 'not-found') throw new NothingDone(`no lock "${lockId}" is held: nothing released`);
    if (result.status === 'token-mismatch') {
      throw new NothingDone(
        `lock "${lockId}" is held with fencing token ${result.currentFencingToken}, not ${fencingToken} ` +
          `(another acquisition): nothing released`,
      );
    }
    io.stdout(`Released ${describeEvent(result.event)}.\n`);
    return 0;
  },

  async 'release-stale'(mutex, { values }, { operator, reason }, io) {
    const events = await checkInputOf('reason', mutex.releaseStale({ operator, reason }));
    return reportMany(events, values, io, 'Released', 'no stale locks: nothing released');
  },

  async 'purge-expired'(mutex, { values }, { operator, reason }, io) {
    const events = await checkInputOf('reason', mutex.purgeExpired({ operator, reason }));
    return reportMany(events, values, io, 'Purged', 'no expired locks: nothing purged');
  },

  async events(mutex, { values }, { limit }, io) {
    const lockId = stringOption(values, 'lock') ?? null;
    const events = await mutex.events({ limit: limit ?? DEFAULT_EVENTS_LIMIT, lockId });
    if (values.json === true) {
      io.stdout(json(events.map(eventJson)));
      return 0;
    }
    if (events.length === 0) {
      io.stdout(lockId ? `No audit entries for "${printable(lockId)}".\n` : 'No audit entries.\n');
      return 0;
    }
    const views = events.map(eventView);
    const table = renderTable(
      [
        { header: 'TIME' },
        { header: 'ACTION' },
        { header: 'OPERATOR', maxWidth: 32 },
        { header: 'TOKEN', align: 'right' },
        { header: 'HELD FOR', align: 'right' },
        { header: 'HOLDER', maxWidth: 32 },
        { header: 'LOCK ID' },
      ],
      views.map((v) => [v.createdUtc, v.action, v.operator, String(v.fencingToken), v.heldFor, v.holder, v.lockId]),
    ).split('\n');
    // Reasons can be long sentences: each goes on its own line under its entry instead of a column.
    const lines = [table[0]!];
    views.forEach((v, i) => {
      lines.push(table[i + 1]!);
      if (v.reason) lines.push(`    reason: ${printable(v.reason)}`);
    });
    io.stdout(`${lines.join('\n')}\n`);
    return 0;
  },

  async history(mutex, { values }, { lockId, limit }, io) {
    const id = lockId!;
    const [row, entries] = await Promise.all([mutex.inspect(id), mutex.history({ lockId: id, limit: limit ?? DEFAULT_HISTORY_LIMIT })]);
    if (values.json === true) {
      io.stdout(json(lockHistoryJson(id, row, entries)));
      return 0;
    }
    if (row) {
      const v = lockView(row);
      io.stdout(printable(`"${id}" is held now by ${v.holder} on ${v.hostname} pid ${v.pid} (fencing token ${v.fencingToken}, for ${v.age}, ${v.status}).`) + '\n');
    } else {
      io.stdout(printable(`"${id}" is free now.`) + '\n');
    }
    if (entries.length === 0) {
      io.stdout('No finished acquisitions recorded.\n');
      return 0;
    }
    io.stdout(
      '\n' +
        renderTable(
          [
            { header: 'ENDED (UTC)' },
            { header: 'OUTCOME' },
            { header: 'HELD FOR', align: 'right' },
            { header: 'TOKEN', align: 'right' },
            { header: 'HOLDER', maxWidth: 32 },
            { header: 'PROCESS', maxWidth: 32 },
            { header: 'DETAIL' },
          ],
          entries.map((e) => [
            formatUtcBare(e.endedAt),
            e.outcome,
            formatHeld(e.heldMs),
            String(e.fencingToken),
            e.holder,
            `${e.hostname}:${e.pid}`,
            describeEnding(e) || '—',
          ]),
        ),
    );
    const summary = summarizeHistory(entries);
    const outcomes = HISTORY_OUTCOMES.filter((o) => summary.byOutcome[o] > 0).map((o) => `${summary.byOutcome[o]} ${o}`);
    const held = summary.heldMs!;
    const shown = limit === undefined && entries.length >= DEFAULT_HISTORY_LIMIT ? ` (the newest ${entries.length}; see --limit)` : '';
    io.stdout(
      `\n${plural(summary.count, 'acquisition')}${shown}: ${outcomes.join(', ')}. ` +
        `Held p50 ${formatHeld(held.p50)}, p95 ${formatHeld(held.p95)}, max ${formatHeld(held.max)}. Times are by the database clock.\n`,
    );
    return 0;
  },

  async 'purge-history'(mutex, { values }, { olderThanDays }, io) {
    const deleted = await checkInputOf('olderThanDays', mutex.purgeHistory(olderThanDays === undefined ? {} : { olderThanDays }));
    const days = olderThanDays ?? mutex.options.historyRetentionDays;
    if (values.json === true) io.stdout(json({ deleted, olderThanDays: days }));
    else io.stdout(`Deleted ${deleted} history ${deleted === 1 ? 'entry' : 'entries'} that ended more than ${plural(days, 'day')} ago.\n`);
    return 0;
  },

  async 'fence-floor'(mutex, { values }, { floor }, io) {
    await mutex.advanceFencingTokens(floor!);
    if (values.json === true) io.stdout(json({ status: 'done', floor }));
    else io.stdout(`Every fencing token handed out from now on is greater than ${floor}.\n`);
    return 0;
  },
};

function describeEvent(event: EventRow): string {
  const v = eventView(event);
  return printable(
    `"${v.lockId}" (fencing token ${v.fencingToken}, held by ${v.holder} on ${v.hostname} pid ${v.pid} for ${v.heldFor}); ` +
      `audit entry #${v.id} by ${v.operator}`,
  );
}

function reportMany(events: EventRow[], values: Values, io: CliIo, verb: string, nothing: string): number {
  if (values.json === true) {
    io.stdout(json(events.map(eventJson)));
    return events.length > 0 ? 0 : 1;
  }
  if (events.length === 0) throw new NothingDone(nothing);
  for (const event of events) io.stdout(`${verb} ${describeEvent(event)}.\n`);
  io.stdout(`${verb} ${plural(events.length, 'lock')}.\n`);
  return 0;
}

function version(): string {
  // dist/cli/ and src/cli/ are both two levels below the package root.
  const pkg = JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

/**
 * Claim 5: bad input to the public API gets a clear TypeError or RangeError naming the parameter,
 * before any SQL is sent, so nothing is written; awkward but valid input (unicode, SQL
 * meta-characters, path separators, 255 emoji) is stored and found exactly as given; and after a
 * random mix of valid and invalid calls the table holds exactly what the valid calls put there.
 */
import fc from 'fast-check';
import {
  dbMutex,
  DbMutexError,
  DbMutexTimeoutError,
  initDbMutex,
  withDbMutex,
  type DbMutex,
  type DbMutexHeldLock,
} from '../../src';
import { MAX_SECONDS, MAX_WAIT_MS } from '../../src/options';
import { ensureBuilt } from '../helpers/built';
import { TestContext } from '../helpers/db';
import { ChildGroup } from '../helpers/children';
import { note } from '../helpers/report';
import { scaled, timeoutMs } from '../helpers/soak';

type ErrorClass = typeof TypeError | typeof RangeError;

let ctx: TestContext;
let mutex: DbMutex;
/** Every statement any connection of `mutex` sent (Sequelize's logging hook sees lock statements too). */
const statements: string[] = [];
const children = new ChildGroup();

/** What a call did: its value, or its error; and how many statements it sent. */
async function observe(call: () => unknown): Promise<{ value?: unknown; error?: unknown; sql: number }> {
  const before = statements.length;
  try {
    const value = await call();
    return { value, sql: statements.length - before };
  } catch (error) {
    return { error, sql: statements.length - before };
  }
}

async function expectRejected(call: () => unknown, errorClass: ErrorClass | ErrorClass[], mentions?: string): Promise<Error> {
  const r = await observe(call);
  const classes = Array.isArray(errorClass) ? errorClass : [errorClass];
  if (!classes.some((c) => r.error instanceof c)) {
    const got = r.error instanceof Error ? `${r.error.name}: ${r.error.message}` : r.error === undefined ? 'a result' : typeof r.error;
    throw new Error(`expected ${classes.map((c) => c.name).join(' or ')}, got ${got}, from: ${String(call)}`);
  }
  if (mentions) expect((r.error as Error).message).toContain(mentions);
  // Rejected before any SQL: nothing can have been written.
  expect(r.sql).toBe(0);
  return r.error as Error;
}

async function tableLockIds(): Promise<string[]> {
  return (await ctx.sql.lockRows()).map((r) => r.lock_id).sort();
}

// ---- the specification of valid input, written from the documentation, not from the code -------

const NUMBERS: unknown[] = [
  -1, 0, -0, 0.5, 1.5, 1e-9, 30, 1e300, Number.MAX_SAFE_INTEGER, MAX_SECONDS, MAX_SECONDS + 1, MAX_WAIT_MS, MAX_WAIT_MS + 1,
  Infinity, -Infinity, NaN, '10', '', null, true, {}, [], 10n,
];

/** undefined = valid; otherwise the error class the option deserves. */
function secondsError(value: unknown, allowNull: boolean): ErrorClass | undefined {
  if (value === null) return allowNull ? undefined : TypeError;
  if (typeof value !== 'number') return TypeError;
  return Number.isFinite(value) && value > 0 && value <= MAX_SECONDS ? undefined : RangeError;
}
function msError(value: unknown, min: number): ErrorClass | undefined {
  if (typeof value !== 'number') return TypeError;
  return !Number.isNaN(value) && value >= min && value <= MAX_WAIT_MS ? undefined : RangeError;
}

const AWKWARD_VALID_IDS = [
  'ünïcödé-锁-🔒',
  '🔒'.repeat(255),
  'x'.repeat(255),
  "'; DROP TABLE db_mutex_locks; --",
  'a%b',
  'a_b',
  'a\\b',
  '"double" and \'single\' quotes',
  '$1 :name ? @p',
  '../../etc/passwd',
  'C:\\Windows\\System32',
  '/',
  ' ',
  ' padded ',
  'tab\there',
  'new\nline',
  'Lock',
  'lock',
  'é', // U+00E9
  'e\u0301', // e + combining acute: looks the same, is a different lock id
  '\u202Eright-to-left override',
  '\uFEFFbyte order mark',
  'null',
  'undefined',
  '0',
];

const BAD_IDS: [string, unknown, ErrorClass][] = [
  ['undefined', undefined, TypeError],
  ['null', null, TypeError],
  ['a number', 42, TypeError],
  ['an object', {}, TypeError],
  ['an array', ['a'], TypeError],
  ['a symbol', Symbol('id'), TypeError],
  ['a String object', new String('boxed'), TypeError],
  ['the empty string', '', TypeError],
  ['a NUL byte inside', 'a\0b', TypeError],
  ['only a NUL byte', '\0', TypeError],
  ['a lone high surrogate', '\uD800', TypeError],
  ['a lone low surrogate inside', 'a\uDFFFb', TypeError],
  ['256 characters', 'x'.repeat(256), RangeError],
  ['256 emoji', '🔒'.repeat(256), RangeError],
  ['10 kB', 'x'.repeat(10_240), RangeError],
];

describe('bad input', () => {
  beforeAll(async () => {
    ctx = await TestContext.create();
    mutex = await ctx.mutex({ holder: 'fuzz' }, { logging: (sql: string) => void statements.push(sql) });
  });
  afterEach(async () => {
    await children.dispose();
    // A failed test must not leave rows that make the next one fail too.
    await ctx.exec(`DELETE FROM ${ctx.quote(mutex.options.tableName)}`);
  });
  afterAll(() => ctx?.cleanup());

  describe('lock ids', () => {
    it('stores awkward but valid lock ids exactly as given, each one its own lock, and finds them again', async () => {
      const locks: DbMutexHeldLock[] = [];
      for (const id of AWKWARD_VALID_IDS) locks.push(await mutex.acquire(id, { heartbeat: false }));
      expect(await tableLockIds()).toEqual([...AWKWARD_VALID_IDS].sort());
      for (const id of AWKWARD_VALID_IDS) {
        expect((await mutex.inspect(id))?.lockId).toBe(id);
        expect((await mutex.list({ filter: id })).map((r) => r.lockId)).toContain(id);
      }
      // The filter is plain text: % and _ are not wildcards.
      for (const text of ['%', '_', '\\', "'"]) {
        const containing = AWKWARD_VALID_IDS.filter((id) => id.includes(text)).sort();
        expect((await mutex.list({ filter: text })).map((r) => r.lockId).sort()).toEqual(containing);
        expect((await mutex.counts(text)).total).toBe(containing.length);
      }
      // Half released by their holders, half force-released by an operator: the audit trail keeps the exact ids.
      const half = Math.floor(locks.length / 2);
      for (const lock of locks.slice(0, half)) await lock.release();
      for (const lock of locks.slice(half)) {
        expect(await mutex.forceRelease({ lockId: lock.lockId, operator: 'fuzz operator' })).toMatchObject({ status: 'released' });
      }
      const events = await mutex.events({ limit: 1000 });
      expect(events.map((e) => e.lockId).sort()).toEqual(AWKWARD_VALID_IDS.slice(half).sort());
      expect(await tableLockIds()).toEqual([]);
    });

    const entryPoints: [string, (id: unknown) => unknown][] = [
      ['mutex.acquire', (id) => mutex.acquire(id as string)],
      ['mutex.acquire with waitMs', (id) => mutex.acquire(id as string, { waitMs: 1000 })],
      ['withDbMutex', (id) => withDbMutex(id as string, () => fail('the critical section ran'), { mutex })],
      ['dbMutex(id)(fn)()', (id) => dbMutex(id as string, { mutex })(() => fail('the critical section ran'))()],
      ['dbMutex(() => id)(fn)()', (id) => dbMutex(() => id as string, { mutex })(() => fail('the critical section ran'))()],
      ['mutex.inspect', (id) => mutex.inspect(id as string)],
      ['mutex.forceRelease', (id) => mutex.forceRelease({ lockId: id as string, operator: 'op' })],
      ['mutex.list after', (id) => mutex.list({ after: { acquiredAt: new Date(), lockId: id as string } })],
    ];
    for (const [what, value, errorClass] of BAD_IDS) {
      it(`rejects a lock id that is ${what} with a ${errorClass.name} before any SQL, everywhere`, async () => {
        for (const [, call] of entryPoints) await expectRejected(() => call(value), errorClass);
        if (value != null) await expectRejected(() => mutex.events({ lockId: value as string }), errorClass);
        expect(await tableLockIds()).toEqual([]);
      });
    }
  });

  describe('numbers and option objects', () => {
    it('validates every number option of acquire() before any SQL', async () => {
      const fields: [string, (v: unknown) => ErrorClass | undefined][] = [
        ['ttlSeconds', (v) => secondsError(v, true)],
        ['leaseSeconds', (v) => secondsError(v, false)],
        ['waitMs', (v) => msError(v, 0)],
      ];
      let accepted = 0;
      for (const [field, spec] of fields) {
        for (const value of NUMBERS) {
          const expected = spec(value);
          // heartbeat off: no background renewal can add a statement while a rejected call is being counted.
          const call = () => mutex.acquire('numbers', { heartbeat: false, [field]: value });
          if (expected) {
            await expectRejected(call, expected, field);
            continue;
          }
          const r = await observe(call);
          expect(r.error).toBeUndefined();
          accepted++;
          // A TTL of a nanosecond is valid and expires at once: release then reports the expiry.
          await (r.value as DbMutexHeldLock).release().catch((e: unknown) => expect(e).toBeInstanceOf(DbMutexTimeoutError));
        }
      }
      note(`acquire(): ${fields.length * NUMBERS.length} number cases, ${accepted} accepted and handled, the rest rejected before any SQL`);
      expect(await tableLockIds()).toEqual([]);
    });

    it('validates the options of initDbMutex() before any SQL', async () => {
      const sequelize = mutex.sequelize;
      const fields: [string, unknown[], (v: unknown) => ErrorClass | undefined][] = [
        ['ttlSeconds', NUMBERS, (v) => secondsError(v, true)],
        ['leaseSeconds', NUMBERS, (v) => secondsError(v, false)],
        ['waitMs', NUMBERS, (v) => msError(v, 0)],
        ['pollIntervalMs', NUMBERS, (v) => msError(v, 1)],
        ['statementTimeoutMs', NUMBERS, (v) => msError(v, 1)],
        ['heartbeat', [true, false, 'true', 1, null, {}], (v) => (typeof v === 'boolean' ? undefined : TypeError)],
        ['preparedStatements', [true, false, 'false', 0, null, {}], (v) => (typeof v === 'boolean' ? undefined : TypeError)],
        ['listenIdleMs', NUMBERS, (v) => msError(v, 0)],
        ['listenUrl', ['postgres://u@127.0.0.1:1/db', 'postgresql://h/db', null, 'mysql://h/db', 'not a url', '', 5, {}], (v) =>
          v === null || (typeof v === 'string' && /^postgres(ql)?:\/\//.test(v)) ? undefined : TypeError],
        ['holder', ['ok', '', 'a\0b', '\uD800', 'h'.repeat(256), 7, null], (v) =>
          typeof v !== 'string' || v.includes('\0') || !v.isWellFormed() ? TypeError : [...v].length > 255 ? RangeError : undefined],
        ['tableName', ['valid_name', 'x; DROP TABLE y', 'a"b', '', 'ä', 'x'.repeat(41), '1abc', 5, null], (v) =>
          typeof v === 'string' && /^[A-Za-z_][A-Za-z0-9_]{0,39}$/.test(v) ? undefined : TypeError],
        ['eventsTableName', ['events_ok', 'events; --', '../x', 5], (v) =>
          typeof v === 'string' && /^[A-Za-z_][A-Za-z0-9_]{0,39}$/.test(v) ? undefined : TypeError],
      ];
      for (const [field, values, spec] of fields) {
        for (const value of values) {
          // Only a left-out option takes the default: null is checked like any other value, as in
          // acquire() (ttlSeconds: null means "never expires", as documented).
          const expected = spec(value);
          const call = () => initDbMutex(sequelize, { setDefault: false, [field]: value });
          if (expected) {
            await expectRejected(call, expected, field);
          } else {
            const r = await observe(call);
            expect(r.error).toBeUndefined();
            expect(r.sql).toBe(0);
            await (r.value as DbMutex).close();
          }
        }
      }
      for (const options of [null, 'options', 5, true]) await expectRejected(() => initDbMutex(sequelize, options as never), TypeError);
      for (const notSequelize of [null, undefined, {}, 'postgres://x']) {
        await expectRejected(() => initDbMutex(notSequelize as never), TypeError, 'sequelize');
      }
    });

    it('validates extend() before any SQL and keeps the lock as it was', async () => {
      const lock = await mutex.acquire('extend-fuzz', { heartbeat: false, ttlSeconds: 30 });
      const before = await mutex.inspect('extend-fuzz');
      for (const value of NUMBERS) {
        const expected = secondsError(value, true);
        if (expected) await expectRejected(() => lock.extend(value as number), expected, 'seconds');
      }
      expect(await mutex.inspect('extend-fuzz')).toMatchObject({ expiresAt: before!.expiresAt, fencingToken: before!.fencingToken });
      await lock.release();
    });

    it('validates list(), counts() and events() arguments before any SQL', async () => {
      for (const limit of [0, -1, 1.5, NaN, Infinity, 1e10, '5', true, {}]) await expectRejected(() => mutex.list({ limit: limit as number }), [RangeError, TypeError], 'limit');
      for (const filter of [5, {}, ['a'], 'a\0b', '\uD800']) await expectRejected(() => mutex.list({ filter: filter as string }), TypeError, 'filter');
      for (const after of [{ acquiredAt: 'yesterday', lockId: 'a' }, { acquiredAt: new Date(NaN), lockId: 'a' }, { acquiredAt: 0, lockId: 'a' }]) {
        await expectRejected(() => mutex.list({ after: after as never }), TypeError, 'after');
      }
      for (const filter of [5, 'a\0b', {}]) await expectRejected(() => mutex.counts(filter as string), TypeError, 'filter');
      for (const limit of [0, -1, 1.5, 100_001, NaN, '5']) await expectRejected(() => mutex.events({ limit: limit as number }), [RangeError, TypeError], 'limit');
      for (const options of [null, 'all', 5]) await expectRejected(() => mutex.list(options as never), TypeError, 'options');
    });

    it('validates forceRelease(), releaseStale() and purgeExpired() before any SQL and audits nothing', async () => {
      const lock = await mutex.acquire('operator-fuzz', { heartbeat: false });
      const eventsBefore = (await mutex.events({ limit: 1000 })).length;
      for (const fencingToken of [0, -1, 1.5, NaN, Infinity, 2 ** 53, '1', true, {}]) {
        await expectRejected(() => mutex.forceRelease({ lockId: 'operator-fuzz', fencingToken: fencingToken as number, operator: 'op' }), RangeError, 'fencingToken');
      }
      const operators: [unknown, ErrorClass][] = [[undefined, TypeError], [null, TypeError], [5, TypeError], ['a\0b', TypeError], ['o'.repeat(256), RangeError]];
      const reasons: [unknown, ErrorClass][] = [[5, TypeError], [{}, TypeError], ['r\0', TypeError], ['\uDC00', TypeError], ['r'.repeat(1001), RangeError]];
      for (const [operator, errorClass] of operators) {
        await expectRejected(() => mutex.forceRelease({ lockId: 'operator-fuzz', operator: operator as string }), errorClass, 'operator');
        await expectRejected(() => mutex.releaseStale({ operator: operator as string }), errorClass, 'operator');
        await expectRejected(() => mutex.purgeExpired({ operator: operator as string }), errorClass, 'operator');
      }
      for (const [reason, errorClass] of reasons) {
        await expectRejected(() => mutex.forceRelease({ lockId: 'operator-fuzz', operator: 'op', reason: reason as string }), errorClass, 'reason');
        await expectRejected(() => mutex.releaseStale({ operator: 'op', reason: reason as string }), errorClass, 'reason');
      }
      expect((await mutex.events({ limit: 1000 })).length).toBe(eventsBefore);
      expect(lock.isHeld()).toBe(true);
      await lock.release();
    });

    it('rejects a critical section that is not a function before any SQL', async () => {
      for (const fn of [undefined, null, 'fn', 42, {}]) {
        await expectRejected(() => withDbMutex('fn-fuzz', fn as never, { mutex }), TypeError, 'fn');
        await expectRejected(() => dbMutex('fn-fuzz', { mutex })(fn as never), TypeError);
      }
      for (const id of [42, null, {}]) await expectRejected(() => dbMutex(id as never), TypeError, 'lockId');
      for (const options of [null, 'opts', 5]) await expectRejected(() => mutex.acquire('opts-fuzz', options as never), TypeError, 'options');
      for (const signal of ['abort', {}, { aborted: true }]) {
        await expectRejected(() => mutex.acquire('opts-fuzz', { signal: signal as never }), TypeError, 'signal');
      }
      expect(await tableLockIds()).toEqual([]);
    });
  });

  describe('random calls', () => {
    // Strings of arbitrary UTF-16 code units: NUL, lone surrogates, emoji halves, SQL and path characters.
    const codeUnit = fc.oneof(
      { weight: 30, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }) },
      { weight: 10, arbitrary: fc.constantFrom("'", '"', ';', '--', '%', '_', '\\', '/', '..', '🔒', 'é', ' ') },
      { weight: 1, arbitrary: fc.constantFrom('\0', '\uD800', '\uDFFF') },
    );
    const lockIdArb = fc.oneof(
      { weight: 12, arbitrary: fc.string({ unit: codeUnit, minLength: 1, maxLength: 24 }) },
      { weight: 6, arbitrary: fc.constantFrom('same-id-1', 'same-id-2') },
      { weight: 1, arbitrary: fc.string({ unit: codeUnit, minLength: 250, maxLength: 270 }) },
      { weight: 1, arbitrary: fc.constant('x'.repeat(10_240)) },
      { weight: 1, arbitrary: fc.anything() },
    );
    const validSeconds = fc.oneof(fc.constantFrom(0.5, 30, 600), fc.double({ min: 1, max: 1e6, noNaN: true }));
    const anyNumber = fc.oneof(fc.constantFrom(...NUMBERS), fc.double(), fc.integer(), fc.anything());
    const optionsArb = fc.record(
      {
        ttlSeconds: fc.oneof({ weight: 3, arbitrary: validSeconds }, { weight: 1, arbitrary: anyNumber }),
        leaseSeconds: fc.oneof({ weight: 3, arbitrary: validSeconds }, { weight: 1, arbitrary: anyNumber }),
        // Only small waits: a valid huge wait on a held lock would just make the test slow.
        waitMs: fc.oneof(
          { weight: 3, arbitrary: fc.constantFrom(0, 1, 10) },
          { weight: 1, arbitrary: fc.constantFrom(-1, NaN, '5', null, MAX_WAIT_MS + 1, Infinity) },
        ),
        holder: fc.oneof({ weight: 3, arbitrary: fc.string({ unit: codeUnit, maxLength: 20 }) }, { weight: 1, arbitrary: fc.anything() }),
      },
      { requiredKeys: [] },
    );

    function expectedError(id: unknown, options: Record<string, unknown>): ErrorClass[] {
      const errors: ErrorClass[] = [];
      if (typeof id !== 'string' || id === '' || id.includes('\0') || !id.isWellFormed()) errors.push(TypeError);
      else if ([...id].length > 255) errors.push(RangeError);
      const add = (e: ErrorClass | undefined) => e && errors.push(e);
      // An option given as undefined is an option not given.
      if (options.ttlSeconds !== undefined) add(secondsError(options.ttlSeconds, true));
      if (options.leaseSeconds !== undefined) add(secondsError(options.leaseSeconds, false));
      if (options.waitMs !== undefined) add(msError(options.waitMs, 0));
      if (options.holder !== undefined) {
        const h = options.holder;
        add(typeof h !== 'string' || h.includes('\0') || !h.isWellFormed() ? TypeError : [...h].length > 255 ? RangeError : undefined);
      }
      return errors;
    }

    let previous: DbMutexHeldLock[] = [];
    const counts = { calls: 0, kept: 0, refused: 0, rejected: 0 };

    interface Kept {
      lock: DbMutexHeldLock;
      /** Its valid TTL was a few seconds or less: it may run out within the run, and then be taken over. */
      mayExpire: boolean;
    }

    /** One call, checked against the specification; a plain acquire() that succeeds is kept in `held`. */
    async function fuzzCall(id: unknown, options: Record<string, unknown>, viaWithDbMutex: boolean, held: Map<string, Kept>) {
      counts.calls++;
      // heartbeat off: no background renewal of a kept lock can add a statement while a rejected call is being counted.
      const opts = { ...options, heartbeat: false };
      const call = viaWithDbMutex
        ? () => withDbMutex(id as string, (lock) => lock.fencingToken, { mutex, ...opts })
        : () => mutex.acquire(id as string, opts);
      const errors = expectedError(id, options);
      if (errors.length > 0) {
        await expectRejected(call, errors);
        counts.rejected++;
        return;
      }
      const r = await observe(call);
      const ttl = options.ttlSeconds;
      const shortTtl = typeof ttl === 'number' && ttl < 10;
      const earlier = held.get(id as string);
      if (earlier && !earlier.mayExpire) {
        expect(r.error).toBeInstanceOf(DbMutexError);
        // Held: refused at once, or after waiting waitMs for it.
        expect(['DB_MUTEX_HELD', 'DB_MUTEX_WAIT_TIMEOUT']).toContain((r.error as DbMutexError).code);
        counts.refused++;
        return;
      }
      // Held by a lock that may have expired meanwhile: refused or taken over, both are right.
      if (earlier && r.error instanceof DbMutexError) return;
      // Taken over: the earlier acquisition's row is gone (this call's own row replaced it, and a
      // withDbMutex call has released that again), so it no longer stands for a row in the table.
      held.delete(id as string);
      // withDbMutex whose own TTL ran out before its release: reported, as it must be.
      if (viaWithDbMutex && shortTtl && r.error instanceof DbMutexTimeoutError) return;
      expect(r.error).toBeUndefined();
      if (!viaWithDbMutex) {
        held.set(id as string, { lock: r.value as DbMutexHeldLock, mayExpire: shortTtl });
        counts.kept++;
      }
    }

    it(
      'leaves exactly the valid acquisitions in the table after a random mix of valid and invalid calls',
      async () => {
        await fc.assert(
          fc.asyncProperty(fc.array(fc.tuple(lockIdArb, optionsArb, fc.boolean()), { maxLength: 15 }), async (calls) => {
            // Each run starts from an empty table, so a shrunk counterexample replays exactly.
            await Promise.all(previous.map((lock) => lock.release().catch(() => undefined)));
            await ctx.exec(`DELETE FROM ${ctx.quote(mutex.options.tableName)}`);
            const held = new Map<string, Kept>();
            previous = [];
            for (const [id, options, via] of calls) {
              await fuzzCall(id, options, via, held);
              previous = [...held.values()].map((k) => k.lock);
            }
            expect(await tableLockIds()).toEqual([...held.keys()].sort());
          }),
          { numRuns: scaled(40) },
        );
        await Promise.all(previous.map((lock) => lock.release().catch(() => undefined)));
        note(
          `random calls: ${counts.calls} calls, ${counts.kept} acquisitions kept, ${counts.refused} refused as held, ` +
            `${counts.rejected} rejected before any SQL; the table matched after every run`,
        );
      },
      timeoutMs(60_000),
    );
  });

  // Found by this suite: the heartbeat's timer used to overflow for leases above ~74.5 days (2^31 ms
  // x 3), and Node fired it every millisecond.
  it('accepts a very long lease and renews it rarely, not in a loop', async () => {
    await ensureBuilt();
    const child = children.spawn('renewal-count.js', { url: ctx.db.url, lockId: 'long-lease', leaseSeconds: 1e7, holdMs: 500 });
    const result = await child.waitForType('result', 20_000);
    note(`lease 1e7 s held 500 ms: ${String(result.renewals)} renewal statements, warnings ${JSON.stringify(result.warnings)} x${String(result.warningCount)}`);
    expect(result.renewals).toBeLessThanOrEqual(1);
    expect(result.warnings).toEqual([]);
  });
});

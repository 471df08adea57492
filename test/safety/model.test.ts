/**
 * Claim 4: a property-based model check. fast-check generates random sequences of acquire / release /
 * extend / expire (the database's time running past a lease, simulated by rewriting expires_at) /
 * force-release / purge across several holders (separate DbMutex instances, separate pools), runs them
 * against the real database, and after every step compares the lock table and each call's outcome
 * with a small in-memory model of the lock state machine. Mutual exclusion is checked after every step.
 */
import fc from 'fast-check';
import { DbMutexError, DbMutexTimeoutError, type DbMutexHeldLock, type DbMutexLostReason } from '../../src';
import type { Lease } from '../../src/lease';
import { describeModelRun, expectLost, outcome, type ModelWorld } from '../helpers/model-run';

const HOLDERS = 3;
const LOCK_IDS = ['model/a', 'model/b'];

// ---- the model ---------------------------------------------------------------------------------

interface ModelRow {
  fencingToken: number;
  /** Index of the handle whose acquisition the row is. */
  handle: number;
  expired: boolean;
}

interface ModelHandle {
  lockId: string;
  /** Index of the DbMutex (holder) that acquired it. */
  holder: number;
  fencingToken: number;
  /** held: not released and no loss reported yet; lost: a call reported the loss; released: release() ran. */
  state: 'held' | 'lost' | 'released';
  lostReason?: DbMutexLostReason;
  heartbeat: boolean;
  /**
   * Its row expired while it was still this acquisition's. The heartbeat (one timer per DbMutex, running
   * every lease / 3 whatever the sequence is doing) may then have found out in the background and
   * recorded the loss as `expired`, even if the row is taken over later.
   */
  expiredWhileCurrent: boolean;
  /** An operator force-released its row while it was this acquisition's. */
  forceReleased: boolean;
}

/**
 * Nothing has taken this acquisition's right to the lock away: its row never expired and no operator
 * released it while it was its own. Such a handle may rightly believe it holds the lock (a revoked one
 * may still believe it until it finds out; that is what fencing tokens are for).
 */
function unrevoked(h: ModelHandle): boolean {
  return !h.expiredWhileCurrent && !h.forceReleased;
}

class LockModel {
  readonly rows = new Map<string, ModelRow>();
  readonly handles: ModelHandle[] = [];
  readonly lastToken = new Map<string, number>();

  isCurrent(index: number): boolean {
    const h = this.handles[index]!;
    return this.rows.get(h.lockId)?.handle === index;
  }
}

type Real = ModelWorld<DbMutexHeldLock>;

type Cmd = fc.AsyncCommand<LockModel, Real>;

/** Locks a failing step got unexpectedly (released with the next sequence's leftovers). */
const strays: DbMutexHeldLock[] = [];

/** The reasons a loss that the model only knows as "taken over or removed" may be reported with. */
function takenOverReasons(h: ModelHandle): DbMutexLostReason[] {
  return h.heartbeat && h.expiredWhileCurrent ? ['released-by-other', 'expired'] : ['released-by-other'];
}

// ---- commands ------------------------------------------------------------------------------------

class Acquire implements Cmd {
  constructor(
    readonly holder: number,
    readonly lockId: string,
    readonly heartbeat: boolean,
    readonly ttlSeconds: number | null,
  ) {}
  check = () => true;
  async run(m: LockModel, r: Real) {
    const row = m.rows.get(this.lockId);
    const free = !row || row.expired;
    const result = await outcome(
      r.holders[this.holder]!.acquire(this.lockId, { heartbeat: this.heartbeat, ttlSeconds: this.ttlSeconds, leaseSeconds: 30 }),
    );
    if (!free) {
      // An unexpected success is still a lock to clean up, whatever the verdict.
      if (result.ok) strays.push(result.value);
      expect(result.ok).toBe(false);
      expect((result as { error: unknown }).error).toBeInstanceOf(DbMutexError);
      expect(((result as { error: DbMutexError }).error).code).toBe('DB_MUTEX_HELD');
      return;
    }
    expect(result).toMatchObject({ ok: true });
    const lock = (result as { value: DbMutexHeldLock }).value;
    // Fencing tokens only ever grow, across release, expiry, takeover and force-release.
    expect(lock.fencingToken).toBeGreaterThan(m.lastToken.get(this.lockId) ?? 0);
    m.lastToken.set(this.lockId, lock.fencingToken);
    m.handles.push({
      lockId: this.lockId,
      holder: this.holder,
      fencingToken: lock.fencingToken,
      state: 'held',
      heartbeat: this.heartbeat,
      expiredWhileCurrent: false,
      forceReleased: false,
    });
    r.handles.push(lock);
    m.rows.set(this.lockId, { fencingToken: lock.fencingToken, handle: m.handles.length - 1, expired: false });
  }
  toString = () => `acquire(h${this.holder}, ${this.lockId}, heartbeat=${this.heartbeat}, ttl=${this.ttlSeconds})`;
}

class Release implements Cmd {
  constructor(readonly pick: number) {}
  check = (m: Readonly<LockModel>) => m.handles.length > 0;
  async run(m: LockModel, r: Real) {
    const i = this.pick % m.handles.length;
    const h = m.handles[i]!;
    const row = m.rows.get(h.lockId);
    const current = m.isCurrent(i);
    const result = await outcome(r.handles[i]!.release());
    if (h.state === 'released') {
      // Twice is a no-op.
      expect(result.ok).toBe(true);
      return;
    }
    if (h.state === 'lost') expectLost(result, h.lostReason!);
    else if (current && !row!.expired) expect(result.ok).toBe(true);
    else if (current) expectLost(result, 'expired');
    else expectLost(result, ...takenOverReasons(h));
    // Release deletes by owner token: only ever its own row, expired or not.
    if (current) m.rows.delete(h.lockId);
    h.state = 'released';
  }
  toString = () => `release(#${this.pick})`;
}

class Extend implements Cmd {
  constructor(
    readonly pick: number,
    readonly seconds: number | null,
  ) {}
  check = (m: Readonly<LockModel>) => m.handles.length > 0;
  async run(m: LockModel, r: Real) {
    const i = this.pick % m.handles.length;
    const h = m.handles[i]!;
    const row = m.rows.get(h.lockId);
    const result = await outcome(r.handles[i]!.extend(this.seconds));
    if (h.state === 'released') {
      expect(result.ok).toBe(false);
      expect((result as { error: unknown }).error).not.toBeInstanceOf(DbMutexTimeoutError);
      expect(String((result as { error: unknown }).error)).toMatch(/already released/);
    } else if (h.state === 'lost') {
      expectLost(result, h.lostReason!);
    } else if (m.isCurrent(i) && !row!.expired) {
      expect(result).toMatchObject({ ok: true });
    } else {
      h.lostReason = expectLost(result, ...(m.isCurrent(i) ? (['expired'] as const) : takenOverReasons(h)));
      h.state = 'lost';
    }
  }
  toString = () => `extend(#${this.pick}, ${this.seconds})`;
}

class Expire implements Cmd {
  constructor(readonly lockId: string) {}
  check = () => true;
  async run(m: LockModel, r: Real) {
    await r.ctx.sql.expireLock(this.lockId, r.operator.options.tableName);
    const row = m.rows.get(this.lockId);
    if (row) {
      row.expired = true;
      m.handles[row.handle]!.expiredWhileCurrent = true;
    }
  }
  toString = () => `expire(${this.lockId})`;
}

class ForceRelease implements Cmd {
  constructor(
    readonly lockId: string,
    readonly token: 'none' | 'current' | 'other',
  ) {}
  check = () => true;
  async run(m: LockModel, r: Real) {
    const row = m.rows.get(this.lockId);
    let fencingToken: number | undefined;
    if (this.token === 'current') fencingToken = row?.fencingToken ?? 1;
    if (this.token === 'other') fencingToken = (row?.fencingToken ?? 1) + 1000;
    const result = await r.operator.forceRelease({ lockId: this.lockId, fencingToken, operator: 'model-operator', reason: 'model check' });
    if (!row) {
      expect(result).toEqual({ status: 'not-found' });
    } else if (this.token === 'other') {
      expect(result).toEqual({ status: 'token-mismatch', currentFencingToken: row.fencingToken });
    } else {
      expect(result).toMatchObject({
        status: 'released',
        event: { action: 'force-release', lockId: this.lockId, fencingToken: row.fencingToken, operator: 'model-operator' },
      });
      m.handles[row.handle]!.forceReleased = true;
      m.rows.delete(this.lockId);
    }
  }
  toString = () => `forceRelease(${this.lockId}, token=${this.token})`;
}

class PurgeExpired implements Cmd {
  check = () => true;
  async run(m: LockModel, r: Real) {
    const events = await r.operator.purgeExpired({ operator: 'model-operator' });
    const expected = [...m.rows].filter(([, row]) => row.expired).map(([id, row]) => [id, row.fencingToken]);
    expect(events.map((e) => [e.lockId, e.fencingToken]).sort()).toEqual(expected.sort());
    for (const [id] of expected) m.rows.delete(id as string);
  }
  toString = () => 'purgeExpired()';
}

/**
 * After every step: the table is the model, the database's holder of each lock is the acquisition the
 * model says should hold it, and no two handles can both rightly believe they hold a lock.
 */
async function compare(m: LockModel, r: Real): Promise<void> {
  const rows = await r.operator.list();
  const actual = Object.fromEntries(
    rows.map((row) => [
      row.lockId,
      { fencingToken: row.fencingToken, expired: row.expiresAt !== null && row.expiresAt.getTime() <= row.dbNow.getTime() },
    ]),
  );
  const expected = Object.fromEntries([...m.rows].map(([id, row]) => [id, { fencingToken: row.fencingToken, expired: row.expired }]));
  expect(actual).toEqual(expected);
  const tableRows = await r.ctx.sql.lockRows(null, r.operator.options.tableName);
  for (const lockId of LOCK_IDS) {
    const row = m.rows.get(lockId);
    // Who should hold it (the model) and who does (the database): the same acquisition, named by its
    // owner token (which no other acquisition has), and the same holder.
    const dbRow = tableRows.find((t) => t.lock_id === lockId);
    if (row) {
      const h = m.handles[row.handle]!;
      expect(dbRow).toEqual({
        lock_id: lockId,
        owner_token: (r.handles[row.handle] as Lease).ownerToken,
        fencing_token: row.fencingToken,
        holder: `model-holder-${h.holder}`,
      });
    } else {
      expect(dbRow).toBeUndefined();
    }
    // Mutual exclusion, counted over the handles themselves rather than over tokens: those that believe
    // they hold the lock and whose right to it nothing has revoked. At most one, and exactly the
    // model's current holder while its row is live (the rightful holder is never told it lost the lock).
    const rightful = r.handles.flatMap((lock, i) => (lock.lockId === lockId && lock.isHeld() && unrevoked(m.handles[i]!) ? [i] : []));
    expect(rightful.length).toBeLessThanOrEqual(1);
    const shouldHold = row && !row.expired && m.handles[row.handle]!.state === 'held' ? [row.handle] : [];
    expect({ lockId, rightful }).toEqual({ lockId, rightful: shouldHold });
    for (const i of shouldHold) expect(r.handles[i]!.signal.aborted).toBe(false);
  }
}

function checked(cmd: Cmd): Cmd {
  return {
    check: (m) => cmd.check(m),
    run: async (m, r) => {
      await cmd.run(m, r);
      await compare(m, r);
    },
    toString: () => cmd.toString(),
  };
}

const lockId = fc.constantFrom(...LOCK_IDS);
const commands = [
  fc
    .tuple(fc.nat(HOLDERS - 1), lockId, fc.boolean(), fc.constantFrom<number | null>(60, 60, null))
    .map(([h, id, hb, ttl]) => checked(new Acquire(h, id, hb, ttl))),
  fc.nat(50).map((k) => checked(new Release(k))),
  fc.tuple(fc.nat(50), fc.constantFrom<number | null>(30, 120, null)).map(([k, s]) => checked(new Extend(k, s))),
  lockId.map((id) => checked(new Expire(id))),
  fc.tuple(lockId, fc.constantFrom('none' as const, 'current' as const, 'other' as const)).map(([id, t]) => checked(new ForceRelease(id, t))),
  fc.constant(null).map(() => checked(new PurgeExpired())),
];

describeModelRun({
  describe: 'the lock state machine',
  it: 'agrees with the model of the lock state machine after every step of random operation sequences',
  holders: HOLDERS,
  makeModel: () => new LockModel(),
  commands,
  strays,
  runs: 30,
  what: 'random sequences',
});

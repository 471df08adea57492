/**
 * The model check (see model.test.ts) for counting semaphores: fast-check generates random sequences of
 * acquire (with limit 2 or 3) / release / expire (the database's time running past a permit's lease,
 * simulated by rewriting expires_at) / force-release across several holders (separate DbMutex instances,
 * separate pools), runs them against the real database, and after every step compares the permits in
 * the table and each call's outcome with a small in-memory model: the lowest free permit is taken,
 * a full semaphore refuses, another limit is refused while permits are live, tokens only grow, and
 * never more holders rightly believe they hold a permit than the limit allows.
 */
import fc from 'fast-check';
import { DbMutexError, type DbMutexLostReason, type DbMutexSemaphorePermit } from '../../src';
import type { Lease } from '../../src/lease';
import { describeModelRun, expectLost, outcome, type ModelWorld } from '../helpers/model-run';

const HOLDERS = 3;
const SEMAPHORE = 'model-sem';
const key = (permit: number) => `${SEMAPHORE}/permit/${permit}`;

interface ModelPermit {
  handle: number;
  fencingToken: number;
  expired: boolean;
  limit: number;
}

interface ModelHandle {
  permit: number;
  state: 'held' | 'lost' | 'released';
  lostReason?: DbMutexLostReason;
  expiredWhileCurrent: boolean;
  forceReleased: boolean;
}

class SemaphoreModel {
  /** Permit number → its row. */
  readonly permits = new Map<number, ModelPermit>();
  readonly handles: ModelHandle[] = [];
  lastToken = 0;

  live(): ModelPermit[] {
    return [...this.permits.values()].filter((p) => !p.expired);
  }

  isCurrent(index: number): boolean {
    return this.permits.get(this.handles[index]!.permit)?.handle === index;
  }
}

type Real = ModelWorld<DbMutexSemaphorePermit>;

type Cmd = fc.AsyncCommand<SemaphoreModel, Real>;

const strays: DbMutexSemaphorePermit[] = [];

class Acquire implements Cmd {
  constructor(
    readonly holder: number,
    readonly limit: number,
  ) {}
  check = () => true;
  async run(m: SemaphoreModel, r: Real) {
    const live = m.live();
    const result = await outcome(r.holders[this.holder]!.acquireSemaphore(SEMAPHORE, { limit: this.limit, leaseSeconds: 30 }));
    if (result.ok) strays.push(result.value);
    const other = live.find((p) => p.limit !== this.limit);
    if (other) {
      expect(result).toMatchObject({ ok: false, error: { code: 'DB_MUTEX_SEMAPHORE_LIMIT_MISMATCH', limit: other.limit } });
      return;
    }
    const free = Array.from({ length: this.limit }, (_, n) => n).find((n) => !m.permits.has(n) || m.permits.get(n)!.expired);
    if (free === undefined) {
      expect(result).toMatchObject({ ok: false, error: { code: 'DB_MUTEX_SEMAPHORE_FULL', used: live.length, limit: this.limit } });
      expect((result as { error: unknown }).error).toBeInstanceOf(DbMutexError);
      return;
    }
    expect(result).toMatchObject({ ok: true, value: { permit: free, limit: this.limit, lockId: key(free) } });
    strays.pop();
    const permit = (result as { value: DbMutexSemaphorePermit }).value;
    // Tokens only grow, across permits, release, expiry, takeover and force-release.
    expect(permit.fencingToken).toBeGreaterThan(m.lastToken);
    m.lastToken = permit.fencingToken;
    m.handles.push({ permit: free, state: 'held', expiredWhileCurrent: false, forceReleased: false });
    r.handles.push(permit);
    m.permits.set(free, { handle: m.handles.length - 1, fencingToken: permit.fencingToken, expired: false, limit: this.limit });
  }
  toString = () => `acquire(h${this.holder}, limit=${this.limit})`;
}

class Release implements Cmd {
  constructor(readonly pick: number) {}
  check = (m: Readonly<SemaphoreModel>) => m.handles.length > 0;
  async run(m: SemaphoreModel, r: Real) {
    const i = this.pick % m.handles.length;
    const h = m.handles[i]!;
    const row = m.permits.get(h.permit);
    const current = m.isCurrent(i);
    const result = await outcome(r.handles[i]!.release());
    if (h.state === 'released') expect(result.ok).toBe(true);
    else if (h.state === 'lost') expectLost(result, h.lostReason!);
    else if (current && !row!.expired) expect(result.ok).toBe(true);
    else if (current) expectLost(result, 'expired');
    else expectLost(result, 'released-by-other', 'expired');
    if (current) m.permits.delete(h.permit);
    h.state = 'released';
  }
  toString = () => `release(#${this.pick})`;
}

class Expire implements Cmd {
  constructor(readonly permit: number) {}
  check = () => true;
  async run(m: SemaphoreModel, r: Real) {
    await r.ctx.sql.expireLock(key(this.permit), r.operator.options.tableName);
    const row = m.permits.get(this.permit);
    if (row) {
      row.expired = true;
      m.handles[row.handle]!.expiredWhileCurrent = true;
    }
  }
  toString = () => `expire(permit ${this.permit})`;
}

class ForceRelease implements Cmd {
  constructor(
    readonly permit: number,
    readonly token: 'current' | 'other',
  ) {}
  check = () => true;
  async run(m: SemaphoreModel, r: Real) {
    const row = m.permits.get(this.permit);
    const fencingToken = (row?.fencingToken ?? 1) + (this.token === 'other' ? 1000 : 0);
    const result = await r.operator.forceRelease({ lockId: key(this.permit), fencingToken, operator: 'model-operator' });
    if (!row) expect(result).toEqual({ status: 'not-found' });
    else if (this.token === 'other') expect(result).toEqual({ status: 'token-mismatch', currentFencingToken: row.fencingToken });
    else {
      expect(result).toMatchObject({ status: 'released', event: { lockId: key(this.permit), fencingToken: row.fencingToken } });
      m.handles[row.handle]!.forceReleased = true;
      m.permits.delete(this.permit);
    }
  }
  toString = () => `forceRelease(permit ${this.permit}, token=${this.token})`;
}

/** After every step: the table's permits are the model's, and the limit holds for those who rightly believe they hold one. */
async function compare(m: SemaphoreModel, r: Real): Promise<void> {
  const rows = await r.operator.list({ filter: `${SEMAPHORE}/permit/` });
  const actual = Object.fromEntries(
    rows.map((row) => [row.lockId, { fencingToken: row.fencingToken, expired: row.expiresAt !== null && row.expiresAt.getTime() <= row.dbNow.getTime() }]),
  );
  const expected = Object.fromEntries([...m.permits].map(([n, p]) => [key(n), { fencingToken: p.fencingToken, expired: p.expired }]));
  expect(actual).toEqual(expected);
  for (const [n, p] of m.permits) {
    const row = rows.find((x) => x.lockId === key(n));
    expect((r.handles[p.handle] as unknown as Lease).ownerToken).toBeDefined();
    expect(row?.fencingToken).toBe(r.handles[p.handle]!.fencingToken);
  }
  // Holders that believe they hold a permit and whose right nothing revoked: at most one per permit,
  // at most the limit in all, and exactly the model's live holders.
  const rightful = r.handles.flatMap((permit, i) => {
    const h = m.handles[i]!;
    return permit.isHeld() && !h.expiredWhileCurrent && !h.forceReleased ? [i] : [];
  });
  const limit = m.live()[0]?.limit ?? 3;
  expect(rightful.length).toBeLessThanOrEqual(limit);
  expect(new Set(rightful.map((i) => m.handles[i]!.permit)).size).toBe(rightful.length);
  const shouldHold = m.live().filter((p) => m.handles[p.handle]!.state === 'held').map((p) => p.handle).sort((a, b) => a - b);
  expect(rightful).toEqual(shouldHold);
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

const permitNumber = fc.nat(2);
const commands = [
  fc.tuple(fc.nat(HOLDERS - 1), fc.constantFrom(2, 3, 3)).map(([h, limit]) => checked(new Acquire(h, limit))),
  fc.nat(50).map((k) => checked(new Release(k))),
  permitNumber.map((n) => checked(new Expire(n))),
  fc.tuple(permitNumber, fc.constantFrom('current' as const, 'other' as const)).map(([n, t]) => checked(new ForceRelease(n, t))),
];

describeModelRun({
  describe: 'the counting semaphore state machine',
  it: 'agrees with the model of the semaphore after every step of random operation sequences',
  holders: HOLDERS,
  makeModel: () => new SemaphoreModel(),
  commands,
  strays,
  runs: 25,
  what: 'random semaphore sequences',
});

/**
 * Leader election with real processes (test/fixtures/safety/leader-worker.js, running the built
 * library): three candidates, the leader killed again and again, or frozen past its lease. Each term
 * records, by the database clock, its election and a reading every renewal period while it believes
 * it leads; no two terms may overlap on that clock, and a new leader must always appear.
 */
import { ensureBuilt } from '../helpers/built';
import { TestContext, type TestDialect } from '../helpers/db';
import { ChildGroup, type Child, type ChildMessage } from '../helpers/children';
import { CLOCK_US } from '../helpers/safety-dialect';
import { note } from '../helpers/report';

const LEASE_SECONDS = 1.5;
const POLL_INTERVAL_MS = 500;
const KILLS = 10;
const CANDIDATES = 3;
/**
 * The failover bound: the dead leader's lease runs out at most one lease after its last renewal
 * (which came before the kill), and a candidate's next attempt comes at most one jittered poll
 * interval later (the jitter stretches it up to 1.5×); the last half interval is for the statements'
 * own time (a renewal in flight at the kill, the winning acquire).
 */
const FAILOVER_BOUND_MS = LEASE_SECONDS * 1000 + 2 * POLL_INTERVAL_MS;

/** The database clock in integer µs as text, per dialect (the safety suite's own clock expressions). */
function clockSql(dialect: TestDialect): string {
  if (dialect === 'postgres') return `SELECT (${CLOCK_US.postgres})::text AS now_us`;
  if (dialect === 'sqlite') return `SELECT CAST(${CLOCK_US.sqlite} AS TEXT) AS now_us`;
  return `SELECT CAST(${CLOCK_US.mariadb} AS CHAR) AS now_us`;
}

let ctx: TestContext;
const children = new ChildGroup();

interface TermRecord {
  epoch: number;
  worker: string;
  /** Database clock, µs: the earlier of the lock's acquiredAt and the reading in onElected. */
  startUs: number;
  /** Database clock, µs: the last reading taken while the process believed it led. */
  endUs: number;
}

/** Every term any candidate reported, by epoch, from its messages. */
function terms(all: readonly Child[]): TermRecord[] {
  const byEpoch = new Map<number, TermRecord>();
  for (const child of all) {
    for (const m of child.messages) {
      const epoch = m.epoch as number;
      if (m.type === 'elected') {
        const startUs = Math.min((m.acquiredAtMs as number) * 1000, m.atUs as number);
        byEpoch.set(epoch, { epoch, worker: child.name, startUs, endUs: m.aborted ? startUs : (m.atUs as number) });
      } else if (m.type === 'renewal') {
        const t = byEpoch.get(epoch)!;
        t.endUs = Math.max(t.endUs, m.atUs as number);
      }
    }
  }
  return [...byEpoch.values()].sort((x, y) => x.epoch - y.epoch);
}

/** Pairs of terms whose [start, end] intervals overlap on the database clock (touching is allowed). */
function overlaps(list: readonly TermRecord[]): [TermRecord, TermRecord][] {
  const found: [TermRecord, TermRecord][] = [];
  for (let i = 0; i < list.length; i++) {
    for (let j = i + 1; j < list.length; j++) {
      const [x, y] = [list[i]!, list[j]!];
      if (x.startUs < y.endUs && y.startUs < x.endUs) found.push([x, y]);
    }
  }
  return found;
}

function spawnCandidate(electionId: string, n: number): Child {
  return children.spawn(
    'leader-worker.js',
    { url: ctx.db.url, electionId, worker: n, leaseSeconds: LEASE_SECONDS, pollIntervalMs: POLL_INTERVAL_MS, clockSql: clockSql(ctx.dialect) },
    { name: `candidate-${n}` },
  );
}

/** The first `elected` message with an epoch above `after`, from any of `candidates`. */
function nextLeader(candidates: readonly Child[], after: number, timeoutMs: number): Promise<{ child: Child; message: ChildMessage }> {
  return Promise.any(
    candidates.map(async (child) => ({
      child,
      message: await child.waitFor((m) => m.type === 'elected' && (m.epoch as number) > after, timeoutMs, `an election after epoch ${after}`),
    })),
  ).catch(() => {
    throw new Error(`no new leader after epoch ${after} within ${timeoutMs} ms\n${candidates.map((c) => `${c.name}: ${c.diagnostics()}`).join('\n')}`);
  });
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

describe('leader election with three processes', () => {
  beforeAll(async () => {
    await ensureBuilt();
    ctx = await TestContext.create();
    await (await ctx.mutex()).sync();
    await ctx.exec('CREATE TABLE leader_fence (id INTEGER PRIMARY KEY, epoch BIGINT NOT NULL, writer INTEGER NOT NULL, writes INTEGER NOT NULL)');
    await ctx.exec('INSERT INTO leader_fence (id, epoch, writer, writes) VALUES (1, 0, 0, 0)');
  }, 180_000);
  afterEach(() => children.dispose());
  afterAll(() => ctx?.cleanup());

  it('never has two leaders at once by the database clock, and elects a new one within one lease plus one poll interval each time the leader is SIGKILLed', async () => {
    const electionId = 'killed-leaders';
    let spawned = 0;
    const alive = new Set<Child>();
    for (; spawned < CANDIDATES; spawned++) alive.add(spawnCandidate(electionId, spawned));
    let leader = await nextLeader([...alive], 0, 30_000);
    const failoverMs: number[] = [];
    for (let kill = 0; kill < KILLS; kill++) {
      const epoch = leader.message.epoch as number;
      // A couple of renewal readings first, so the lease being tested is a renewed one, not the first.
      await leader.child.waitFor((m) => m.type === 'renewal' && m.epoch === epoch && (m.atUs as number) > (leader.message.atUs as number), 20_000, 'a renewal reading');
      // Read just before the kill: the measured failover can only come out longer this way.
      const killedAtMs = await ctx.sql.dbNowMs();
      leader.child.kill('SIGKILL');
      await leader.child.exited;
      alive.delete(leader.child);
      alive.add(spawnCandidate(electionId, spawned++));
      leader = await nextLeader([...alive], epoch, 30_000);
      failoverMs.push((leader.message.acquiredAtMs as number) - killedAtMs);
    }
    const lastEpoch = leader.message.epoch as number;
    await leader.child.waitFor((m) => m.type === 'fenced' && m.epoch === lastEpoch, 20_000, 'the last fenced write');

    const all = terms(children.all);
    expect(all.length).toBeGreaterThanOrEqual(KILLS + 1);
    expect(overlaps(all)).toEqual([]);
    // Each term's fenced write of its epoch went through: no later epoch had written before it.
    const fenced = children.all.flatMap((c) => c.messages.filter((m) => m.type === 'fenced'));
    expect(fenced.length).toBeGreaterThanOrEqual(KILLS + 1);
    expect(fenced.filter((m) => m.updated !== 1)).toEqual([]);
    // A new leader's term starts only after the previous one's last reading, in epoch order.
    for (let i = 1; i < all.length; i++) expect(all[i]!.startUs).toBeGreaterThanOrEqual(all[i - 1]!.endUs);

    const sorted = [...failoverMs].sort((x, y) => x - y);
    note(
      `${ctx.dialect}: ${KILLS} SIGKILLed leaders (lease ${LEASE_SECONDS} s, poll ${POLL_INTERVAL_MS} ms): failover by the database clock ` +
        `p50 ${Math.round(percentile(sorted, 50))} ms, max ${Math.round(sorted[sorted.length - 1]!)} ms, min ${Math.round(sorted[0]!)} ms ` +
        `(bound ${FAILOVER_BOUND_MS} ms); ${all.length} terms, none overlapping`,
    );
    expect(sorted[sorted.length - 1]).toBeLessThanOrEqual(FAILOVER_BOUND_MS);
  }, 300_000);

  it('tells a leader paused with SIGSTOP past its lease, on resume, that it lost leadership, and refuses its fenced writes', async () => {
    const electionId = 'paused-leader';
    const candidates = Array.from({ length: CANDIDATES }, (_, n) => spawnCandidate(electionId, 100 + n));
    const paused = await nextLeader(candidates, 0, 30_000);
    const pausedEpoch = paused.message.epoch as number;
    await paused.child.waitFor((m) => m.type === 'fenced' && m.epoch === pausedEpoch, 20_000, 'its fenced write');
    paused.child.kill('SIGSTOP');
    let resumed = false;
    try {
      const successor = await nextLeader(candidates.filter((c) => c !== paused.child), pausedEpoch, 30_000);
      const successorEpoch = successor.message.epoch as number;
      expect(await successor.child.waitFor((m) => m.type === 'fenced' && m.epoch === successorEpoch, 20_000, 'its fenced write')).toMatchObject({
        updated: 1,
      });
      paused.child.kill('SIGCONT');
      resumed = true;
      paused.child.tell('write');
      const zombie = await paused.child.waitForType('zombie', 20_000);
      // A leader that went on believing it led after the resume shows here first: its reading overlaps.
      await new Promise((resolve) => setTimeout(resolve, LEASE_SECONDS * 1000));
      expect(overlaps(terms(candidates))).toEqual([]);
      expect(zombie).toMatchObject({ epoch: pausedEpoch, signalAborted: true, isLeader: false, updated: 0 });
      expect(['expired', 'released-by-other']).toContain(zombie.reason);
      expect(paused.child.messages.find((m) => m.type === 'demoted' && m.epoch === pausedEpoch)).toBeDefined();
      const [row] = await ctx.exec<{ epoch: unknown; writer: unknown }>('SELECT epoch, writer FROM leader_fence WHERE id = 1');
      expect(Number(row!.epoch)).toBeGreaterThanOrEqual(successorEpoch);
      note(`${ctx.dialect}: leader paused past its lease: on resume its signal said ${String(zombie.reason)}, its fenced write of epoch ${pausedEpoch} changed ${String(zombie.updated)} rows`);
    } finally {
      if (!resumed) paused.child.kill('SIGCONT');
    }
  }, 120_000);
});

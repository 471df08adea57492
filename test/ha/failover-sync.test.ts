/**
 * Failover with SYNCHRONOUS replication: a real primary and standby (Debian's PostgreSQL 15), the app
 * processes reaching the primary through PgBouncer. While three processes hold locks (heartbeat on)
 * and three more wait for them, the primary is stopped in immediate mode, the standby promoted and
 * PgBouncer repointed to it (as a VIP/DNS switch would).
 *
 * With `synchronous_standby_names` naming the standby and `synchronous_commit = on`, a commit returns
 * only once the standby has its WAL, so every acquisition, renewal and fencing-token draw a process
 * was told about survives the promotion. What the test shows:
 * - no holder loses its lock: the outage is shorter than the lease, and renewals resume on the new
 *   primary with the same rows (same owner, same fencing token);
 * - no two sections of one lock id overlap, by [start, end] intervals on the database clock (both
 *   servers run on this host, so it is one clock), and no counter update is lost;
 * - the waiters acquire once the holders release, on the new primary;
 * - fencing tokens never go backwards: every token drawn after the failover is greater than every
 *   token drawn before it.
 */
import type { Child } from '../helpers/children';
import { analyse, checkTokenOrder } from '../helpers/contention';
import { safetyDialect } from '../helpers/safety-dialect';
import { note } from '../helpers/report';
import { describeFailover, messagesOf, useFailoverPair } from '../helpers/failover';
import { waitUntil } from '../helpers/wait';

/**
 * The primary stays down until every holder has seen a renewal fail (up to one renewal period, a
 * third of the lease) and then for the promotion: the lease leaves a third for a slow machine.
 */
const LEASE_SECONDS = 30;
const LOCK_IDS = ['ha/0', 'ha/1', 'ha/2'];

describeFailover('failover to a synchronous standby while locks are held', () => {
  const pair = useFailoverPair({ synchronous: true }, 'failover_sync');
  beforeAll(async () => {
    await safetyDialect(pair.ctx).createProbeTables(LOCK_IDS);
    await pair.ctx.exec('CREATE UNIQUE INDEX safety_log_once ON safety_log (lock_id, fencing_token)');
  });

  it('keeps every lock across the failover, never overlaps sections, hands locks to waiters and never rewinds fencing tokens', async () => {
    const { cluster, ctx, observer, children } = pair;
    const probe = safetyDialect(ctx).probeSql;
    const workers = Array.from({ length: 6 }, (_, worker) =>
      children.spawn(
        'failover-worker.js',
        {
          url: ctx.db.url,
          worker,
          lockId: LOCK_IDS[worker % LOCK_IDS.length],
          leaseSeconds: LEASE_SECONDS,
          probe: true,
          holdMs: 50,
          sql: {
            ...probe,
            // Safe to retry when the database failed over mid-insert (the first try may have committed);
            // relies on the unique index created above.
            logSectionOnce: `${probe.logSection} ON CONFLICT (lock_id, fencing_token) DO NOTHING`,
          },
        },
        { name: `worker ${worker}` },
      ),
    );
    await Promise.all(workers.map((w) => w.waitForType('ready', 60_000)));

    // One holder per lock id (whoever got there first); the other process of each id waits for it.
    const holders = new Map<string, Child>();
    await waitUntil(
      () => {
        for (const w of workers) {
          const m = w.messages.find((x) => x.type === 'enter');
          if (m) holders.set(m.lockId as string, w);
        }
        return holders.size === LOCK_IDS.length;
      },
      60_000,
      'a holder for every lock id',
    );
    const waiters = workers.filter((w) => ![...holders.values()].includes(w));
    await Promise.all(waiters.map((w) => w.waitForType('contended', 60_000)));

    const before = new Map<string, { fencingToken: number; heartbeatMs: number }>();
    for (const id of LOCK_IDS) {
      const row = (await observer.inspect(id))!;
      before.set(id, { fencingToken: row.fencingToken, heartbeatMs: row.heartbeatAt.getTime() });
    }
    const stopDbMs = await ctx.sql.dbNowMs();
    const maxTokenBefore = Math.max(...[...before.values()].map((b) => b.fencingToken));

    // The failover: primary gone at once, the standby promoted after a while, PgBouncer repointed.
    const down = performance.now();
    await cluster.stopPrimary();
    const failedBefore = [...holders.values()].map((w) => messagesOf(w, 'renewalFailed').length);
    await waitUntil(
      () => [...holders.values()].every((w, i) => messagesOf(w, 'renewalFailed').length > failedBefore[i]!),
      LEASE_SECONDS * 1000,
      'every holder to see a renewal fail while the primary is down',
    );
    await cluster.promoteStandby();
    await cluster.repointToStandby();
    const outageMs = performance.now() - down;

    // Renewals resume on the new primary: each holder's own row (same fencing token) gets a heartbeat
    // later than the moment the old primary stopped, by the database clock.
    const after = new Map<string, number>();
    const tokensSeen = new Map<string, number | null>();
    await waitUntil(
      async () => {
        for (const id of LOCK_IDS) {
          const row = await observer.inspect(id);
          tokensSeen.set(id, row?.fencingToken ?? null);
          if (row && row.fencingToken === before.get(id)!.fencingToken && row.heartbeatAt.getTime() > stopDbMs) {
            after.set(id, row.heartbeatAt.getTime());
          }
        }
        return after.size === LOCK_IDS.length;
      },
      LEASE_SECONDS * 1000,
      'every holder to renew on the new primary',
    ).catch((error: Error) => {
      const recent = workers.map((w) => `${w.name}: ${JSON.stringify(w.messages.slice(-5))} ${w.diagnostics()}`);
      throw new Error(`${error.message}; rows ${JSON.stringify([...tokensSeen])}, before ${JSON.stringify([...before])}\n${recent.join('\n')}`);
    });
    // Still the same acquisitions: the rows survived the promotion.
    expect(Object.fromEntries(tokensSeen)).toEqual(Object.fromEntries(LOCK_IDS.map((id) => [id, before.get(id)!.fencingToken])));
    const pausedMs = LOCK_IDS.map((id) => after.get(id)! - before.get(id)!.heartbeatMs);

    // Hand over: later sections are short, the holders release, the waiters take the locks.
    for (const w of workers) w.tell('short');
    for (const w of holders.values()) w.tell('release');
    await Promise.all(
      workers.map((w) =>
        w.waitFor((m) => m.type === 'section' && messagesOf(w, 'section').length >= 2, 120_000, 'two sections'),
      ),
    );
    for (const w of workers) w.tell('stop');
    await Promise.all(workers.map((w) => w.waitForExit(60_000)));

    const reported = workers.flatMap((w) => messagesOf(w, 'section'));
    const findings = analyse(await safetyDialect(ctx).readSections(), await safetyDialect(ctx).readCounters());
    const renewalFailures = [...holders.values()].map((w, i) => messagesOf(w, 'renewalFailed').length - failedBefore[i]!);
    note(
      `synchronous failover: outage ${Math.round(outageMs)} ms (primary stopped -> standby promoted -> PgBouncer repointed), ` +
        `lease ${LEASE_SECONDS} s; heartbeats paused ${pausedMs.map((ms) => `${ms} ms`).join(', ')} (last renewal on the old primary -> ` +
        `first on the new one); failed renewal attempts per holder ${renewalFailures.join(', ')}; ${findings.sections} sections, ` +
        `${findings.overlaps.length} overlaps, ${findings.lostUpdates.length} lost updates`,
    );

    // No holder lost its lock; no section anywhere ended lost or unreleased.
    expect(workers.flatMap((w) => messagesOf(w, 'lost'))).toEqual([]);
    expect(reported.filter((s) => s.outcome !== 'ok' || s.logged !== true)).toEqual([]);
    // Every section was logged once (by the database clock) and none overlaps another of its lock id.
    expect(findings.sections).toBe(reported.length);
    expect(findings.overlaps).toEqual([]);
    expect(findings.lostUpdates).toEqual([]);
    note(checkTokenOrder(findings.tokenOrderViolations));
    // The waiters acquired after the holders released (on the new primary).
    const sections = await safetyDialect(ctx).readSections();
    for (const id of LOCK_IDS) {
      const held = sections.find((s) => s.lockId === id && s.fencingToken === before.get(id)!.fencingToken)!;
      const waiter = waiters.find((w) => w.messages.some((m) => m.type === 'enter' && m.lockId === id))!;
      const firstOfWaiter = Math.min(...messagesOf(waiter, 'section').map((m) => m.startUs as number));
      expect(firstOfWaiter).toBeGreaterThanOrEqual(held.endUs);
    }
    // Fencing tokens never went backwards: every token drawn after the failover exceeds all before it.
    const tokensAfter = sections.filter((s) => s.startUs > stopDbMs * 1000).map((s) => s.fencingToken);
    expect(tokensAfter.length).toBeGreaterThan(0);
    expect(Math.min(...tokensAfter)).toBeGreaterThan(maxTokenBefore);
  }, 240_000);
});

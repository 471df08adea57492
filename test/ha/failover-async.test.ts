/**
 * Failover with ASYNCHRONOUS replication: what it can lose, and that the library never hides it.
 *
 * A commit on an asynchronous primary returns before the standby has its WAL. To make the loss
 * deterministic rather than a matter of timing, the standby is cut off from the primary (it stops
 * receiving WAL) before the interesting commits; then the primary is stopped in immediate mode, the
 * standby promoted and PgBouncer repointed, as in a real failover that came at a bad moment.
 *
 * Lost with the old primary, and what the test shows about each:
 * - a release (process P1): its row is back on the new primary, so the lock stays taken until the
 *   released lease runs out (a delay, never a second holder);
 * - an acquisition (P2 took lock A after P1's release; P3 took lock B): the rows vanished, and each
 *   holder is told (signal aborted with a DbMutexLostError, withDbMutex throws DbMutexTimeoutError,
 *   reason `released-by-other`) at its first renewal on the new primary;
 * - fencing tokens: the promoted sequence restarts below tokens the old primary handed out, so the
 *   next holder of B (P4, waiting through the failover) gets a SMALLER token than P3 had;
 * - `advanceFencingTokens(old maximum)` on the new primary puts the order back: later tokens exceed
 *   every token of the lost primary.
 */
import type { Child, ChildMessage } from '../helpers/children';
import { note } from '../helpers/report';
import { describeFailover, useFailoverPair, type FailoverPair } from '../helpers/failover';

const LEASE_SECONDS = 15;
/**
 * Acquisitions after the standby is cut off. A PostgreSQL sequence WAL-logs 32 values ahead, so the
 * standby's copy may be up to 32 ahead of the last token it saw; more than that are certainly lost.
 */
const CHURN = 100;

function worker(pair: FailoverPair, name: string, lockId: string): Child {
  return pair.children.spawn(
    'failover-worker.js',
    { url: pair.ctx.db.url, worker: 0, lockId, leaseSeconds: LEASE_SECONDS, once: true, probe: false },
    { name },
  );
}

async function entered(child: Child): Promise<ChildMessage> {
  return child.waitForType('enter', 60_000);
}

describeFailover('failover to an asynchronous standby that missed the newest commits', () => {
  const pair = useFailoverPair({ synchronous: false }, 'failover_async');

  it('loses what the standby never got, tells every holder whose row vanished, rewinds tokens, and a token floor restores their order', async () => {
    const { cluster, observer } = pair;
    // Replicated: P1 holds lock A.
    const p1 = worker(pair, 'P1', 'async/a');
    const a1 = (await entered(p1)).fencingToken as number;
    await cluster.waitForStandbyReplay();
    await cluster.detachStandby();

    // From here on, only the old primary knows: P1 releases A, P2 takes it, tokens move on, P3 takes B.
    p1.tell('release');
    expect(await p1.waitForType('section', 30_000)).toMatchObject({ outcome: 'ok' });
    const p2 = worker(pair, 'P2', 'async/a');
    const a2 = (await entered(p2)).fencingToken as number;
    for (let i = 0; i < CHURN; i++) await (await observer.acquire('async/churn')).release();
    const p3 = worker(pair, 'P3', 'async/b');
    const b3 = (await entered(p3)).fencingToken as number;
    // P4 waits for B through the failover.
    const p4 = worker(pair, 'P4', 'async/b');
    await p4.waitForType('contended', 60_000);

    const down = performance.now();
    await cluster.stopPrimary();
    await cluster.promoteStandby();
    await cluster.repointToStandby();
    const outageMs = performance.now() - down;

    // Every holder whose row vanished is told, by its signal and by withDbMutex.
    const told = { signalAborted: true, signalReason: { name: 'DbMutexLostError', reason: 'released-by-other' } };
    const timeoutError = { name: 'DbMutexTimeoutError', code: 'DB_MUTEX_LOST', reason: 'released-by-other' };
    const [s2, s3] = await Promise.all(
      [p2, p3].map((p) => p.waitForType('section', (LEASE_SECONDS + 60) * 1000)),
    );
    expect(s2).toMatchObject({ outcome: 'lost', fencingToken: a2, ...told, error: timeoutError });
    expect(s3).toMatchObject({ outcome: 'lost', fencingToken: b3, ...told, error: timeoutError });
    for (const p of [p2, p3]) expect(p.messages.filter((m) => m.type === 'lost')).toMatchObject([{ reason: 'released-by-other' }]);

    // P1's release was lost: its acquisition is back, holding A until that lease runs out.
    expect((await observer.inspect('async/a'))?.fencingToken).toBe(a1);

    // B's row vanished, so P4 got it on the new primary, with a token smaller than P3's.
    const e4 = await entered(p4);
    const b4 = e4.fencingToken as number;
    expect(b4).toBeLessThan(b3);
    const p3ToldUs = p3.messages.find((m) => m.type === 'lost')!.us as number;
    const overlapMs = Math.max(0, (p3ToldUs - (e4.monoStartUs as number)) / 1000);

    // The floor: the highest token the protected resources saw from the old primary.
    await observer.advanceFencingTokens(b3);
    p4.tell('release');
    expect(await p4.waitForType('section', 30_000)).toMatchObject({ outcome: 'ok' });
    const afterFloor = await observer.acquire('async/b');
    await afterFloor.release();
    expect(afterFloor.fencingToken).toBeGreaterThan(b3);
    const churnAfter = await observer.acquire('async/churn');
    await churnAfter.release();
    expect(churnAfter.fencingToken).toBeGreaterThan(b3);

    note(
      `asynchronous failover: outage ${Math.round(outageMs)} ms; lost with the old primary: P1's release of A (token ${a1} back), ` +
        `P2's acquisition of A (token ${a2}), P3's of B (token ${b3}); P4 then got B with token ${b4} (backwards), ` +
        `${overlapMs > 0 ? `while P3 still believed it held B for ${Math.round(overlapMs)} ms` : 'after P3 had been told'}; ` +
        `after advanceFencingTokens(${b3}): tokens ${afterFloor.fencingToken}, ${churnAfter.fencingToken}`,
    );
  }, 240_000);
});

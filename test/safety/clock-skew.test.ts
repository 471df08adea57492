/**
 * Claim 3: clock skew does not matter. Processes whose wall clocks are hours apart (a preload shifts
 * Date.now() and new Date()) contend correctly, a skewed holder's lease is neither cut short nor
 * stretched by anybody's clock, and the times a lock reports are the database's.
 */
import path from 'node:path';
import type { DbMutex } from '../../src';
import { ensureBuilt } from '../helpers/built';
import { dialect, TestContext } from '../helpers/db';
import { ChildGroup, FIXTURES_DIR } from '../helpers/children';
import { contentionViolations, runContention, runLine } from '../helpers/contention';
import { safetyDialect } from '../helpers/safety-dialect';
import { note } from '../helpers/report';
import { scaled, timeoutMs } from '../helpers/soak';

const HOUR_MS = 3_600_000;
const PRELOAD = ['--require', path.join(FIXTURES_DIR, 'clock-offset.js')];
const skewed = (offsetMs: number) => ({ nodeArgs: PRELOAD, env: { SAFETY_CLOCK_OFFSET_MS: String(offsetMs) } });

let ctx: TestContext;
let observer: DbMutex;
const children = new ChildGroup();

describe(`clock skew on ${dialect}`, () => {
  beforeAll(async () => {
    await ensureBuilt();
    ctx = await TestContext.create();
    observer = await ctx.mutex();
  }, 180_000);
  afterEach(() => children.dispose());
  afterAll(() => ctx?.cleanup());

  it(
    'keeps critical sections apart between processes whose clocks are hours apart',
    async () => {
      const offsets = [3 * HOUR_MS, -3 * HOUR_MS, 26 * HOUR_MS, -26 * HOUR_MS];
      const iterations = scaled(40);
      const before = Date.now();
      const result = await runContention(safetyDialect(ctx), children, {
        url: ctx.db.url,
        workers: offsets.length,
        iterations,
        lockIds: ['skewed'],
        waitMs: 30_000,
        leaseSeconds: 1,
        nodeArgs: (i) => skewed(offsets[i]!).nodeArgs,
        env: (i) => skewed(offsets[i]!).env,
        timeoutMs: timeoutMs(60_000),
      });
      // The preload really moved each worker's clock (within the time the run took).
      result.workerClocks.forEach((clock, i) => expect(Math.abs(clock - before - offsets[i]!)).toBeLessThan(60_000));
      note(runLine(`${dialect}, ${offsets.length} workers skewed by ${offsets.map((o) => o / HOUR_MS).join('/')} h`, result));
      // The same checks as mutual-exclusion.test.ts: sections, overlaps, lost updates, token order, lost locks.
      expect(contentionViolations(result, offsets.length * iterations)).toEqual({});
    },
    timeoutMs(90_000),
  );

  it('neither cuts short nor stretches the lease of a holder whose clock is 12 hours behind its rival', async () => {
    const LEASE_SECONDS = 2;
    const holder = children.spawn(
      'holder.js',
      { url: ctx.db.url, mode: 'hold', lockId: 'skewed-lease', leaseSeconds: LEASE_SECONDS },
      { ...skewed(-6 * HOUR_MS), name: 'holder at -6 h' },
    );
    const acquired = await holder.waitForType('acquired', 20_000);
    const dbNowMs = await ctx.sql.dbNowMs();
    // Its own clock is 6 hours off, but the lock's times are the database's.
    expect(Math.abs((acquired.dateNow as number) - dbNowMs + 6 * HOUR_MS)).toBeLessThan(60_000);
    expect(Math.abs((acquired.acquiredAtMs as number) - dbNowMs)).toBeLessThan(60_000);
    expect((acquired.expiresAtMs as number) - (acquired.acquiredAtMs as number)).toBe(LEASE_SECONDS * 1000);

    // A rival 6 hours ahead: by its own clock the holder's lease ran out hours ago. It must still be refused.
    const rival = children.spawn(
      'prober.js',
      { url: ctx.db.url, lockId: 'skewed-lease', intervalMs: 100 },
      { ...skewed(6 * HOUR_MS), name: 'rival at +6 h' },
    );
    await rival.waitForType('ready', 20_000);
    // Across several heartbeats of the holder.
    let refusals = 0;
    await rival.waitFor((m) => m.type === 'refused' && ++refusals >= 20, 20_000, '20 refusals');
    expect(rival.messages.some((m) => m.type === 'acquired')).toBe(false);

    // Read just before the kill: a reading after it could come late on a loaded machine, and the bound
    // below only gets stricter this way.
    const killedAtMs = await ctx.sql.dbNowMs();
    holder.kill('SIGKILL');
    await holder.exited;
    const taken = await rival.waitForType('acquired', (LEASE_SECONDS + 10) * 1000);
    const freedAfterMs = (taken.acquiredAtMs as number) - killedAtMs;
    note(`holder at -6 h, rival at +6 h, lease ${LEASE_SECONDS} s: rival refused ${refusals} times while the holder lived, took the lock ${Math.round(freedAfterMs)} ms after the kill`);
    expect(freedAfterMs).toBeGreaterThan(0);
    expect(freedAfterMs).toBeLessThanOrEqual((LEASE_SECONDS + 1) * 1000);
    expect(taken.fencingToken).toBeGreaterThan(acquired.fencingToken as number);
    await rival.waitForExit(20_000);
    expect(await observer.inspect('skewed-lease')).toBeNull();
  });
});

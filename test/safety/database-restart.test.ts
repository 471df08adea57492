/**
 * Claim 2 (server restart): PostgreSQL restarted while locks are held, on a throw-away server of this
 * file's own. Every holder is told (its signal aborts, withDbMutex throws DbMutexTimeoutError), and
 * across the outage and after it no two processes are ever inside the section of one lock at once.
 *
 * Sections are timed on the host's monotonic clock, shared by all processes and unaffected by the
 * outage; the database clock cannot be read while the database is down.
 */
import { initDbMutex } from '../../src';
import { ensureBuilt } from '../helpers/built';
import { makeSequelize } from '../helpers/db';
import { ChildGroup, type Child, type ChildMessage } from './helpers/children';
import { checkTokenOrder, findOverlaps, findTokenOrderViolations, type Section } from './helpers/contention';
import { onlyOn } from './helpers/dialect';
import { note } from './helpers/report';
import { ThrowawayServer } from './helpers/throwaway-server';
import { pause } from './helpers/watch';

let server: ThrowawayServer;
const children = new ChildGroup();


const nowUs = () => Number(process.hrtime.bigint() / 1000n);

async function freshDatabase(name: string): Promise<string> {
  const url = await server.createDatabase(name);
  const sequelize = makeSequelize(url);
  const mutex = initDbMutex(sequelize, { setDefault: false });
  await mutex.sync();
  await mutex.close();
  await sequelize.close();
  return url;
}

function spawnWorkers(url: string, count: number, config: Record<string, unknown>): Child[] {
  return Array.from({ length: count }, (_, i) =>
    children.spawn('restart-worker.js', { url, lockId: `restart/${i % 2}`, holdMs: 150, ...config }, { name: `worker ${i}` }),
  );
}

function sectionsOf(workers: readonly Child[]): (Section & ChildMessage)[] {
  return workers.flatMap((w, worker) =>
    w.messages.filter((m) => m.type === 'section').map((m) => ({ ...m, worker }) as unknown as Section & ChildMessage),
  );
}

async function waitForSections(workers: readonly Child[], perWorker: number, sinceUs: number, timeout: number): Promise<void> {
  await Promise.all(
    workers.map(async (w) => {
      for (let i = 1; i <= perWorker; i++) {
        let seen = 0;
        await w.waitFor(
          (m) => m.type === 'section' && m.outcome === 'ok' && (m.startUs as number) > sinceUs && ++seen >= i,
          timeout,
          `${perWorker} clean sections`,
        );
      }
    }),
  );
}

onlyOn('postgres')('PostgreSQL restarted while locks are held', () => {
  beforeAll(async () => {
    await ensureBuilt();
    server = await ThrowawayServer.start();
  }, 180_000);
  afterEach(() => children.dispose());
  afterAll(async () => {
    await children.dispose();
    await server?.dispose();
  }, 60_000);

  it('tells every holder when the database is down for longer than the lease, and keeps sections apart afterwards', async () => {
    const LEASE_SECONDS = 2;
    const url = await freshDatabase('safety_restart_long');
    const workers = spawnWorkers(url, 4, { leaseSeconds: LEASE_SECONDS });
    await Promise.all(workers.map((w) => w.waitForType('ready', 30_000)));

    // One holder per lock id, holding until told otherwise; the other two processes wait on them.
    const entered = new Map<string, Child>();
    const deadline = performance.now() + 20_000;
    while (entered.size < 2 && performance.now() < deadline) {
      for (const w of workers) {
        const m = w.messages.find((x) => x.type === 'enter');
        if (m && !entered.has(m.lockId as string)) entered.set(m.lockId as string, w);
      }
      await pause(20);
    }
    expect([...entered.keys()].sort()).toEqual(['restart/0', 'restart/1']);
    await pause(1000); // a renewal or two

    const stopUs = nowUs();
    await server.stop();
    const stoppedUs = nowUs();
    const holders = [...entered.values()];
    const told = await Promise.all(
      holders.map((w) => w.waitFor((m) => m.type === 'section' && m.long === true, (LEASE_SECONDS + 10) * 1000, 'the end of the held section')),
    );
    for (const w of workers) w.tell('short');
    // Keep the server down past every lease, then bring it back on the same port.
    await pause(Math.max(0, stopUs / 1000 + (LEASE_SECONDS + 1) * 1000 - nowUs() / 1000));
    const restartUs = nowUs();
    await server.start();
    const upUs = nowUs();

    await waitForSections(workers, 3, upUs, 60_000);
    for (const w of workers) w.tell('stop');
    await Promise.all(workers.map((w) => w.waitForExit(20_000)));

    note(
      `server down ${Math.round((upUs - stopUs) / 1000)} ms (stop took ${Math.round((stoppedUs - stopUs) / 1000)} ms, ` +
        `start ${Math.round((upUs - restartUs) / 1000)} ms), lease ${LEASE_SECONDS} s; holders told after ` +
        told.map((m) => `${Math.round(((m.endUs as number) - stopUs) / 1000)} ms`).join(', '),
    );
    for (const m of told) {
      expect(m).toMatchObject({
        outcome: 'lost',
        signalAborted: true,
        signalReason: { name: 'DbMutexLostError', reason: 'unreachable' },
        error: { name: 'DbMutexTimeoutError', code: 'DB_MUTEX_LOST', reason: 'unreachable' },
      });
      // Told within the lease (counted from its last renewal, before the stop), plus timer latency.
      expect((m.endUs as number) - stopUs).toBeLessThanOrEqual(LEASE_SECONDS * 1_000_000 + 250_000);
    }
    const sections = sectionsOf(workers);
    const afterRestart = sections.filter((s) => s.startUs > upUs);
    expect(afterRestart.every((s) => s.outcome === 'ok')).toBe(true);
    expect(findOverlaps(sections)).toEqual([]);
    note(checkTokenOrder(findTokenOrderViolations(sections)));
  }, 150_000);

  it('keeps sections apart when the database restarts in the middle of contention', async () => {
    const LEASE_SECONDS = 5;
    const url = await freshDatabase('safety_restart_brief');
    const workers = spawnWorkers(url, 4, { leaseSeconds: LEASE_SECONDS, startShort: true });
    await Promise.all(workers.map((w) => w.waitForType('ready', 30_000)));
    await waitForSections(workers, 2, 0, 30_000);

    const stopUs = nowUs();
    await server.stop();
    await server.start();
    const upUs = nowUs();
    await waitForSections(workers, 3, upUs, 60_000);
    for (const w of workers) w.tell('stop');
    await Promise.all(workers.map((w) => w.waitForExit(20_000)));

    const sections = sectionsOf(workers);
    const outcomes: Record<string, number> = {};
    for (const s of sections) outcomes[s.outcome as string] = (outcomes[s.outcome as string] ?? 0) + 1;
    note(`brief restart (${Math.round((upUs - stopUs) / 1000)} ms down, lease ${LEASE_SECONDS} s): sections ${JSON.stringify(outcomes)}`);
    expect(findOverlaps(sections)).toEqual([]);
    note(checkTokenOrder(findTokenOrderViolations(sections)));
    // Whatever was cut short by the restart was reported, never passed off as a clean section.
    for (const s of sections.filter((x) => x.outcome !== 'ok')) {
      expect(['lost', 'release-failed']).toContain(s.outcome);
    }
  }, 150_000);
});

/**
 * Claim 2 (database outage): the database becomes unavailable while locks are held. Every holder is
 * told (its signal aborts, withDbMutex throws DbMutexTimeoutError), a section whose release falls in
 * the outage is never passed off as clean, and across the outage and after it no two processes are
 * ever inside the section of one lock at once. The outage is each database's own:
 * - PostgreSQL: a throw-away embedded server of this file's own, stopped (fast shutdown) and started
 *   again on the same port and data;
 * - MariaDB (both drivers): a throw-away server of this file's own (`mariadb-install-db` into a
 *   temporary folder, its own loopback port), SIGKILLed (a crash, InnoDB recovery at the next start)
 *   for the long outage and shut down cleanly for the brief one, then started again;
 * - SQLite has no server to stop: its outage is another process holding the file's write lock
 *   (`BEGIN IMMEDIATE`) past every statement's busy timeout; reads keep working, no write can.
 *
 * Sections are timed on the host's monotonic clock, shared by all processes and unaffected by the
 * outage; the database clock cannot be read while the database is down.
 */
import { initDbMutex } from '../../src';
import { ensureBuilt } from '../helpers/built';
import { createTestDatabase, dialect, makeSequelize, type TestDatabase } from '../helpers/db';
import { ChildGroup, type Child, type ChildMessage } from '../helpers/children';
import { checkTokenOrder, findOverlaps, findTokenOrderViolations, type Section } from '../helpers/contention';
import { note } from '../helpers/report';
import { SqliteWriter } from '../helpers/sqlite-faults';
import { ThrowawayMariaDb, ThrowawayServer } from '../helpers/throwaway-server';
import { sleep } from '../helpers/wait';

/** Each statement of the workers gives up after this long (on SQLite: how long it waits for the write lock). */
const STATEMENT_TIMEOUT_MS = 500;
/**
 * Timer latency allowed beyond the lease before a holder is told: the library's own deadline is exact
 * (it starts before the last renewal was sent), but on a loaded 2-core machine a timer may fire late.
 */
const TIMER_SLACK_MS = 500;

/** A database that can be made unavailable and available again. */
interface Outage {
  /** What the outage is, for the notes. */
  readonly what: { long: string; brief: string };
  /** A new database with the lock schema, on the database this outage hits. */
  freshDatabase(name: string): Promise<string>;
  /** Makes the database unavailable; resolves once it surely is. */
  begin(kind: 'long' | 'brief'): Promise<void>;
  /** Makes it available again; resolves once it is. */
  end(): Promise<void>;
  dispose(): Promise<void>;
}

async function syncSchema(url: string): Promise<void> {
  const sequelize = makeSequelize(url);
  const mutex = initDbMutex(sequelize, { setDefault: false });
  await mutex.sync();
  await mutex.close();
  await sequelize.close();
}

function serverOutage(server: ThrowawayServer | ThrowawayMariaDb): Outage {
  const pg = server instanceof ThrowawayServer;
  return {
    what: pg
      ? { long: 'PostgreSQL stopped (fast shutdown)', brief: 'PostgreSQL stopped (fast shutdown)' }
      : { long: 'MariaDB SIGKILLed', brief: 'MariaDB shut down (SIGTERM)' },
    async freshDatabase(name) {
      const url = await server.createDatabase(name);
      await syncSchema(url);
      return url;
    },
    begin: (kind) => (server instanceof ThrowawayServer ? server.stop() : kind === 'long' ? server.kill() : server.shutdown()),
    end: () => server.start(),
    dispose: () => server.dispose(),
  };
}

function sqliteOutage(): Outage {
  const group = new ChildGroup();
  const databases: TestDatabase[] = [];
  let writer: SqliteWriter | null = null;
  return {
    what: { long: 'SQLite write lock held by another process', brief: 'SQLite write lock held by another process' },
    async freshDatabase() {
      const db = await createTestDatabase();
      databases.push(db);
      await syncSchema(db.url);
      writer = SqliteWriter.spawn(group, db.url.slice('sqlite:'.length), 'SQLite write-lock holder');
      return db.url;
    },
    begin: () => writer!.hold(),
    end: () => writer!.rollback(),
    async dispose() {
      await group.dispose();
      for (const db of databases) await db.drop();
    },
  };
}

async function startOutage(): Promise<Outage> {
  if (dialect === 'postgres') return serverOutage(await ThrowawayServer.start());
  if (dialect === 'mariadb' || dialect === 'mysql') return serverOutage(await ThrowawayMariaDb.start(dialect));
  return sqliteOutage();
}

let outage: Outage;
const children = new ChildGroup();

const nowUs = () => Number(process.hrtime.bigint() / 1000n);

function spawnWorkers(url: string, count: number, config: Record<string, unknown>): Child[] {
  return Array.from({ length: count }, (_, i) =>
    children.spawn(
      'restart-worker.js',
      { url, lockId: `restart/${i % 2}`, holdMs: 150, statementTimeoutMs: STATEMENT_TIMEOUT_MS, ...config },
      { name: `worker ${i}` },
    ),
  );
}

type ReportedSection = Section & ChildMessage & { settledUs: number; outcome: string };

function sectionsOf(workers: readonly Child[]): ReportedSection[] {
  return workers.flatMap((w, worker) =>
    w.messages.filter((m) => m.type === 'section').map((m) => ({ ...m, worker }) as unknown as ReportedSection),
  );
}

/**
 * Sections whose release could only have run while the database was surely unavailable: the
 * release statement is sent after `endUs` and answered before `settledUs`, and the outage surely
 * lasted from `downUs` (the outage had begun) to `upUs` (before the command that ends it was sent).
 */
function releasedDuringOutage(sections: readonly ReportedSection[], downUs: number, upUs: number): ReportedSection[] {
  return sections.filter((s) => s.endUs >= downUs && s.settledUs <= upUs);
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

function outcomeCounts(sections: readonly ReportedSection[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of sections) out[s.outcome] = (out[s.outcome] ?? 0) + 1;
  return out;
}

describe(`the ${dialect} database unavailable while locks are held`, () => {
  beforeAll(async () => {
    await ensureBuilt();
    outage = await startOutage();
  }, 180_000);
  afterEach(() => children.dispose());
  afterAll(async () => {
    await children.dispose();
    await outage?.dispose();
  }, 60_000);

  it('tells every holder when the database is unavailable for longer than the lease, and keeps sections apart afterwards', async () => {
    const LEASE_SECONDS = 2;
    const url = await outage.freshDatabase('safety_restart_long');
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
      await sleep(20);
    }
    expect([...entered.keys()].sort()).toEqual(['restart/0', 'restart/1']);
    await sleep(1000); // a renewal or two

    const stopUs = nowUs();
    await outage.begin('long');
    const downUs = nowUs();
    const holders = [...entered.values()];
    const told = await Promise.all(
      holders.map((w) => w.waitFor((m) => m.type === 'section' && m.long === true, (LEASE_SECONDS + 10) * 1000, 'the end of the held section')),
    );
    for (const w of workers) w.tell('short');
    // Keep the database unavailable well past every lease (and every failed release), then bring it back.
    await sleep(Math.max(0, stopUs / 1000 + (LEASE_SECONDS + 2) * 1000 - nowUs() / 1000));
    const restartUs = nowUs();
    await outage.end();
    const upUs = nowUs();

    await waitForSections(workers, 3, upUs, 60_000);
    for (const w of workers) w.tell('stop');
    await Promise.all(workers.map((w) => w.waitForExit(20_000)));

    const sections = sectionsOf(workers);
    const inOutage = releasedDuringOutage(sections, downUs, restartUs);
    note(
      `${outage.what.long}: unavailable ${Math.round((upUs - stopUs) / 1000)} ms (taking it down took ${Math.round((downUs - stopUs) / 1000)} ms, ` +
        `bringing it back ${Math.round((upUs - restartUs) / 1000)} ms), lease ${LEASE_SECONDS} s; holders told ` +
        told.map((m) => `${Math.round(((m.abortedUs as number) - downUs) / 1000)} ms`).join(', ') +
        ` after it was down; ${sections.length} sections ${JSON.stringify(outcomeCounts(sections))}, ` +
        `${inOutage.length} released during the outage`,
    );
    // The held sections ended and failed to release while the database was away: the outage
    // window check has something to check.
    expect(inOutage.length).toBeGreaterThanOrEqual(2);
    expect(inOutage.filter((s) => s.outcome === 'ok')).toEqual([]);
    for (const m of told) {
      expect(m).toMatchObject({
        outcome: 'lost',
        signalAborted: true,
        signalReason: { name: 'DbMutexLostError', reason: 'unreachable' },
        error: { name: 'DbMutexTimeoutError', code: 'DB_MUTEX_LOST', reason: 'unreachable' },
      });
      // Told within the lease, which runs from the last renewal sent, before the database went away.
      expect(m.abortedUs as number).toBeGreaterThan(stopUs);
      expect((m.abortedUs as number) - downUs).toBeLessThanOrEqual(LEASE_SECONDS * 1_000_000 + TIMER_SLACK_MS * 1000);
      // And before the database was back, i.e. before any other process could have taken the lock.
      expect(m.abortedUs as number).toBeLessThan(restartUs);
    }
    const afterRestart = sections.filter((s) => s.startUs > upUs);
    expect(afterRestart.filter((s) => s.outcome !== 'ok')).toEqual([]);
    expect(findOverlaps(sections)).toEqual([]);
    note(checkTokenOrder(findTokenOrderViolations(sections)));
  }, 150_000);

  it('reports a section released while the database is briefly unavailable as a failed release, and keeps sections apart mid-contention', async () => {
    const LEASE_SECONDS = 5;
    const url = await outage.freshDatabase('safety_restart_brief');
    const workers = spawnWorkers(url, 4, { leaseSeconds: LEASE_SECONDS, startShort: true });
    await Promise.all(workers.map((w) => w.waitForType('ready', 30_000)));
    await waitForSections(workers, 2, 0, 30_000);

    // From now on sections last until the test ends them: one holder per lock id, in the section
    // when the database goes away, ending it while the database is surely unavailable (well within
    // the lease, so the lock is not lost: the release is what meets the outage).
    const longSinceUs = nowUs();
    for (const w of workers) w.tell('long');
    const holders = new Map<string, Child>();
    const deadline = performance.now() + 20_000;
    while (holders.size < 2 && performance.now() < deadline) {
      for (const w of workers) {
        const m = w.messages.find((x) => x.type === 'enter' && x.long === true && (x.startUs as number) > longSinceUs);
        if (m && !holders.has(m.lockId as string)) holders.set(m.lockId as string, w);
      }
      await sleep(20);
    }
    expect([...holders.keys()].sort()).toEqual(['restart/0', 'restart/1']);
    const stopUs = nowUs();
    await outage.begin('brief');
    const downUs = nowUs();
    for (const w of holders.values()) w.tell('end');
    const ended = await Promise.all(
      [...holders.values()].map((w) => w.waitFor((m) => m.type === 'section' && m.long === true, 10_000, 'the end of the held section')),
    );
    for (const w of workers) w.tell('short');
    const restartUs = nowUs();
    await outage.end();
    const upUs = nowUs();
    await waitForSections(workers, 3, upUs, 60_000);
    for (const w of workers) w.tell('stop');
    await Promise.all(workers.map((w) => w.waitForExit(20_000)));

    const sections = sectionsOf(workers);
    const inOutage = releasedDuringOutage(sections, downUs, restartUs);
    note(
      `${outage.what.brief}, briefly (${Math.round((upUs - stopUs) / 1000)} ms, lease ${LEASE_SECONDS} s): ` +
        `${sections.length} sections ${JSON.stringify(outcomeCounts(sections))}; ` +
        `${inOutage.length} released during the outage: ${JSON.stringify(outcomeCounts(inOutage))}`,
    );
    // A section whose release could only have met the unavailable database was never passed off as
    // clean; the two sections the test ended during the outage are among them.
    expect(inOutage.length).toBeGreaterThanOrEqual(2);
    expect(inOutage.filter((s) => s.outcome === 'ok')).toEqual([]);
    for (const m of ended) {
      expect(m).toMatchObject({ outcome: 'release-failed', signalAborted: false });
      expect((m.error as { name?: string }).name).not.toMatch(/^DbMutex/);
    }
    expect(findOverlaps(sections)).toEqual([]);
    note(checkTokenOrder(findTokenOrderViolations(sections)));
  }, 150_000);
});

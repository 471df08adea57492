/**
 * The demo behind `npm start`, run from this repository's build against this file's own database
 * (DATABASE_URL set, so no embedded server): what a new user sees in the first half-minute, then Ctrl-C.
 * test/demo-fresh-clone.test.ts covers the zero-configuration path (embedded PostgreSQL) from a clone.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { claimInstance, DemoAlreadyRunningError } from '../examples/demo/single-instance';
import { ensureBuilt, ROOT } from './helpers/built';
import { dialect, TestContext } from './helpers/db';
import { cleanEnv, descendants, DemoProcess, isRunning, killAll } from './helpers/demo-process';
import { overlaps, readTrace, TRACER, type Section } from './helpers/demo-trace';
import { freePort } from './helpers/free-port';
import { eventually } from './helpers/wait';

const MAIN = path.join(ROOT, 'dist-examples', 'demo', 'main.js');
const READY = /Ready\. Dashboard: (http:\/\/localhost:\d+\/admin\/locks)/;

/** Builds the demo itself (dist-examples/); the package is built by ensureBuilt(). */
async function buildDemo(): Promise<void> {
  const tsc = require.resolve('typescript/bin/tsc', { paths: [ROOT] });
  await promisify(execFile)(process.execPath, [tsc, '-p', 'tsconfig.examples.json'], { cwd: ROOT, timeout: 120_000 });
}

// The demo is PostgreSQL by design (its seeders write PostgreSQL SQL); the other dialects skip it.
const describePostgres = dialect === 'postgres' ? describe : describe.skip;

describePostgres('the demo (npm start) on an existing database (PostgreSQL)', () => {
  let ctx: TestContext;
  let demo: DemoProcess;
  let port: number;
  let env: NodeJS.ProcessEnv;
  let workerPids: number[] = [];
  let traceDir: string;
  let traceFile: string;

  beforeAll(async () => {
    await ensureBuilt();
    await buildDemo();
    ctx = await TestContext.create();
    port = await freePort();
    // Every process of the demo records its critical sections (test/fixtures/demo/trace.js).
    traceDir = mkdtempSync(path.join(tmpdir(), 'db-mutex-demo-trace-'));
    traceFile = path.join(traceDir, 'sections.jsonl');
    const nodeOptions = [process.env.NODE_OPTIONS, `--require ${JSON.stringify(TRACER)}`].filter(Boolean).join(' ');
    env = cleanEnv({ DATABASE_URL: ctx.db.url, PORT: String(port), DEMO_TRACE_FILE: traceFile, NODE_OPTIONS: nodeOptions });
    demo = DemoProcess.start(process.execPath, [MAIN], { cwd: ROOT, env });
    await demo.waitFor(READY, 90_000);
    workerPids = descendants(demo.pid)
      .filter((p) => p.cmdline.includes('worker.js'))
      .map((p) => p.pid);
  }, 180_000);

  afterAll(async () => {
    if (demo?.running) {
      killAll(descendants(demo.pid));
      demo.child.kill('SIGKILL');
      await demo.exited;
    }
    await ctx?.cleanup();
    if (traceDir) rmSync(traceDir, { recursive: true, force: true });
  });

  it('prints the dashboard URL on the port from PORT and says that only loopback clients are admitted', () => {
    expect(demo.output).toContain(`Ready. Dashboard: http://localhost:${port}/admin/locks`);
    expect(demo.output).toMatch(/admits only requests from this machine \(loopback\)/);
    expect(demo.output).toMatch(/schema created: 20261126000000-create-db-mutex, 20261130000000-add-lock-kinds, 20261130000100-create-db-mutex-history \(sequelize-cli db:migrate\)/);
    expect(demo.output).toMatch(/demo data seeded: .*db-mutex-demo/);
  });

  it('starts two worker processes', () => {
    expect(workerPids).toHaveLength(2);
    expect(demo.output).toMatch(/workers started: worker-1 \(pid \d+\), worker-2 \(pid \d+\)/);
  });

  it('lists the seeded locks on the dashboard for a loopback client', async () => {
    const response = await fetch(`http://127.0.0.1:${port}/admin/locks`);
    expect(response.status).toBe(200);
    const html = await response.text();
    for (const lockId of ['nightly-report', 'cache:warmup', 'search:reindex']) expect(html).toContain(lockId);
  });

  it('runs the jobs in both workers, competing for the same locks, never two runs of one job at once, and logs each outcome on one line', async () => {
    await demo.waitFor(/\[worker-[12]\] jobs\/nightly-report ran \(fencing \d+\)\n/, 30_000);
    await demo.waitFor(/\[worker-[12]\] jobs\/nightly-report skipped: locked/, 30_000);
    await demo.waitFor(/\[worker-[12]\] jobs\/import-legacy-feed started \(fencing \d+\)/, 30_000);
    // Every third billing run in a worker outlives its TTL: at the latest on the third run overall.
    await demo.waitFor(/\[worker-[12]\] jobs\/billing-sync lost its lock \(expired\) after [\d.]+ s \(fencing \d+\)/, 45_000);

    const { sections, refusals } = readTrace(traceFile);
    const jobs = ['jobs/nightly-report', 'jobs/billing-sync'];
    const workers = ['worker-1', 'worker-2'];
    // Both workers took part in every job: each acquired it or was refused it at least once.
    for (const lockId of jobs) {
      for (const who of workers) {
        const tried = sections.some((s) => s.who === who && s.lockId === lockId) || refusals.some((r) => r.who === who && r.lockId === lockId);
        expect({ who, lockId, tried }).toEqual({ who, lockId, tried: true });
      }
    }
    // Competing for the same locks: a worker was refused a job while the other worker was running it.
    const show = (s: Section) => `${s.who} ${s.lockId} #${s.token} [${s.start}, ${s.end}]`;
    const competed = refusals.filter(
      (r) => r.code === 'DB_MUTEX_HELD' && sections.some((s) => s.lockId === r.lockId && s.who !== r.who && s.start <= r.t && r.t <= s.end),
    );
    expect(competed.length).toBeGreaterThan(0);
    expect(refusals.filter((r) => r.code !== 'DB_MUTEX_HELD')).toEqual([]);
    // Two runs of the same job never overlapped in time, across every process of the demo.
    expect(overlaps(sections).map(([a, b]) => `${show(a)} overlaps ${show(b)}`)).toEqual([]);
    expect(sections.filter((s) => jobs.includes(s.lockId)).length).toBeGreaterThanOrEqual(4);

    // Each finished run of these jobs is logged by its own worker, on one line naming its outcome and token.
    const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
    for (const s of sections.filter((x) => jobs.includes(x.lockId) && x.end !== Infinity)) {
      const line =
        s.lostReason === null
          ? `[${s.who}] ${s.lockId} ran (fencing ${s.token})\n`
          : `[${s.who}] ${s.lockId} lost its lock (${s.lostReason}) after `;
      const pattern = s.lostReason === null ? escape(line) : `${escape(line)}[\\d.]+ s \\(fencing ${s.token}\\)`;
      await demo.waitFor(new RegExp(pattern), 15_000);
    }
    // And no worker claims a run the trace does not have.
    for (const m of demo.output.matchAll(/\[(worker-[12])\] (jobs\/\S+) ran \(fencing (\d+)\)/g)) {
      const [, who, lockId, token] = m;
      expect(sections.filter((s) => s.who === who && s.lockId === lockId && s.token === Number(token))).toHaveLength(1);
    }
  }, 120_000);

  it('lets only one of two simultaneous imports run; the other gets 409 Conflict naming the lock', async () => {
    const post = () => fetch(`http://127.0.0.1:${port}/imports/7`, { method: 'POST' });
    const [a, b] = await Promise.all([post(), post()]);
    const byStatus = new Map([
      [a.status, a],
      [b.status, b],
    ]);
    expect([...byStatus.keys()].sort()).toEqual([200, 409]);
    const conflict = (await byStatus.get(409)!.json()) as { error: { code: string; lockId: string } };
    expect(conflict.error).toMatchObject({ code: 'DB_MUTEX_HELD', lockId: 'import:7' });
    expect(byStatus.get(409)!.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(await byStatus.get(200)!.json()).toMatchObject({ import: '7', status: 'done' });
  }, 30_000);

  it('refuses a second demo on the same port with a one-line reason, and leaves the first alone', async () => {
    const second = DemoProcess.start(process.execPath, [MAIN], { cwd: ROOT, env });
    expect((await second.exited).code).toBe(1);
    expect(second.output).toContain(`Port ${port} is already in use`);
    expect(second.output).not.toMatch(/^\s+at /m);
    expect(demo.running).toBe(true);
  }, 60_000);

  it('stops cleanly on SIGTERM: exit code 0, no worker left, and every lock the demo held released', async () => {
    const children = descendants(demo.pid);
    demo.child.kill('SIGTERM');
    expect(await demo.exited).toEqual({ code: 0, signal: null });
    expect(demo.output).toMatch(/\[worker-1\] stopped \(.*\); its locks are released/);
    expect(demo.output).toMatch(/\[worker-2\] stopped \(.*\); its locks are released/);
    expect(demo.output).toMatch(/\[demo\] stopped cleanly\./);
    expect(await eventually(() => children.every((p) => !isRunning(p.pid)), 10_000)).toBe(true);
    const rows = await ctx.exec<{ lock_id: string }>("SELECT lock_id FROM db_mutex_locks WHERE holder IN ('worker-1', 'worker-2', 'demo-app')");
    expect(rows).toEqual([]);
  }, 60_000);
});

describe("the demo's single-instance guard (one demo per embedded data folder)", () => {
  let dir: string;
  let file: string;

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'db-mutex-demo-guard-'));
    file = path.join(dir, 'sub', 'demo.pid');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('refuses a second claim while the first demo lives, naming its pid and what to do', () => {
    const claim = claimInstance(file);
    expect(readFileSync(file, 'utf8').trim()).toBe(String(process.pid));
    const parent = process.ppid; // a live process other than this one
    let error: unknown;
    try {
      claimInstance(file, parent);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(DemoAlreadyRunningError);
    expect((error as Error).message).toContain(`pid ${process.pid}`);
    expect((error as Error).message).toMatch(/Stop it first.*DATABASE_URL=/);
    claim.release();
    expect(existsSync(file)).toBe(false);
  });

  it('takes over the file of a demo that died', () => {
    const dead = claimInstance(file, 2 ** 22 + 12345); // above Linux's pid_max default: no such process
    const claim = claimInstance(file);
    expect(readFileSync(file, 'utf8').trim()).toBe(String(process.pid));
    dead.release(); // not its file anymore: leaves it alone
    expect(existsSync(file)).toBe(true);
    claim.release();
    expect(existsSync(file)).toBe(false);
  });

  it('treats a file with garbage in it as left over', () => {
    claimInstance(file).release();
    writeFileSync(file, 'not a pid\n');
    claimInstance(file).release();
    expect(existsSync(file)).toBe(false);
  });
});

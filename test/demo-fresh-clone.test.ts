/**
 * The README's promise, checked from scratch: clone the repository into an empty folder, `npm ci`,
 * `npm start` with no DATABASE_URL (so the embedded PostgreSQL), see the dashboard list the seeded locks
 * on loopback, SIGTERM, and nothing of it is left running; then a second start finds the same data.
 *
 * The folder is 0700, like `mktemp -d` or /root: run as root, the embedded server runs as the "postgres"
 * user, which cannot enter it, so the demo must keep its binaries and data elsewhere and say where.
 *
 * Slow (npm ci, maybe compiling sqlite3, the first initdb), so it runs only with
 * DB_MUTEX_FRESH_CLONE_TEST=1 (CI sets it). `git clone` takes the committed HEAD: uncommitted work is not
 * in it. While developing, DB_MUTEX_FRESH_CLONE_SOURCE=worktree copies the working tree instead
 * (tracked and untracked files, minus the git-ignored ones).
 */
import { execFile, type ExecFileOptions } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ROOT } from './helpers/built';
import { dialect } from './helpers/db';
import { cleanEnv, DemoProcess, killAll, processesUnder } from './helpers/demo-process';
import { freePort } from './helpers/free-port';
import { eventually } from './helpers/wait';

// The zero-configuration demo is an embedded PostgreSQL: it runs once, in the PostgreSQL run of the suite.
const ENABLED = process.env.DB_MUTEX_FRESH_CLONE_TEST === '1' && dialect === 'postgres';
const FROM_WORKTREE = process.env.DB_MUTEX_FRESH_CLONE_SOURCE === 'worktree';
const MINUTE = 60_000;
const AS_ROOT = typeof process.getuid === 'function' && process.getuid() === 0;

function run(command: string, args: string[], options: ExecFileOptions & { timeout: number }): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { maxBuffer: 64 * 1024 * 1024, ...options }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} ${args.join(' ')} failed: ${error.message}\n${String(stderr)}\n${String(stdout)}`));
      else resolve(String(stdout));
    });
  });
}

async function copyWorktree(from: string, to: string): Promise<void> {
  const files = (await run('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: from, timeout: MINUTE }))
    .split('\0')
    .filter(Boolean);
  for (const file of files) {
    mkdirSync(path.dirname(path.join(to, file)), { recursive: true });
    try {
      copyFileSync(path.join(from, file), path.join(to, file));
    } catch (error) {
      // Deleted in the working tree but not yet in the index.
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
}

(ENABLED ? describe : describe.skip)('a fresh clone: npm ci, then npm start with no configuration', () => {
  let dir: string;
  let repo: string;
  /** As root: where the demo said it keeps the embedded cluster, outside the clone. */
  let clusterDir: string | null = null;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'db-mutex-fresh-clone-'));
    chmodSync(dir, 0o700); // what mkdtemp makes anyway: said out loud, as it is the point

    repo = path.join(dir, 'repo');
    if (FROM_WORKTREE) await copyWorktree(ROOT, repo);
    else await run('git', ['clone', '--quiet', ROOT, repo], { timeout: 5 * MINUTE });
    // A committed node_modules symlink (a worktree's link to another checkout's modules) would make
    // npm ci empty the checkout it points to.
    if (lstatSync(path.join(repo, 'node_modules'), { throwIfNoEntry: false })?.isSymbolicLink()) rmSync(path.join(repo, 'node_modules'));
    // Generous: on a busy machine, compiling sqlite3 from source alone has taken over 15 minutes.
    await run('npm', ['ci', '--prefer-offline', '--no-audit', '--no-fund'], { cwd: repo, env: cleanEnv(), timeout: 45 * MINUTE });
  }, 50 * MINUTE);

  afterAll(async () => {
    if (!dir) return;
    // Only after a failure is anything still running; it must not outlive the test.
    const leftovers = () => [dir, ...(clusterDir ? [clusterDir] : [])].flatMap((d) => processesUnder(d));
    killAll(leftovers());
    await eventually(() => leftovers().length === 0, 10_000);
    rmSync(dir, { recursive: true, force: true });
    if (clusterDir) rmSync(clusterDir, { recursive: true, force: true });
  }, MINUTE);

  it('serves the dashboard with the seeded locks on loopback, refuses a second start, leaves nothing running after SIGTERM, and starts again on the same data', async () => {
    const port = await freePort();
    const npmStart = DemoProcess.start('npm', ['start'], { cwd: repo, env: cleanEnv({ PORT: String(port) }) });
    await npmStart.waitFor(/Ready\. Dashboard: http:\/\/localhost:\d+\/admin\/locks/, 10 * MINUTE);
    expect(npmStart.output).toContain('no DATABASE_URL: starting an embedded PostgreSQL');
    if (AS_ROOT) {
      // The start-up line names the folder the "postgres" user can reach, outside the clone.
      const moved = /cannot reach .+, so its binaries and data are in (\S+) \(kept between runs\)/.exec(npmStart.output);
      expect(moved).not.toBeNull();
      clusterDir = moved![1]!;
      expect(clusterDir.startsWith(dir + path.sep)).toBe(false);
      expect(existsSync(path.join(clusterDir, 'data', 'PG_VERSION'))).toBe(true);
    } else {
      expect(npmStart.output).toContain('data in .embedded-pg/data (kept between runs)');
    }
    const everything = () => [dir, ...(clusterDir ? [clusterDir] : [])].flatMap((d) => processesUnder(d));

    const response = await fetch(`http://127.0.0.1:${port}/admin/locks`);
    expect(response.status).toBe(200);
    const html = await response.text();
    expect(html).toContain('nightly-report');
    expect(html).toContain('cache:warmup');

    // A second start on the same data folder fails at once with a clear message (another port, so it is
    // the data-folder guard that refuses, not the port check).
    const second = DemoProcess.start(process.execPath, ['dist-examples/demo/main.js'], {
      cwd: repo,
      env: cleanEnv({ PORT: String(await freePort()) }),
    });
    expect((await second.exited).code).toBe(1);
    expect(second.output).toMatch(/Another demo is already running \(pid \d+\)/);
    expect(npmStart.running).toBe(true);

    // As `kill <pid>` or a container stop would: SIGTERM to npm only.
    npmStart.child.kill('SIGTERM');
    await npmStart.exited;
    const clean = await eventually(() => everything().length === 0, 2 * MINUTE);
    expect(everything().map((p) => `${p.pid} ${p.cmdline}`)).toEqual([]);
    expect(clean).toBe(true);
    expect(npmStart.output).toMatch(/\[demo\] stopped cleanly\./);

    // Nothing left behind trips the next start: same folder, same data (the schema is already there).
    const again = DemoProcess.start('npm', ['start'], { cwd: repo, env: cleanEnv({ PORT: String(port) }) });
    await again.waitFor(/Ready\. Dashboard: http:\/\/localhost:\d+\/admin\/locks/, 5 * MINUTE);
    expect(again.output).toContain('schema up to date');
    if (clusterDir) expect(again.output).toContain(`binaries and data are in ${clusterDir} (kept between runs)`);
    again.child.kill('SIGTERM');
    await again.exited;
    expect(await eventually(() => everything().length === 0, 2 * MINUTE)).toBe(true);
    expect(again.output).toMatch(/\[demo\] stopped cleanly\./);
  }, 20 * MINUTE);
});

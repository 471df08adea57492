/**
 * The README's leader-election example runs as written (transpiled from TypeScript, against the test
 * database), as two processes: the second leads once the first is stopped, with a greater epoch.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { ensureBuilt } from './helpers/built';
import { createTestDatabase, type TestDatabase } from './helpers/db';

const root = join(__dirname, '..');
let db: TestDatabase;
let file: string;
const processes: ChildProcess[] = [];

interface Running {
  output: () => string;
  /** Resolves with the first match of `pattern` in stdout (fails after `ms`: a hang guard). */
  waitFor(pattern: RegExp, ms: number): Promise<RegExpExecArray>;
  exited: Promise<number | null>;
  child: ChildProcess;
}

function start(): Running {
  const child = spawn(process.execPath, [file], { env: { ...process.env, DATABASE_URL: db.url }, stdio: ['ignore', 'pipe', 'pipe'] });
  processes.push(child);
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    exited,
    output: () => out,
    waitFor: (pattern, ms) =>
      new Promise((resolve, reject) => {
        const deadline = Date.now() + ms;
        const check = () => {
          const m = pattern.exec(out);
          if (m) return resolve(m);
          if (Date.now() > deadline || child.exitCode !== null) return reject(new Error(`no ${String(pattern)} in stdout:\n${out}\nstderr:\n${err}`));
          setTimeout(check, 50);
        };
        check();
      }),
  };
}

beforeAll(async () => {
  await ensureBuilt();
  db = await createTestDatabase();
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const block = /<!-- leader-election:start -->\s*```ts\n([\s\S]*?)```\s*<!-- leader-election:end -->/.exec(readme);
  if (!block) throw new Error('README.md has no leader-election block');
  const js = ts.transpileModule(block[1]!, { compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 } }).outputText;
  // Inside the repository, 'sequelize-db-mutex' resolves to the built package through its own "exports".
  const dir = join(root, 'test', 'artifacts');
  mkdirSync(dir, { recursive: true });
  file = join(dir, `leader-election-${process.pid}.mjs`);
  writeFileSync(file, js);
}, 180_000);
afterAll(async () => {
  for (const p of processes) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  rmSync(file, { force: true });
  await db?.drop();
});

it('runs the README leader-election example as written: the second process leads with a greater epoch once the first stops', async () => {
  const first = start();
  const firstEpoch = Number((await first.waitFor(/leading with epoch (\d+)/, 30_000))[1]);
  const second = start();
  // The second campaigns while the first leads (long enough for it to have started and tried).
  await new Promise((resolve) => setTimeout(resolve, 3000));
  expect(second.output()).not.toMatch(/leading/);
  first.child.kill('SIGTERM');
  expect(await first.exited).toBe(0);
  expect(first.output()).toContain(`stepped down from epoch ${firstEpoch}: stopped`);
  const secondEpoch = Number((await second.waitFor(/leading with epoch (\d+)/, 30_000))[1]);
  expect(secondEpoch).toBeGreaterThan(firstEpoch);
  second.child.kill('SIGTERM');
  expect(await second.exited).toBe(0);
  expect(second.output()).toContain(`stepped down from epoch ${secondEpoch}: stopped`);
}, 120_000);

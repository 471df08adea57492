/** The README's "Counting semaphores" example runs as written (transpiled from TypeScript, against the test database). */
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import ts from 'typescript';
import { ensureBuilt } from './helpers/built';
import { createTestDatabase, type TestDatabase } from './helpers/db';

const run = promisify(execFile);
const root = join(__dirname, '..');
let db: TestDatabase;

beforeAll(async () => {
  await ensureBuilt();
  db = await createTestDatabase();
}, 180_000);
afterAll(() => db.drop());

it('runs the README counting-semaphore example as written: never more than 3 at once, a full refusal, the wrapper', async () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const block = /<!-- semaphore-example:start -->\s*```ts\n([\s\S]*?)```\s*<!-- semaphore-example:end -->/.exec(readme);
  expect(block).not.toBeNull();
  const js = ts.transpileModule(block![1]!, { compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 } }).outputText;
  // Inside the repository, 'sequelize-db-mutex' resolves to the built package through its own "exports".
  const dir = join(root, 'test', 'artifacts');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `semaphore-example-${process.pid}.mjs`);
  writeFileSync(file, js);
  let stdout: string;
  try {
    ({ stdout } = await run(process.execPath, [file], { env: { ...process.env, DATABASE_URL: db.url } }));
  } finally {
    rmSync(file, { force: true });
  }
  const permits = [...stdout.matchAll(/holds permit (\d) of 3, token \d+/g)].map((m) => Number(m[1]));
  expect(permits).toHaveLength(4);
  expect(new Set(permits.slice(0, 3))).toEqual(new Set([0, 1, 2]));
  expect(stdout).toContain('exports done: 1, 2, 3, 4');
  expect(stdout).toContain('full: 1 of 1 permits held');
  expect(stdout).toContain('rebuilt acme');
}, 60_000);

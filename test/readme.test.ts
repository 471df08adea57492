/** The README's quick start runs as written (transpiled from TypeScript, against the test database). */
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import ts from 'typescript';
import { createTestDatabase, type TestDatabase } from './helpers/db';

const run = promisify(execFile);
const root = join(__dirname, '..');
let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(() => db.drop());

it('runs the README quick start as written', async () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const block = /<!-- quickstart:start -->\s*```ts\n([\s\S]*?)```\s*<!-- quickstart:end -->/.exec(readme);
  expect(block).not.toBeNull();
  const js = ts.transpileModule(block![1]!, { compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 } }).outputText;
  // Inside the repository, 'sequelize-db-mutex' resolves to the built package through its own "exports".
  const dir = join(root, 'test', 'artifacts');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `quickstart-${process.pid}.mjs`);
  writeFileSync(file, js);
  let stdout: string;
  try {
    ({ stdout } = await run(process.execPath, [file], { env: { ...process.env, DATABASE_URL: db.url } }));
  } finally {
    rmSync(file, { force: true });
  }
  expect(stdout).toMatch(/running with fencing token \d+/);
  expect(stdout).toContain('sent invoices for 42');
});

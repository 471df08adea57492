/**
 * The README's runnable examples (quick start, metrics, tracing, lock history) run as written (transpiled from
 * TypeScript, against the test database), and every relative link of the README and of docs/ leads to
 * a file, and a heading, that exists.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
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

function readmeBlock(name: string): string {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const block = new RegExp(`<!-- ${name}:start -->\\s*\`\`\`ts\\n([\\s\\S]*?)\`\`\`\\s*<!-- ${name}:end -->`).exec(readme);
  expect(block).not.toBeNull();
  return block![1]!;
}

/** The block's comment lines that show its output: `// ` followed by a metric or span name. */
function shownOutput(name: string): string[] {
  return readmeBlock(name)
    .split('\n')
    .filter((line) => /^\/\/ (db_mutex_|db-mutex )/.test(line))
    .map((line) => line.slice(3));
}

/** Runs the ```ts block between `<!-- name:start -->` and `<!-- name:end -->`; returns its stdout. */
async function runReadmeBlock(name: string): Promise<string> {
  const js = ts.transpileModule(readmeBlock(name), { compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 } }).outputText;
  // Inside the repository, 'sequelize-db-mutex' resolves to the built package through its own "exports".
  const dir = join(root, 'test', 'artifacts');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}-${process.pid}.mjs`);
  writeFileSync(file, js);
  try {
    const { stdout } = await run(process.execPath, [file], { env: { ...process.env, DATABASE_URL: db.url } });
    return stdout;
  } finally {
    rmSync(file, { force: true });
  }
}

it('runs the README quick start as written', async () => {
  const stdout = await runReadmeBlock('quickstart');
  expect(stdout).toMatch(/running with fencing token \d+/);
  expect(stdout).toContain('sent invoices for 42');
});

it('runs the README metrics example as written, printing what its comment says', async () => {
  const stdout = await runReadmeBlock('metrics-example');
  expect(shownOutput('metrics-example')).toEqual(['db_mutex_acquisitions_total{result="acquired",lock="invoices"} 1']);
  expect(stdout.trim().split('\n')).toEqual(shownOutput('metrics-example'));
});

it('runs the README tracing example as written, printing what its comments say', async () => {
  const stdout = await runReadmeBlock('tracing-example');
  expect(shownOutput('tracing-example')).toHaveLength(3);
  expect(stdout.trim().split('\n')).toEqual(shownOutput('tracing-example'));
});

it('runs the README lock history example as written, printing what its comments say', async () => {
  const stdout = await runReadmeBlock('history-example');
  expect(shownOutput('history-example')).toHaveLength(2);
  expect(stdout.trim().split('\n')).toEqual(shownOutput('history-example'));
});

/** Anchors as GitHub makes them from a file's headings (fenced code left out), duplicates numbered. */
function headingAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of withoutCodeBlocks(markdown).split('\n')) {
    const heading = /^#{1,6} (.+)$/.exec(line);
    if (!heading) continue;
    const slug = heading[1]!.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-');
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    anchors.add(count === 0 ? slug : `${slug}-${count}`);
  }
  return anchors;
}

function withoutCodeBlocks(markdown: string): string {
  return markdown.replace(/^```[\s\S]*?^```/gm, '');
}

it('links only to files and headings that exist, from the README and from every page in docs/', () => {
  const pages = ['README.md', ...readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
  const broken: string[] = [];
  let checked = 0;
  for (const page of pages) {
    const text = withoutCodeBlocks(readFileSync(join(root, page), 'utf8')).replace(/`[^`\n]*`/g, (span) => (span.includes('](') ? '' : span));
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/.test(target!)) continue; // https:, mailto:: not checked here
      checked += 1;
      const [path, anchor] = target!.split('#') as [string, string | undefined];
      const file = path === '' ? join(root, page) : join(root, dirname(page), path);
      if (!existsSync(file)) {
        broken.push(`${page}: ${target} (no file ${relative(root, file)})`);
      } else if (anchor !== undefined && !headingAnchors(readFileSync(file, 'utf8')).has(anchor)) {
        broken.push(`${page}: ${target} (no heading with that anchor in ${relative(root, file)})`);
      }
    }
  }
  expect(broken).toEqual([]);
  expect(checked).toBeGreaterThan(50); // the pattern does find links
});

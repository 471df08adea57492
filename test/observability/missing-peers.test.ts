/**
 * In an app without prom-client and @opentelemetry/api (hidden from module resolution in a child
 * process): the package imports and locks as always, never even looks for them until asked, and only
 * createDbMutexMetrics throws, with DbMutexMissingPeerError (DB_MUTEX_MISSING_PEER).
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { ensureBuilt, ROOT } from '../helpers/built';
import { TestContext } from '../helpers/db';

const run = promisify(execFile);
const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'observability');
let ctx: TestContext;

beforeAll(async () => {
  await ensureBuilt();
  ctx = await TestContext.create();
});
afterAll(() => ctx.cleanup());

async function withoutPeers(hide: string): Promise<{ afterImport: string[]; ran: boolean; error: Record<string, unknown> | null; requests: string[] }> {
  const { stdout } = await run(process.execPath, ['-r', path.join(FIXTURES, 'hide-peers.js'), path.join(FIXTURES, 'without-peers.js')], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: ctx.db.url, HIDE_PEERS: hide, PACKAGE_MAIN: path.join(ROOT, 'dist', 'index.js') },
  });
  return JSON.parse(stdout.trim().split('\n').pop()!);
}

it('imports and locks without the optional peers, and only createDbMutexMetrics throws DB_MUTEX_MISSING_PEER', async () => {
  const result = await withoutPeers('prom-client,@opentelemetry/api');
  // Importing looks for neither package.
  expect(result.afterImport).toEqual([]);
  expect(result.ran).toBe(true);
  expect(result.error).toEqual({
    name: 'DbMutexMissingPeerError',
    code: 'DB_MUTEX_MISSING_PEER',
    peer: 'prom-client',
    message: 'createDbMutexMetrics needs the optional peer dependency "prom-client": npm install prom-client',
    isClass: true,
    cause: 'MODULE_NOT_FOUND',
  });
  // Tracing looked for the API once (at the first lock) and then never again; metrics looked when asked.
  expect(result.requests).toEqual(['@opentelemetry/api', 'prom-client']);
});

it('creates the metrics in the same child when nothing is hidden (the check above can fail)', async () => {
  const result = await withoutPeers('');
  expect(result.ran).toBe(true);
  expect(result.error).toBeNull();
});

/**
 * Operators see a counting semaphore as one entry, `used / limit`, with each permit's holder, age,
 * heartbeat and token: through `mutex.semaphores()`, the dashboard's semaphore page and JSON API,
 * and `db-mutex semaphores`. A permit is force-released per holder, token-exact and audited.
 */
import express from 'express';
import request from 'supertest';
import { createDbMutexAdminRouter, type DbMutex, type DbMutexSemaphorePermit } from '../src';
import { ensureBuilt, runCli } from './helpers/built';
import { TestContext } from './helpers/db';

let ctx: TestContext;
let mutex: DbMutex;
let worker: DbMutex;
const held: DbMutexSemaphorePermit[] = [];

beforeAll(async () => {
  await ensureBuilt();
  ctx = await TestContext.create();
  mutex = await ctx.mutex({ holder: 'operator-side' });
  worker = await ctx.mutex({ holder: 'export-worker' });
}, 180_000);
afterEach(async () => {
  for (const p of held.splice(0)) await p.release().catch(() => undefined);
});
afterAll(() => ctx.cleanup());

async function take(id: string, limit: number): Promise<DbMutexSemaphorePermit> {
  const p = await worker.acquireSemaphore(id, { limit });
  held.push(p);
  return p;
}

const cli = (args: string[]) => runCli(args, { DATABASE_URL: ctx.db.url });

function app() {
  const a = express();
  a.use('/admin/locks', createDbMutexAdminRouter({ mutex, authorize: () => true }));
  return a;
}

describe('semaphores for operators', () => {
  it('lists each semaphore once with used / limit and its holders by permit, and lock rows carry their kind', async () => {
    const a = await take('exports', 3);
    const b = await take('exports', 3);
    await take('imports', 1);
    const lock = await worker.acquire('plain-lock');
    const entries = await mutex.semaphores();
    expect(entries.map((e) => [e.semaphoreId, e.used, e.limit, e.holders.map((h) => [h.permit, h.holder, h.fencingToken])])).toEqual([
      ['exports', 2, 3, [[0, 'export-worker', a.fencingToken], [1, 'export-worker', b.fencingToken]]],
      ['imports', 1, 1, [[0, 'export-worker', held[2]!.fencingToken]]],
    ]);
    expect(await mutex.semaphores({ filter: 'imp' })).toHaveLength(1);
    const [row] = await mutex.list({ filter: 'exports/permit/1' });
    expect(row).toMatchObject({ kind: 'semaphore', semaphoreId: 'exports', permit: 1, limit: 3 });
    expect(await mutex.inspect('plain-lock')).toMatchObject({ kind: 'lock', semaphoreId: null, permit: null, limit: null });
    await lock.release();
    await expect(mutex.semaphores({ limit: 0 })).rejects.toThrow(RangeError);
    await expect(mutex.semaphores({ filtr: 'x' } as never)).rejects.toThrow(/Unknown option "filtr" for mutex.semaphores/);
  });

  it('shows the dashboard\'s semaphore page and JSON API, and force-releases one holder\'s permit token-exact and audited', async () => {
    const a = await take('reports', 2);
    const b = await take('reports', 2);
    const page = await request(app()).get('/admin/locks/semaphores');
    expect(page.status).toBe(200);
    expect(page.text).toContain('<code class="lock-id">reports</code>');
    expect(page.text).toContain('2 / 2');
    expect(page.text).toContain(`confirm-release?lockId=reports%2Fpermit%2F1&amp;fencingToken=${b.fencingToken}`);
    const dashboard = (await request(app()).get('/admin/locks/')).text;
    expect(dashboard).toContain('/admin/locks/semaphores');
    expect(dashboard).toContain('<span class="pill">permit 1 of reports (limit 2)</span>');
    const api = await request(app()).get('/admin/locks/api/semaphores?filter=rep');
    expect(api.body.semaphores).toMatchObject([{ semaphoreId: 'reports', used: 2, limit: 2, holders: [{ permit: 0 }, { permit: 1, lockId: 'reports/permit/1' }] }]);
    expect((await request(app()).get('/admin/locks/api/semaphores?filter=%00')).status).toBe(400);

    const wrong = await request(app()).delete(`/admin/locks/api/locks/${encodeURIComponent(b.lockId)}?fencingToken=${a.fencingToken}`);
    expect(wrong.status).toBe(409);
    const ok = await request(app()).delete(`/admin/locks/api/locks/${encodeURIComponent(b.lockId)}?fencingToken=${b.fencingToken}`);
    expect([ok.status, ok.body.status, ok.body.event.lockId]).toEqual([200, 'released', 'reports/permit/1']);
    await expect(b.extend()).rejects.toMatchObject({ code: 'DB_MUTEX_LOST' });
    expect(a.isHeld()).toBe(true);
    expect((await mutex.semaphores())[0]).toMatchObject({ used: 1, limit: 2 });
    expect((await mutex.events({ lockId: 'reports/permit/1' }))[0]).toMatchObject({ action: 'force-release', fencingToken: b.fencingToken });
  });

  it('marks an election\'s lock as an election (the internal kind option of acquire), and a lock taking over a permit\'s key as a lock', async () => {
    const leader = await worker.acquire('leader/jobs', {}, { kind: 'election' });
    expect(await mutex.inspect('leader/jobs')).toMatchObject({ kind: 'election', semaphoreId: null });
    expect((await request(app()).get('/admin/locks/')).text).toContain('<span class="pill">election</span>');
    await leader.release();
    const permit = await worker.acquireSemaphore('taken', { limit: 1, heartbeat: false });
    await ctx.sql.expireLock(permit.lockId);
    const lock = await mutex.acquire('taken/permit/0');
    expect(await mutex.inspect('taken/permit/0')).toMatchObject({ kind: 'lock', semaphoreId: null, permit: null, limit: null });
    expect(await mutex.semaphores({ filter: 'taken' })).toEqual([]);
    await lock.release();
    await permit.release().catch(() => undefined);
    await expect(mutex.acquire('x', {}, { kind: 'semaphore' as never })).rejects.toThrow(TypeError);
  });

  it('prints the semaphores with db-mutex semaphores, as a table and as JSON', async () => {
    const a = await take('nightly', 3);
    const table = await cli(['semaphores']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/SEMAPHORE\s+USED\s+PERMIT\s+STATUS\s+AGE\s+HEARTBEAT\s+TOKEN\s+HOLDER\s+PERMIT KEY/);
    expect(table.stdout).toMatch(new RegExp(`nightly\\s+1 / 3\\s+0\\s+active\\s+.*\\s${a.fencingToken}\\s+export-worker\\s+nightly/permit/0`));
    const asJson = await cli(['semaphores', '--json', '--filter', 'night']);
    expect(JSON.parse(asJson.stdout)).toMatchObject([{ semaphoreId: 'nightly', used: 1, limit: 3, holders: [{ permit: 0, fencingToken: a.fencingToken }] }]);
    await a.release();
    held.splice(0);
    expect((await cli(['semaphores'])).stdout).toBe('No semaphore permits held.\n');
  });
});

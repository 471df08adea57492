/**
 * The history table comes with a third migration. Upgrading is done while the app runs: a database
 * on the earlier schema, with locks held by running processes, migrates forward and back while those
 * holders keep renewing their locks, and locks keep working on either side.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { initDbMutex, type DbMutexDegradedEvent } from '../../src';
import { ensureBuilt } from '../helpers/built';
import { ChildGroup, type Child } from '../helpers/children';
import { createTestDatabase, describeSchema, makeSequelize, poolerMutexOptions, type TestDatabase } from '../helpers/db';
import { sleep } from '../helpers/wait';

const run = promisify(execFile);
const root = join(__dirname, '..', '..');
const children = new ChildGroup();
let db: TestDatabase;

beforeAll(async () => {
  await ensureBuilt();
  db = await createTestDatabase();
}, 180_000);
afterAll(async () => {
  await children.dispose();
  await db?.drop();
});

function sequelizeCli(...args: string[]) {
  return run(process.execPath, [join(root, 'node_modules', 'sequelize-cli', 'lib', 'sequelize'), ...args], {
    cwd: root,
    env: { ...process.env, DATABASE_URL: db.url },
  });
}

const historyTables = async () => (await describeSchema(db.url)).tables.filter((t) => JSON.stringify(t).includes('db_mutex_locks_history')).length;

async function holder(lockId: string): Promise<Child> {
  // Leases of one second: several renewals happen during each migration step.
  const child = children.spawn('holder.js', { url: db.url, lockId, mode: 'hold', leaseSeconds: 1, ttlSeconds: 600 }, { name: lockId });
  await child.waitForType('acquired', 30_000);
  return child;
}

it('migrates forward and back while running processes hold their locks, and locks work on either side', async () => {
  await sequelizeCli('db:migrate', '--to', '20261130000000-add-lock-kinds.js');
  expect(await historyTables()).toBe(0);
  const first = await holder('upgrade-first');
  const second = await holder('upgrade-second');

  await sequelizeCli('db:migrate');
  expect(await historyTables()).toBe(1);
  await sleep(2500);
  // A process started after the migration records history.
  const s = makeSequelize(db.url);
  try {
    const upgraded = initDbMutex(s, { setDefault: false, holder: 'upgraded', ...poolerMutexOptions(db) });
    const degraded: DbMutexDegradedEvent[] = [];
    // (Behind a transaction pooler the other features say so too: only history's is counted here.)
    upgraded.on('degraded', (event) => event.feature === 'history' && degraded.push(event));
    await (await upgraded.acquire('after-upgrade')).release();
    expect((await upgraded.history({ lockId: 'after-upgrade' })).map((e) => [e.holder, e.outcome])).toEqual([['upgraded', 'released']]);

    first.tell('stop');
    await first.waitForType('released', 30_000);

    await sequelizeCli('db:migrate:undo');
    expect(await historyTables()).toBe(0);
    await sleep(2500);
    // The same process, its history table gone: every lock still works; history is off, said once.
    for (let i = 0; i < 2; i++) await (await upgraded.acquire('after-downgrade')).release();
    expect(degraded.map((e) => e.code)).toEqual(['DB_MUTEX_NO_HISTORY']);
    second.tell('stop');
    await second.waitForType('released', 30_000);
    await upgraded.close();
  } finally {
    await s.close();
  }
  // Neither holder lost its lock at any point of the way.
  for (const child of [first, second]) expect(child.messages.filter((m) => m.type === 'lost' || m.type === 'renewalFailed')).toEqual([]);
  // And forward again, to the full schema.
  await sequelizeCli('db:migrate');
  expect(await historyTables()).toBe(1);
}, 120_000);

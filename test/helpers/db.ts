/**
 * Per-file isolation: every test file gets its own database on the server at DATABASE_URL, created
 * empty and dropped (with FORCE) when the file ends, so files run in parallel and leave nothing.
 */
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { Sequelize, type Options } from 'sequelize';
import { initDbMutex, type DbMutex, type DbMutexOptions } from '../../src';

export function serverUrl(): string {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error('DATABASE_URL is not set: run the tests through jest (its global setup provides one)');
  return url;
}

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

async function admin<T>(fn: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: serverUrl() });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export interface TestDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `dbm_test_${randomBytes(6).toString('hex')}`;
  await admin((c) => c.query(`CREATE DATABASE "${name}"`));
  return {
    name,
    url: withDatabase(serverUrl(), name),
    drop: () => admin((c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).then(() => undefined),
  };
}

export function makeSequelize(url: string, options: Options = {}): Sequelize {
  return new Sequelize(url, { logging: false, pool: { max: 10 }, ...options });
}

/** Owns everything a test file opens, and closes it all in `cleanup()`. */
export class TestContext {
  private readonly sequelizes: Sequelize[] = [];
  private readonly mutexes: DbMutex[] = [];
  private readonly clients: Client[] = [];

  constructor(readonly db: TestDatabase) {}

  static async create(): Promise<TestContext> {
    return new TestContext(await createTestDatabase());
  }

  sequelize(options: Options = {}): Sequelize {
    const s = makeSequelize(this.db.url, options);
    this.sequelizes.push(s);
    return s;
  }

  /** A DbMutex on its own Sequelize instance (own pool), with the schema synced. */
  async mutex(options: DbMutexOptions = {}, sequelizeOptions: Options = {}): Promise<DbMutex> {
    const m = initDbMutex(this.sequelize(sequelizeOptions), { setDefault: false, ...options });
    this.mutexes.push(m);
    await m.sync();
    return m;
  }

  /** A raw pg client on the test database (a connection separate from every pool). */
  async client(): Promise<Client> {
    const c = new Client({ connectionString: this.db.url });
    await c.connect();
    this.clients.push(c);
    return c;
  }

  async cleanup(): Promise<void> {
    for (const m of this.mutexes) await m.close().catch(() => undefined);
    for (const s of this.sequelizes) await s.close().catch(() => undefined);
    for (const c of this.clients) await c.end().catch(() => undefined);
    await this.db.drop();
  }
}

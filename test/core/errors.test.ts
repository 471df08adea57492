/**
 * Every error the library throws on purpose is a class of src/errors.ts, exported from the package
 * root, with a stable `name` equal to its class name and a `code`, and listed in the README's table.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as pkg from '../../src';
import * as errors from '../../src/errors';
import { TestContext } from '../helpers/db';

const SAMPLES: Record<string, () => Error & { code: string }> = {
  DbMutexError: () => new errors.DbMutexError('id'),
  DbMutexTimeoutError: () => new errors.DbMutexTimeoutError('id', { reason: 'expired', fencingToken: 1 }),
  DbMutexLostError: () => new errors.DbMutexLostError('id', 'expired'),
  DbMutexNotHeldError: () => new errors.DbMutexNotHeldError('id', 1),
  DbMutexUnsupportedDialectError: () => new errors.DbMutexUnsupportedDialectError('oracle', ['postgres']),
  DbMutexUnsupportedServerError: () => new errors.DbMutexUnsupportedServerError('8.0.36'),
  DbMutexDemotedError: () => new errors.DbMutexDemotedError('id', 1, 'stopped'),
  DbMutexMissingPeerError: () => new errors.DbMutexMissingPeerError('prom-client', 'createDbMutexMetrics'),
};

const errorClasses = (module: Record<string, unknown>) =>
  Object.entries(module)
    .filter(([, value]) => typeof value === 'function' && (value as { prototype?: unknown }).prototype instanceof Error)
    .map(([name]) => name)
    .sort();

describe('public errors', () => {
  it('are all defined in errors.ts and exported from the package root, the same classes', () => {
    expect(errorClasses(pkg as Record<string, unknown>)).toEqual(Object.keys(SAMPLES).sort());
    expect(errorClasses(errors as Record<string, unknown>)).toEqual(Object.keys(SAMPLES).sort());
    for (const name of Object.keys(SAMPLES)) expect((pkg as Record<string, unknown>)[name]).toBe((errors as Record<string, unknown>)[name]);
  });

  it.each(Object.keys(SAMPLES))('%s has its class name as name and a DB_MUTEX_ code', (name) => {
    const error = SAMPLES[name]!();
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe(name);
    expect(error.code).toMatch(/^DB_MUTEX_[A-Z_]+$/);
  });

  it.each(Object.keys(SAMPLES))('%s is in the README error table with its code', (name) => {
    const readme = readFileSync(path.join(__dirname, '..', '..', 'README.md'), 'utf8');
    const row = readme.split('\n').find((line) => line.startsWith(`| \`${name}\` |`));
    expect(row).toBeDefined();
    expect(row).toContain(`\`${SAMPLES[name]!().code}\``);
  });
});

describe('extend() after release', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await TestContext.create();
  });
  afterAll(() => ctx.cleanup());

  it('throws DbMutexNotHeldError with code DB_MUTEX_NOT_HELD, the lock id and fencing token', async () => {
    const mutex = await ctx.mutex();
    const lock = await mutex.acquire('released-then-extended');
    await lock.release();
    const error = await lock.extend(60).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(pkg.DbMutexNotHeldError);
    expect(error).toMatchObject({ code: 'DB_MUTEX_NOT_HELD', lockId: 'released-then-extended', fencingToken: lock.fencingToken });
  });
});

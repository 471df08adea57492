/**
 * Claim 5 for the operator CLI: any command line (unknown commands and options, missing or junk
 * values, lock ids full of quotes, SQL and path characters, absurd numbers, unknown tables) ends with
 * exit status 0, 1 or 2 and, on error, one line on stderr: never a stack trace, never a write that
 * the command line did not ask for.
 */
import { execFile } from 'node:child_process';
import fc from 'fast-check';
import type { DbMutex } from '../../src';
import { runCli } from '../../src/cli/run';
import { CLI, ensureBuilt, ROOT } from '../helpers/built';
import { TestContext } from '../helpers/db';
import { note } from '../helpers/report';
import { scaled, timeoutMs } from '../helpers/soak';

const FIXTURE_IDS = ['keep/a', 'keep b', "o'brien; --", '-dash'];
const STACK = /^\s+at .+:\d+:\d+\)?$/m;

let ctx: TestContext;
let holders: DbMutex;

// Only what a shell can pass: no NUL, no lone surrogates.
const text = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.constantFrom(
    '', ' ', '-', '--', '-1', '0', '1.5', '1e3', 'NaN', '9007199254740993', '99999999999999999999', 'true',
    "'; DROP TABLE db_mutex_locks; --", '../../etc/passwd', '$(rm -rf /)', '`id`', '%s%n', 'x'.repeat(300), '🔒'.repeat(256),
    'keep/a', 'keep b', '-dash', 'db_mutex_locks', 'no_such_table', 'x; DROP TABLE y',
  ),
);
const option = fc.oneof(
  fc.tuple(
    fc.constantFrom('--limit', '--fencing-token', '--filter', '--reason', '--operator', '--lock', '--table', '--events-table'),
    text,
  ).chain(([name, value]) => fc.constantFrom([name, value], [`${name}=${value}`], [name])),
  fc.constantFrom(['--stale'], ['--json'], ['-h'], ['--help'], ['--version'], ['--'], ['--no-such-option'], ['-x'], ['--stale=yes']),
  text.map((t) => [t]),
);
const argv = fc
  .tuple(
    fc.oneof(fc.constantFrom('list', 'release', 'release-stale', 'purge-expired', 'events', 'help'), text),
    fc.array(option, { maxLength: 5 }),
  )
  .map(([command, options]) => [command, ...options.flat()]);

async function lockTable(): Promise<string[]> {
  return (await ctx.sql.lockRows()).map((r) => r.lock_id).sort();
}

/** Audit entries with an id above `afterId`, oldest first. */
async function eventsAfter(afterId: number): Promise<{ id: number; action: string; lock_id: string }[]> {
  const rows = await ctx.exec<{ id: unknown; action: string; lock_id: string }>(
    'SELECT id, action, lock_id FROM db_mutex_events WHERE id > ? ORDER BY id',
    [afterId],
  );
  return rows.map((r) => ({ id: Number(r.id), action: String(r.action), lock_id: String(r.lock_id) }));
}

describe('CLI fuzzing', () => {
  beforeAll(async () => {
    await ensureBuilt();
    ctx = await TestContext.create();
    holders = await ctx.mutex({ holder: 'fixture', heartbeat: false, ttlSeconds: 600 });
    for (const id of FIXTURE_IDS) await holders.acquire(id);
  }, 180_000);
  afterAll(() => ctx?.cleanup());

  it(
    'ends every junk command line with status 0, 1 or 2, one line of error, no stack trace, and no unasked write',
    async () => {
      const codes: Record<number, number> = {};
      const releasedBy: string[][] = [];
      let lastEventId = 0;
      await fc.assert(
        fc.asyncProperty(argv, async (args) => {
          const before = await lockTable();
          let out = '';
          let err = '';
          const code = await runCli(args, {
            stdout: (t) => void (out += t),
            stderr: (t) => void (err += t),
            env: { DATABASE_URL: ctx.db.url, USER: 'fuzzer' },
          });
          codes[code] = (codes[code] ?? 0) + 1;
          expect({ args, code: [0, 1, 2].includes(code) }).toEqual({ args, code: true });
          expect(out).not.toMatch(STACK);
          expect(err).not.toMatch(STACK);
          if (code !== 0 && !err.includes('Usage:')) {
            // Errors are one line (the top-level help text printed for a missing command is the exception).
            expect({ args, lines: err.trimEnd().split('\n').length }).toEqual({ args, lines: 1 });
          }
          // Every write is the one this command line asked for: a lock disappears only through a
          // successful `release <that id>`, audited as a force-release of exactly that lock.
          const after = await lockTable();
          const events = await eventsAfter(lastEventId);
          lastEventId = events.at(-1)?.id ?? lastEventId;
          expect({ args, added: after.filter((id) => !before.includes(id)) }).toEqual({ args, added: [] });
          const removed = before.filter((id) => !after.includes(id));
          if (removed.length === 0) {
            expect({ args, events }).toEqual({ args, events: [] });
            return;
          }
          expect({ args, code, command: args[0], removed: removed.length, named: args.includes(removed[0]!) }).toEqual({
            args,
            code: 0,
            command: 'release',
            removed: 1,
            named: true,
          });
          expect({ args, events: events.map((e) => [e.action, e.lock_id]) }).toEqual({ args, events: [['force-release', removed[0]]] });
          expect({ args, reported: out.includes(removed[0]!) }).toEqual({ args, reported: true });
          releasedBy.push(args);
        }),
        {
          numRuns: scaled(120),
          // Besides the random lines: releases that must happen (so the check above sees writes, not
          // only their absence), and commands next to them that must not write.
          examples: [
            [['release', 'keep/a']],
            [['release', '--json', '--', '-dash']],
            [['release', 'keep b', '--fencing-token', '999999']],
            [['release-stale']],
            [['purge-expired', '--json']],
            [['events', '--lock', 'keep b']],
          ],
        },
      );
      // Overall: the audit trail holds exactly the releases the command lines above asked for.
      const events = await eventsAfter(0);
      expect(events.map((e) => [e.action, e.lock_id])).toEqual(releasedBy.map(() => ['force-release', expect.any(String)]));
      const released = new Set(events.map((e) => e.lock_id));
      expect(await lockTable()).toEqual(FIXTURE_IDS.filter((id) => !released.has(id)).sort());
      note(
        `CLI (in-process runCli): exit statuses ${JSON.stringify(codes)}, ${released.size} fixture locks released, each by its own ` +
          `release command (${releasedBy.map((a) => JSON.stringify(a)).join(', ') || 'none'}), no stack trace`,
      );
    },
    timeoutMs(120_000),
  );

  it('keeps stack traces out of the real process too, whatever the arguments', async () => {
    const samples = fc.sample(argv, { numRuns: scaled(6), seed: 42 });
    samples.push(['release', '--fencing-token', '1e400', 'keep/a'], ['list', '--limit', '-1'], ['list', '--table', 'no_such_table']);
    for (const args of samples) {
      const run = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...process.env, DATABASE_URL: ctx.db.url }, timeout: 30_000 }, (error, stdout, stderr) =>
          resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr }),
        );
      });
      expect({ args, code: [0, 1, 2].includes(run.code) }).toEqual({ args, code: true });
      expect(run.stderr).not.toMatch(STACK);
      expect(run.stdout).not.toMatch(STACK);
    }
  }, timeoutMs(120_000));
});

/**
 * SQLite's own faults. SQLite has no server to kill or restart: its faults are other processes on the
 * same file and the file system under it.
 * - `SqliteWriter`: another process on the file (fixture sqlite-writer.js) that takes the write lock
 *   and keeps it (`BEGIN IMMEDIATE`), writes inside that transaction, runs WAL checkpoints, or is
 *   SIGKILLed in the middle of a write.
 * - `setImmutable`: the database's files stop accepting writes, also through descriptors already
 *   open (`chattr +i`; `chmod` would only refuse new opens, and root ignores it anyway).
 * - `mountTinyFilesystem` + `fillUp`: a small tmpfs the database lives on, filled to the last byte.
 * The last two need root (CAP_LINUX_IMMUTABLE, mount); `rootFaultsUnavailable()` says why they cannot
 * run when they cannot, so the tests that need them are skipped by name, never silently.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Child, ChildGroup } from './children';
import { ask } from './child-commands';

export class SqliteWriter {
  private constructor(readonly child: Child) {}

  static spawn(group: ChildGroup, file: string, name = 'SQLite writer'): SqliteWriter {
    return new SqliteWriter(group.spawn('sqlite-writer.js', { file }, { name }));
  }

  /** Takes the file's write lock (BEGIN IMMEDIATE) and keeps it until rollback() or commit(). */
  async hold(): Promise<void> {
    await ask(this.child, 'hold');
  }

  /** Runs one statement; inside the held transaction if there is one. Returns the rows changed. */
  async exec(sql: string): Promise<number> {
    if (sql.includes('\n')) throw new Error('one line of SQL per command');
    return Number((await ask(this.child, 'exec', sql)).changes);
  }

  async rollback(): Promise<void> {
    await ask(this.child, 'rollback');
  }

  /** Runs `PRAGMA wal_checkpoint(TRUNCATE)` every `everyMs` until stopCheckpoints(). */
  async startCheckpoints(everyMs: number): Promise<void> {
    await ask(this.child, 'checkpoints', String(everyMs));
  }

  /** Stops the checkpoints; how many completed (WAL copied back and truncated) and how many found it busy. */
  async stopCheckpoints(): Promise<{ completed: number; busy: number }> {
    const answer = await ask(this.child, 'stop-checkpoints');
    return { completed: Number(answer.completed), busy: Number(answer.busy) };
  }

  async kill(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.child.exited;
  }

  async close(): Promise<void> {
    this.child.process.stdin.end();
    await this.child.waitForExit(10_000);
  }
}

/** The files of an SQLite database in WAL mode. */
export function sqliteFiles(file: string): string[] {
  return [file, `${file}-wal`, `${file}-shm`];
}

/** Sets or clears the immutable attribute of these files (those that exist). */
export function setImmutable(files: readonly string[], immutable: boolean): void {
  for (const f of files) {
    try {
      execFileSync('chattr', [immutable ? '+i' : '-i', f], { stdio: 'pipe' });
    } catch (error) {
      if ((error as { stderr?: Buffer }).stderr?.toString().includes('No such file')) continue;
      throw error;
    }
  }
}

export interface TinyFilesystem {
  dir: string;
  unmount(): void;
}

/** A tmpfs of `sizeKb` mounted on a fresh temporary folder. */
export function mountTinyFilesystem(sizeKb: number): TinyFilesystem {
  const dir = mkdtempSync(join(tmpdir(), 'dbm-tinyfs-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeKb}k`, 'tmpfs', dir], { stdio: 'pipe' });
  return {
    dir,
    unmount() {
      execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Writes a file into `dir` until the file system has no byte left; returns its path. */
export function fillUp(dir: string): string {
  const filler = join(dir, 'filler');
  const fd = openSync(filler, 'w');
  const chunk = Buffer.alloc(64 * 1024);
  try {
    for (let size = chunk.length; size >= 1; size = Math.floor(size / 2)) {
      for (;;) {
        try {
          writeSync(fd, chunk, 0, size);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw error;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return filler;
}

let probed: string | null | undefined;

/**
 * Null where this process can make a file immutable and mount a tmpfs (root, outside a restricted
 * container); otherwise the reason it cannot, for the name of the skipped test.
 */
export function rootFaultsUnavailable(): string | null {
  if (probed !== undefined) return probed;
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    probed = 'needs root (chattr +i, mount -t tmpfs)';
    return probed;
  }
  const dir = mkdtempSync(join(tmpdir(), 'dbm-probe-'));
  try {
    const file = join(dir, 'probe');
    writeFileSync(file, 'x');
    setImmutable([file], true);
    setImmutable([file], false);
    mountTinyFilesystem(64).unmount();
    probed = null;
  } catch (error) {
    probed = `this machine refuses chattr +i or mount -t tmpfs (${String((error as Error).message).split('\n')[0]})`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return probed;
}

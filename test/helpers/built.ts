/**
 * Tests of built output (the `db-mutex` CLI, the sequelize-cli migration that requires dist/) call
 * `ensureBuilt()` first. `npm test` builds beforehand; this covers `npx jest some.test.ts` after an edit,
 * rebuilding only when dist/ is missing or older than src/. A directory used as a cross-process lock
 * keeps parallel test files from running two builds over each other.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { sleep } from './wait';

export const ROOT = path.resolve(__dirname, '../..');
export const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const OUTPUTS = [path.join(ROOT, 'dist', 'index.js'), CLI];
const LOCK_DIR = path.join(ROOT, 'test', 'artifacts', 'build.lock');
/** A lock older than this was left by a killed run. */
const STALE_LOCK_MS = 120_000;

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

function isStale(): boolean {
  const source = Math.max(newestMtime(path.join(ROOT, 'src')), statSync(path.join(ROOT, 'tsconfig.build.json')).mtimeMs);
  return OUTPUTS.some((file) => {
    try {
      return statSync(file).mtimeMs < source;
    } catch {
      return true;
    }
  });
}

async function takeLock(): Promise<void> {
  mkdirSync(path.dirname(LOCK_DIR), { recursive: true });
  for (;;) {
    try {
      mkdirSync(LOCK_DIR);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      try {
        if (Date.now() - statSync(LOCK_DIR).mtimeMs > STALE_LOCK_MS) rmdirSync(LOCK_DIR);
      } catch {
        // Another process removed or took it meanwhile: just try again.
      }
      await sleep(200);
    }
  }
}

/** What a run of the `db-mutex` bin printed, and its exit code (-1: killed or not started). */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the built `db-mutex` bin as an operator would: a separate process with its own connection; `env` is added to this process's. */
export function runCli(args: readonly string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 30_000): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...process.env, ...env }, timeout: timeoutMs }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

export async function ensureBuilt(): Promise<void> {
  if (!isStale()) return;
  await takeLock();
  try {
    // Checked again under the lock: another test file may have built while we waited.
    if (!isStale()) return;
    await promisify(execFile)('npm', ['run', 'build'], { cwd: ROOT, timeout: 120_000 }).catch((error: { stdout?: string; stderr?: string }) => {
      throw new Error(`npm run build failed:\n${error.stdout ?? ''}${error.stderr ?? ''}`);
    });
  } finally {
    rmdirSync(LOCK_DIR);
  }
}

/**
 * Running the demo (`npm start`, or its built entry point) as a child process in tests: its output,
 * waiting for a line, and finding every process it may have left behind (Linux /proc).
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';

/**
 * The environment of a child that must behave as if started from a fresh shell: no DATABASE_URL unless
 * given, and none of the variables npm puts into the environment of the script running the tests (an
 * inner npm would read some of them, e.g. npm_config_local_prefix, as its own settings).
 */
export function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key === 'DATABASE_URL' || key === 'INIT_CWD' || key.toLowerCase().startsWith('npm_')) continue;
    env[key] = value;
  }
  return { ...env, ...extra };
}

export class DemoProcess {
  output = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly listeners = new Set<() => void>();

  private constructor(readonly child: ChildProcess) {
    const append = (chunk: Buffer) => {
      this.output += chunk.toString('utf8');
      for (const listener of this.listeners) listener();
    };
    child.stdout?.on('data', append);
    child.stderr?.on('data', append);
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  static start(command: string, args: string[], options: SpawnOptions): DemoProcess {
    return new DemoProcess(spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] }));
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves with the first match of `pattern` in the output so far or to come. */
  waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const match = this.output.match(pattern);
        if (!match) return false;
        done();
        resolve(match);
        return true;
      };
      const onExit = () => {
        if (check()) return;
        done();
        reject(new Error(`the process exited before printing ${pattern}; its output:\n${this.output}`));
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no ${pattern} within ${timeoutMs} ms; output so far:\n${this.output}`));
      }, timeoutMs);
      const listener = () => void check();
      const done = () => {
        clearTimeout(timer);
        this.listeners.delete(listener);
        this.child.off('exit', onExit);
      };
      if (check()) return;
      this.listeners.add(listener);
      this.child.once('exit', onExit);
    });
  }
}

interface ProcessInfo {
  pid: number;
  ppid: number;
  cmdline: string;
  cwd: string | null;
}

function readProcess(pid: number): ProcessInfo | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (2nd field) is in parentheses and may contain spaces: fields resume after the last ')'.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
    let cwd: string | null = null;
    try {
      cwd = readlinkSync(`/proc/${pid}/cwd`);
    } catch {
      // Another user's process without the privilege to look: its command line still counts.
    }
    return { pid, ppid, cmdline, cwd };
  } catch {
    return null; // it ended while we looked
  }
}

export function allProcesses(): ProcessInfo[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map((name) => readProcess(Number(name)))
    .filter((p): p is ProcessInfo => p !== null && p.pid !== process.pid);
}

/** Processes whose command line mentions `dir` or whose working directory is inside it. */
export function processesUnder(dir: string): ProcessInfo[] {
  const inside = (p: string) => p === dir || p.startsWith(dir + path.sep);
  return allProcesses().filter((p) => p.cmdline.includes(dir) || (p.cwd !== null && inside(p.cwd)));
}

/** Every descendant of `pid` (children, grandchildren…), as seen now. */
export function descendants(pid: number): ProcessInfo[] {
  const all = allProcesses();
  const found: ProcessInfo[] = [];
  const walk = (parent: number) => {
    for (const p of all) {
      if (p.ppid === parent) {
        found.push(p);
        walk(p.pid);
      }
    }
  };
  walk(pid);
  return found;
}

export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A zombie (exited, not yet reaped by its parent) is not running anymore.
  try {
    return !/\)\s+Z\s/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Last resort after a failed test: no process of ours may outlive it. */
export function killAll(processes: { pid: number }[]): void {
  for (const { pid } of processes) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

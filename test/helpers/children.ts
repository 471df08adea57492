/**
 * Child processes of the multi-process tests (safety, dialects, pooler, ha): real Node processes
 * running the fixtures in test/fixtures against the built library. Messages arrive as JSON lines on
 * stdout; every child is killed when its group is disposed, so a failing test leaves no process behind.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { EventEmitter } from 'node:events';
import path from 'node:path';
import readline from 'node:readline';

/** The one fixtures tree, test/fixtures: one folder per suite (safety, dialects, demo, embedded-pg). */
export const FIXTURES_ROOT = path.resolve(__dirname, '../fixtures');
/** Where `ChildGroup.spawn` looks for a fixture named by a relative path. */
export const FIXTURES_DIR = path.join(FIXTURES_ROOT, 'safety');

export interface ChildMessage {
  type: string;
  [key: string]: unknown;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnOptions {
  /** Extra arguments for node itself, e.g. ['--require', preload]. */
  nodeArgs?: string[];
  env?: NodeJS.ProcessEnv;
  /** A label for error messages. */
  name?: string;
}

export class Child {
  readonly messages: ChildMessage[] = [];
  readonly exited: Promise<ExitStatus>;
  exitStatus: ExitStatus | null = null;
  private readonly stderrLines: string[] = [];
  private readonly events = new EventEmitter();

  constructor(
    readonly name: string,
    readonly process: ChildProcessWithoutNullStreams,
  ) {
    this.events.setMaxListeners(0);
    readline.createInterface({ input: process.stdout }).on('line', (line) => {
      let message: ChildMessage;
      try {
        message = JSON.parse(line) as ChildMessage;
      } catch {
        message = { type: 'text', text: line };
      }
      this.messages.push(message);
      this.events.emit('message', message);
    });
    readline.createInterface({ input: process.stderr }).on('line', (line) => {
      this.stderrLines.push(line);
      if (this.stderrLines.length > 200) this.stderrLines.shift();
    });
    // stdin of a killed child reports EPIPE on the next write; that is expected, not a test failure.
    process.stdin.on('error', () => undefined);
    this.exited = new Promise((resolve) => {
      process.on('exit', (code, signal) => {
        this.exitStatus = { code, signal };
        // Let the last stdout lines arrive before waiters are told that the child is gone.
        setImmediate(() => {
          this.events.emit('exit');
          resolve({ code, signal });
        });
      });
    });
  }

  get pid(): number {
    return this.process.pid!;
  }

  /** Writes one command line to the child's stdin. */
  tell(word: string): void {
    if (this.exitStatus === null && this.process.stdin.writable) this.process.stdin.write(`${word}\n`);
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.exitStatus === null) this.process.kill(signal);
  }

  /** The first message (already received or still to come) matching `predicate`. */
  waitFor(predicate: (m: ChildMessage) => boolean, timeout: number, what = 'a message'): Promise<ChildMessage> {
    const found = this.messages.find(predicate);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        this.events.off('message', onMessage);
        this.events.off('exit', onExit);
      };
      const onMessage = (m: ChildMessage) => {
        if (!predicate(m)) return;
        cleanup();
        resolve(m);
      };
      const onExit = () => {
        cleanup();
        reject(new Error(`${this.name} exited (${JSON.stringify(this.exitStatus)}) before ${what}\n${this.diagnostics()}`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`${this.name}: no ${what} within ${timeout} ms\n${this.diagnostics()}`));
      }, timeout);
      this.events.on('message', onMessage);
      if (this.exitStatus) onExit();
      else this.events.on('exit', onExit);
    });
  }

  waitForType(type: string, timeout: number): Promise<ChildMessage> {
    return this.waitFor((m) => m.type === type, timeout, `"${type}" message`);
  }

  /** Resolves with the exit status, or rejects if the child is still running after `timeout`. */
  async waitForExit(timeout: number): Promise<ExitStatus> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.name} did not exit within ${timeout} ms\n${this.diagnostics()}`)), timeout);
    });
    try {
      return await Promise.race([this.exited, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Recent output, for failure messages. */
  diagnostics(): string {
    const fatal = this.messages.filter((m) => m.type === 'fatal' || m.type === 'error');
    return [
      fatal.length ? `fatal/error messages: ${JSON.stringify(fatal)}` : '',
      this.stderrLines.length ? `stderr (tail):\n${this.stderrLines.slice(-20).join('\n')}` : '',
    ]
      .filter(Boolean)
      .join('\n');
  }
}

/** Spawns fixtures and owns them: `dispose()` kills whatever still runs. */
export class ChildGroup {
  private readonly children: Child[] = [];

  /** `fixture`: a file in FIXTURES_DIR, or an absolute path (a fixture of another suite). */
  spawn(fixture: string, config: unknown, options: SpawnOptions = {}): Child {
    const script = path.resolve(FIXTURES_DIR, fixture);
    const proc = spawn(process.execPath, [...(options.nodeArgs ?? []), script, JSON.stringify(config)], {
      env: { ...process.env, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const child = new Child(options.name ?? `${fixture}#${this.children.length}`, proc);
    this.children.push(child);
    return child;
  }

  /** Takes over the children of another group (so one dispose() ends them all). */
  adopt(other: ChildGroup): void {
    this.children.push(...other.children);
    other.children.length = 0;
  }

  get all(): readonly Child[] {
    return this.children;
  }

  async dispose(): Promise<void> {
    for (const child of this.children) child.kill('SIGKILL');
    await Promise.all(this.children.map((c) => c.exited));
    this.children.length = 0;
  }
}

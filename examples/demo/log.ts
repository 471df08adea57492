/** One line per event, prefixed with the process that logged it: `[demo]`, `[app]`, `[worker-1]`… */
export type Log = (line: string) => void;

export function logger(prefix: string): Log {
  return (line) => console.log(`[${prefix}] ${line}`);
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

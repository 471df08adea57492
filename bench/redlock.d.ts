/** redlock@4 ships no types: the part the bench's reference row uses. */
declare module 'redlock' {
  interface Lock {
    unlock(): Promise<unknown>;
  }
  class Redlock {
    constructor(clients: unknown[], options?: { retryCount?: number });
    lock(resource: string, ttlMs: number): Promise<Lock>;
    on(event: 'clientError', listener: (error: unknown) => void): this;
  }
  export = Redlock;
}

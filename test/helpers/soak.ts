/**
 * Sizes of the safety suite. The defaults fit CI (2 cores, a few minutes for the whole suite);
 * a soak run scales them up without editing a test:
 *
 *   SOAK_FACTOR=10 npx jest test/safety --runInBand
 *
 * SOAK_FACTOR multiplies every iteration count, run count and cycle count (and the matching jest
 * timeouts). SAFETY_WORKERS and SAFETY_ITERATIONS set the contention test's process count and
 * acquisitions per process directly.
 */

function positiveNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new RangeError(`${name} must be a positive number, got ${JSON.stringify(raw)}`);
  return n;
}

export const SOAK_FACTOR = positiveNumber('SOAK_FACTOR', 1);

/** `base` scaled by SOAK_FACTOR, at least 1. */
export function scaled(base: number): number {
  return Math.max(1, Math.round(base * SOAK_FACTOR));
}

/** A jest timeout for a test whose work grows with SOAK_FACTOR. */
export function timeoutMs(baseMs: number): number {
  return Math.round(baseMs * Math.max(1, SOAK_FACTOR));
}

export const CONTENTION_WORKERS = Math.round(positiveNumber('SAFETY_WORKERS', 8));
export const CONTENTION_ITERATIONS = Math.round(positiveNumber('SAFETY_ITERATIONS', scaled(100)));

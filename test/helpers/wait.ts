/**
 * Waiting in the tests, declared once: a plain sleep, and polling a condition until a deadline —
 * either failing with what was awaited (`waitUntil`) or answering whether it came (`eventually`,
 * for tests that assert on the answer or only want to give a condition its chance).
 */

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `check` every `intervalMs` until it returns true, or throws once `timeoutMs` has passed,
 * naming `what` was awaited. A check that throws counts as not yet; its last error is in the message.
 */
export async function waitUntil(
  check: () => Promise<boolean> | boolean,
  timeoutMs: number,
  what: string,
  intervalMs = 100,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let lastError: unknown = null;
  for (;;) {
    try {
      if (await check()) return;
      lastError = null;
    } catch (error) {
      lastError = error;
    }
    if (performance.now() > deadline) {
      const detail = lastError === null ? '' : ` (last error: ${lastError instanceof Error ? lastError.message : JSON.stringify(lastError)})`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}`);
    }
    await sleep(intervalMs);
  }
}

/** Polls `condition` every `intervalMs` for up to `timeoutMs`; true as soon as it holds, false if it never did. */
export async function eventually(condition: () => boolean, timeoutMs: number, intervalMs = 200): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (condition()) return true;
    if (Date.now() > deadline) return false;
    await sleep(intervalMs);
  }
}

/** A promise the test resolves when it chooses (`open()`): lets a handler or job start, or end, on cue. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

/**
 * Measurements a safety test wants on record (how long a crashed lock stayed taken, how many sections
 * ran…). Printed once per file, so a soak run's log carries the numbers the Guarantees section quotes.
 */
const notes: string[] = [];

export function note(line: string): void {
  notes.push(line);
}

afterAll(() => {
  if (notes.length === 0) return;
  console.log(`[safety] ${expect.getState().testPath?.split('/').pop() ?? ''}\n  ${notes.join('\n  ')}`);
  notes.length = 0;
});

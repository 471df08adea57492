/**
 * The bench's hand-off breakdown (bench/lib/handoff-probe.js): pure arithmetic over stamps, checked on
 * a made-up time line so that a wrong pairing of stamps and sections shows up here, not as a plausible
 * but wrong table in bench/results.md.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const probe = require('../bench/lib/handoff-probe') as {
  breakdown(
    sections: { start: number; end: number; worker: number }[],
    byWorker: ['acquire' | 'release' | 'notice', number, number, boolean][][],
  ): { handoffs: number; byNotice: number; phases: Record<string, number[]> };
};

describe('the bench hand-off breakdown', () => {
  it('splits a cross-process hand-off into release, notice, wake-up, attempt and the rest', () => {
    // Worker 0 holds 0–1 ms and releases at 1.1 (answered 1.3); worker 1 hears the notice at 1.4,
    // attempts at 1.5 (answered 2.0, won) and starts at 2.05.
    const sections = [
      { start: 0, end: 1, worker: 0 },
      { start: 2.05, end: 3, worker: 1 },
    ];
    const result = probe.breakdown(sections, [
      [['release', 1.1, 1.3, false]],
      [
        ['acquire', 0.5, 0.6, false], // refused while worker 0 held the lock
        ['notice', 1.4, 1.4, false],
        ['acquire', 1.5, 2.0, true],
      ],
    ]);
    expect(result.handoffs).toBe(1);
    expect(result.byNotice).toBe(1);
    const rounded = Object.fromEntries(Object.entries(result.phases).map(([k, v]) => [k, v.map((x) => Math.round(x * 100) / 100)]));
    expect(rounded).toEqual({ release: [0.1], notice: [0.3], wake: [0.1], attempt: [0.5], after: [0.05] });
  });

  it('counts a hand-off whose winning attempt went out before any notice as not woken by one', () => {
    const sections = [
      { start: 0, end: 1, worker: 0 },
      { start: 1.8, end: 3, worker: 1 },
    ];
    const result = probe.breakdown(sections, [
      [['release', 1.1, 1.3, false]],
      [
        ['acquire', 1.2, 1.7, true], // sent after the release, before the notice arrived
        ['notice', 1.75, 1.75, false],
      ],
    ]);
    expect(result.handoffs).toBe(1);
    expect(result.byNotice).toBe(0);
    expect(result.phases.notice).toEqual([]);
    expect(result.phases.attempt?.map((x) => Math.round(x * 100) / 100)).toEqual([0.5]);
  });

  it('leaves out a worker handing the lock to itself and a hand-off without stamps', () => {
    const sections = [
      { start: 0, end: 1, worker: 0 },
      { start: 1.5, end: 2, worker: 0 },
      { start: 2.5, end: 3, worker: 1 },
    ];
    // Worker 1 has no stamps (an unnamed statement through a pooler is not stamped).
    const result = probe.breakdown(sections, [[['release', 1.1, 1.2, false], ['acquire', 1.3, 1.4, true], ['release', 2.1, 2.2, false]], []]);
    expect(result.handoffs).toBe(0);
  });
});

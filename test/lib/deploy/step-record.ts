// A deployment's step record for the stats and report tests, its times given in ms from T.
import type { StepRecord } from '../../../src/lib/deploy/stats.js';

/** Noon, 1 January 2025 (UTC): when the tests' deployments start. */
export const T = Date.UTC(2025, 0, 1, 12);

/** The record of one micro-step run from `from` to `to`; KO with `error` if given. */
export function stepRecord(
  node: string,
  macro: string,
  instance: string,
  micro: string,
  attempt: number,
  from: number,
  to: number,
  error?: string,
): StepRecord {
  return {
    node,
    macro,
    instance,
    micro,
    attempt,
    start: T + from,
    durationMs: to - from,
    outcome: error ? 'ko' : 'ok',
    ...(error ? { error } : {}),
  };
}

// Polling with a backoff schedule and a deadline, on an injectable clock so tests run instantly.

export interface PollOptions<T> {
  /** Delays between polls; the last one repeats. */
  schedule: number[];
  timeoutMs: number;
  sleep: (ms: number) => Promise<void>;
  now: () => number;
  onPoll?: (value: T) => void;
  /** Builds the error thrown at the deadline from the last value seen. */
  onTimeout: (last: T, waitedMs: number) => Error;
}

export async function pollUntil<T>(
  fetch: () => Promise<T>,
  done: (value: T) => boolean,
  opts: PollOptions<T>,
): Promise<T> {
  const start = opts.now();
  for (let i = 0; ; i++) {
    const value = await fetch();
    opts.onPoll?.(value);
    if (done(value)) return value;
    const waited = opts.now() - start;
    if (waited >= opts.timeoutMs) throw opts.onTimeout(value, waited);
    const delay = opts.schedule[Math.min(i, opts.schedule.length - 1)] ?? 1000;
    // Never sleep past the deadline: one last poll happens right at it.
    await opts.sleep(Math.min(delay, opts.timeoutMs - waited));
  }
}

// Bounded parallelism: at most `limit` of `items` in flight at once (windows of SSH commands,
// host commands, probes).
export async function eachLimited<T>(
  items: T[],
  limit: number,
  f: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(Math.max(1, limit), items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        await f(items[i], i);
      }
    }),
  );
}

/**
 * At most `max` calls of run() in flight at once, the others waiting their turn in call order: for
 * work that arrives over time rather than as one list (the emulated VMs' network boots).
 */
export class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  private readonly max: number;

  constructor(max: number) {
    this.max = Math.max(1, max);
  }

  async run<T>(f: () => Promise<T>): Promise<T> {
    // a finishing call hands its slot straight to the first waiter, so `active` never exceeds max
    if (this.active < this.max) this.active++;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await f();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}

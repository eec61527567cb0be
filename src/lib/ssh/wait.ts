// The one "wait until the node answers SSH" loop (after a launch, a power-on, a reboot): each node
// is probed until a command's output says the EXPECTED system answered (its identity, its
// environment, a fresh boot), not merely that something accepts SSH on its address; retried at an
// interval until a deadline, each probe bounded, the last reason kept for the report.
import type { CommandResult } from './result.js';

export interface WaitOptions<T> {
  /** Runs one probe (a pool's exec, or a session of its own); must not reject. */
  exec(item: T, command: string, timeoutMs: number): Promise<CommandResult>;
  /** The command whose output tells which system answered, e.g. `kb-agent identify`. */
  command: string | ((item: T) => string);
  /** Given a probe that exited 0: null when the expected system answered, else what answered. */
  check(item: T, r: CommandResult): string | null;
  /** After a probe that was not it (e.g. drop the pooled connection: the next probe reconnects). */
  failed?(item: T): void;
  /** When to give up on an item (ms since the epoch), read again before every probe. */
  deadline: number | ((item: T) => number);
  /** From the start of one probe to the start of the next. */
  intervalMs: number;
  /** Per probe, never more than the time left (and never less than 1 s). */
  probeTimeoutMs: number;
  /** Probes running at once (default: one per item). */
  window?: number;
  /** Before the first probe: a node answering at once after a reboot has not gone down yet. */
  graceMs?: number;
  /** False: not worth probing yet (its boot has not got that far); its deadline still runs. */
  ready?(item: T): boolean;
  /** True: stop waiting for it (something else decided it failed). */
  givenUp?(item: T): boolean;
  signal?: AbortSignal;
  /** As soon as an item answers (trackers want the time). */
  onUp?(item: T): void;
  /** As soon as an item is given up, with the last reason. */
  onDown?(item: T, last: string): void;
}

export interface WaitOutcome {
  ok: boolean;
  /** Why the last probe did not count ('no answer' when none ran). */
  last?: string;
  /** From the start of the wait to the answer (or to giving up). */
  ms: number;
}

/** The reason a probe did not count: no answer, an error exit, or the wrong system. */
function reasonOf(r: CommandResult): string {
  return r.error ?? (r.stderr.trim().split('\n').at(-1) || `exit ${r.code}`);
}

/** Waits for every item at once (at most `window` probes running); one outcome per item. */
export async function waitForSsh<T>(items: readonly T[], opts: WaitOptions<T>): Promise<Map<T, WaitOutcome>> {
  const t0 = Date.now();
  const out = new Map<T, WaitOutcome>();
  const sleeping = new Set<() => void>();
  const wakeAll = () => {
    for (const wake of [...sleeping]) wake();
  };
  opts.signal?.addEventListener('abort', wakeAll, { once: true });
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      if (ms <= 0 || opts.signal?.aborted) return resolve();
      const wake = () => {
        clearTimeout(t);
        sleeping.delete(wake);
        resolve();
      };
      const t = setTimeout(wake, ms);
      sleeping.add(wake);
    });
  // at most `window` probes at once, first come first served, so all items share the deadline fairly
  let free = opts.window ?? Number.POSITIVE_INFINITY;
  const queue: (() => void)[] = [];
  const acquire = async () => {
    if (free > 0) free--;
    else await new Promise<void>((r) => queue.push(r));
  };
  const release = () => {
    const next = queue.shift();
    if (next) next();
    else free++;
  };
  const deadlineOf = (item: T) => (typeof opts.deadline === 'number' ? opts.deadline : opts.deadline(item));
  const stop = (item: T) => opts.signal?.aborted || opts.givenUp?.(item) || Date.now() >= deadlineOf(item);

  const one = async (item: T) => {
    let last: string | undefined;
    while (!stop(item)) {
      const round = Date.now();
      if (opts.ready?.(item) ?? true) {
        await acquire();
        let why: string | null;
        try {
          if (stop(item)) break;
          const left = deadlineOf(item) - Date.now();
          const command = typeof opts.command === 'string' ? opts.command : opts.command(item);
          const r = await opts.exec(item, command, Math.min(opts.probeTimeoutMs, Math.max(1000, left)));
          why = r.code === 0 ? opts.check(item, r) : reasonOf(r);
        } finally {
          release();
        }
        if (why === null) {
          out.set(item, { ok: true, ms: Date.now() - t0 });
          opts.onUp?.(item);
          return;
        }
        last = why;
        opts.failed?.(item);
      }
      await sleep(opts.intervalMs - (Date.now() - round));
    }
    out.set(item, { ok: false, last: last ?? 'no answer', ms: Date.now() - t0 });
    opts.onDown?.(item, last ?? 'no answer');
  };

  try {
    await sleep(opts.graceMs ?? 0);
    await Promise.all(items.map(one));
  } finally {
    opts.signal?.removeEventListener('abort', wakeAll);
  }
  return out;
}

/**
 * A check for `kb-agent identify`: the node answered with its own MAC (and whatever else `want`
 * names: its name, address, environment), else what answered instead.
 */
export function identifies(
  want: { mac: string; name?: string; ip?: string; env?: string },
  stdout: string,
): string | null {
  let id: { name?: string; mac?: string; ip?: string; env?: string };
  try {
    id = JSON.parse(stdout);
  } catch {
    return 'kb-agent identify printed no JSON';
  }
  if (id?.mac !== want.mac) return `${id?.name ?? id?.mac ?? 'another node'} answered`;
  if (want.name !== undefined && id.name !== want.name) return `answers as ${id.name}`;
  if (want.ip !== undefined && id.ip !== want.ip) return `answers from ${id.ip}`;
  if (want.env !== undefined && id.env !== want.env) return `answers as ${id.env}`;
  return null;
}

// Fakes for the workflow engine: a virtual clock that only moves when everything else is waiting,
// and a driver whose per-node behaviour is scripted, so whole deployments run in milliseconds. The
// driver answers per call by default; `early` makes it report each node as soon as that node is done
// (what the real driver's waitReboot does), `timeout` plays a node that never comes back.
import type {
  Clock,
  MicroContext,
  MicroStep,
  NodeOutcome,
  WorkflowDriver,
} from '../../../src/lib/deploy/workflow.js';
import { microLabel } from '../../../src/lib/deploy/workflow.js';

interface Timer {
  at: number;
  seq: number;
  fire: () => void;
}

export class FakeClock implements Clock {
  private t: number;
  private seq = 0;
  private timers: Timer[] = [];

  constructor(start = 1_000_000) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const timer: Timer = {
        at: this.t + Math.max(0, ms),
        seq: this.seq++,
        fire: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        this.timers = this.timers.filter((x) => x !== timer);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.timers.push(timer);
    });
  }

  get pending(): number {
    return this.timers.length;
  }

  /** Moves to the earliest timer and fires every timer due then; false when none is pending. */
  advance(): boolean {
    if (this.timers.length === 0) return false;
    const at = Math.min(...this.timers.map((x) => x.at));
    const due = this.timers.filter((x) => x.at === at).sort((a, b) => a.seq - b.seq);
    this.timers = this.timers.filter((x) => x.at !== at);
    this.t = at;
    for (const x of due) x.fire();
    return true;
  }
}

/** Lets promise chains settle (nothing here does real I/O, so one macrotask turn is enough). */
export function flush(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

/** Drives virtual time until `p` settles; fails loudly instead of hanging on a deadlock. */
export async function runToEnd<T>(clock: FakeClock, p: Promise<T>, maxSteps = 100_000): Promise<T> {
  let settled = false;
  p.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  for (let i = 0; i < maxSteps; i++) {
    await flush();
    if (settled) return p;
    if (!clock.advance()) throw new Error('deadlock: the workflow waits but no timer is pending');
  }
  throw new Error(`still running after ${maxSteps} clock steps`);
}

/** What a scripted node does for one micro-step call. */
export type Behaviour =
  | NodeOutcome
  /** Never answers: the call only ends when its signal aborts. */
  | 'hang'
  /** Left out of the returned map. */
  | 'missing'
  /** No answer for the call's whole budget (ctx.timeoutMs), then "no answer": a node not back. */
  | 'timeout';

export interface CallInfo {
  micro: string;
  kind: MicroStep['kind'];
  nodes: string[];
  at: number;
  end?: number;
  attempt: number;
  instance: string;
  timeoutMs: number;
  aborted?: boolean;
}

export interface ScriptArgs {
  node: string;
  micro: MicroStep;
  label: string;
  attempt: number;
  instance: string;
  /** How many calls of this micro label this node has seen before, across instances. */
  seen: number;
}

export interface FakeDriverOptions {
  /** Per-node behaviour; everything succeeds by default. */
  script?: (a: ScriptArgs) => Behaviour;
  /** Virtual duration of a call for one node; a call lasts as long as its slowest node. */
  duration?: (a: ScriptArgs) => number;
  /** A message to throw for this call instead of answering. */
  throwOn?: (micro: MicroStep, nodes: string[], ctx: MicroContext) => string | undefined;
  /**
   * For these micro-steps, each node's outcome goes to ctx.report as soon as its own duration is
   * over; the call still ends with its slowest node, its map holding every node.
   */
  early?: (micro: MicroStep) => boolean;
}

const notBack: NodeOutcome = { ok: false, reason: 'no answer' };

export const defaultDurations: Record<MicroStep['kind'], number> = {
  switchProfile: 100,
  reboot: 1_000,
  kexec: 500,
  waitReboot: 20_000,
  installKey: 200,
  partition: 300,
  format: 2_000,
  mount: 100,
  broadcast: 30_000,
  sync: 1_000,
};

export class FakeDriver implements WorkflowDriver {
  readonly calls: CallInfo[] = [];
  private readonly seen = new Map<string, number>();

  constructor(
    private readonly clock: FakeClock,
    private readonly opts: FakeDriverOptions = {},
  ) {}

  async run(micro: MicroStep, nodes: string[], ctx: MicroContext): Promise<Map<string, NodeOutcome>> {
    const label = microLabel(micro);
    const call: CallInfo = {
      micro: label,
      kind: micro.kind,
      nodes: [...nodes],
      at: this.clock.now(),
      attempt: ctx.attempt,
      instance: ctx.instance,
      timeoutMs: ctx.timeoutMs,
    };
    this.calls.push(call);
    const args = nodes.map((node): ScriptArgs => {
      const key = `${node}\0${label}`;
      const seen = this.seen.get(key) ?? 0;
      this.seen.set(key, seen + 1);
      return { node, micro, label, attempt: ctx.attempt, instance: ctx.instance, seen };
    });
    const thrown = this.opts.throwOn?.(micro, nodes, ctx);
    const behaviours = args.map((a): Behaviour => this.opts.script?.(a) ?? { ok: true });
    const durations = args.map((a, i) =>
      behaviours[i] === 'timeout' ? ctx.timeoutMs : (this.opts.duration?.(a) ?? defaultDurations[micro.kind]),
    );
    const hang = () =>
      new Promise<void>((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)));
    const early = this.opts.early?.(micro) ?? false;
    const out = new Map<string, NodeOutcome>();
    const answer = (i: number) => {
      const b = behaviours[i];
      if (b === 'missing' || b === 'hang') return;
      const o = b === 'timeout' ? notBack : b;
      out.set(nodes[i], o);
      if (early) ctx.report?.(nodes[i], o);
    };
    try {
      if (early) {
        await Promise.all(
          nodes.map(async (_, i) => {
            await this.clock.sleep(Math.max(0, durations[i]), ctx.signal);
            if (behaviours[i] === 'hang') await hang();
            if (thrown === undefined) answer(i);
          }),
        );
      } else {
        await this.clock.sleep(Math.max(0, ...durations), ctx.signal);
        if (behaviours.includes('hang')) await hang();
      }
    } catch (e) {
      call.aborted = true;
      throw e;
    } finally {
      call.end = this.clock.now();
    }
    if (thrown !== undefined) throw new Error(thrown);
    if (!early) for (let i = 0; i < nodes.length; i++) answer(i);
    return out;
  }

  callsOf(label: string): CallInfo[] {
    return this.calls.filter((c) => c.micro === label);
  }
}

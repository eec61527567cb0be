// The controller's side of an image broadcast through the agents' `kb-agent receive`: one
// receiver per node started over the SSH pool, their progress and results read from what they
// print, the overall deadline, and the report. What differs between the two protocols (how the
// receivers start, what they are told, how the controller sends and whether it resumes nodes)
// is left to the subclasses: ResumableBroadcast (resumable.ts) and PlainBroadcast (plain.ts).
// The receivers are started a window at a time (as a TakTuk tree starts Kastafior's chain, not all
// at once), the deadlines follow the work (nodes, bytes, the throughput measured while it runs),
// and the progress (receivers up, bytes, nodes done, throughput) goes to `onProgress`.
import type { SshPool } from '../ssh/pool.js';
import type { CommandResult } from '../ssh/result.js';
import { DEFAULT_STALL_MS } from './protocol.js';
import { type AgentResult, Receiver } from './receiver.js';
import type { OpenSource } from './source.js';
import type { Topology } from './topology.js';
import type {
  BroadcastNode,
  BroadcastOptions,
  BroadcastProgress,
  BroadcastReport,
  BroadcastSource,
} from './types.js';

const MB = 1e6;

/**
 * What the deadlines assume of the machine at the least, when nothing has been measured yet:
 * receivers started per second, the bytes per second summed over the nodes and per node, and a
 * margin for the rest. Measured here: 2 cores start ≈100 receivers/s and move ≈300 MB/s summed.
 */
export const WORK_FLOORS = {
  startsPerSecond: 20,
  aggregateBytesPerSecond: 100e6,
  nodeBytesPerSecond: 5e6,
  slackMs: 30_000,
};

/** Receivers started at once by default (their SSH connection and command, until they listen). */
export const DEFAULT_START_WINDOW = 128;

/**
 * The time a broadcast of `bytes` to `nodes` nodes may take at the floors above: its receivers'
 * start-up, the bytes summed over the nodes and one node's share, and the margin. The default
 * budget of BroadcastEnv and of a broadcast nobody bounded; while it runs, the measured
 * throughput extends it (see BroadcastController).
 */
export function broadcastBudgetMs(nodes: number, bytes: number, floors = WORK_FLOORS): number {
  return Math.ceil(
    floors.slackMs +
      (1000 * nodes) / floors.startsPerSecond +
      (1000 * bytes * nodes) / floors.aggregateBytesPerSecond +
      (1000 * bytes) / floors.nodeBytesPerSecond,
  );
}

/**
 * A receiver start-up that brings no receiver up for this long has stalled (the ones still
 * starting are then given up): a node's connection gives up after its own connect timeout, so a
 * healthy start-up never waits this long for its next receiver, however many nodes there are.
 */
export function startIdleMs(stallMs: number): number {
  return Math.max(30_000, 3 * stallMs);
}

/** A timer that can be cleared, so a deadline that was not needed keeps nothing alive. */
export function deadline(ms: number) {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<true>((r) => {
    timer = setTimeout(() => r(true), ms);
  });
  return { expired, clear: () => clearTimeout(timer) };
}

/** A promise opened once, by whoever sees the condition met. */
function latch() {
  let open!: () => void;
  const reached = new Promise<void>((r) => {
    open = r;
  });
  return { reached, open };
}

/**
 * One broadcast, run once: per-node state (a Receiver each), the receivers started over the SSH
 * pool, their lines and exits, the controller's initial lanes as the topology's window allows,
 * the overall deadline and the report. A subclass per protocol fills in the abstract steps.
 */
export abstract class BroadcastController {
  protected readonly receivers: Receiver[];
  protected readonly stallMs: number;
  protected readonly timeoutMs: number;
  protected readonly size: number;
  /** The broadcast is over: nothing new starts. */
  protected ended = false;
  /** Every receiver has said it listens. */
  protected readonly allListening = latch();
  /** Every receiver's command has ended. */
  protected readonly allExited = latch();
  /** The transfer's start: the receivers are up. */
  private tStart: number;
  private readonly index: Map<string, number>;
  private listeningCount = 0;
  private exitedCount = 0;
  /** The controller's own initial lanes, not started yet, and how many of them run. */
  private readonly queue: number[][];
  private sending = 0;
  /** Receivers being started now (not listening nor exited yet), and when one last came up. */
  private starting = 0;
  private lastStartedAt = 0;
  private readonly startSlot: (() => void)[] = [];
  private upCount = 0;
  /** The deadline: the caller's (or the work's at the floors), extended by measured progress. */
  private readonly hardDeadline: number;
  private deadlineAt: number;
  /** (time, bytes) samples of the transfer for its recent throughput. */
  private readonly samples: { at: number; bytes: number }[] = [];
  private progressTimer: NodeJS.Timeout | undefined;
  private phase: BroadcastProgress['phase'] = 'starting';
  private phaseAt: number;

  constructor(
    protected readonly nodes: readonly BroadcastNode[],
    protected readonly source: BroadcastSource,
    protected readonly opts: BroadcastOptions,
    protected readonly topology: Topology,
    protected readonly src: OpenSource,
    protected readonly pool: SshPool,
    /** When the broadcast began (before the source was opened). */
    private readonly t0: number,
  ) {
    this.stallMs = opts.stallMs ?? DEFAULT_STALL_MS;
    this.size = source.size;
    // the caller's budget (the deployment step's time left, itself sized from the work) is the
    // deadline; without one, the work's own at the floors, which measured progress may extend up
    // to twice. Not the lesser of the two: a slow machine (TCG VMs) is under the floors, and a
    // plain chain reports no bytes until its nodes exit, so nothing could extend it.
    const work = broadcastBudgetMs(nodes.length, source.size);
    this.timeoutMs = opts.timeoutMs ?? work;
    this.deadlineAt = t0 + this.timeoutMs;
    this.hardDeadline = t0 + (opts.timeoutMs ?? 2 * work);
    this.phaseAt = t0;
    this.receivers = nodes.map((nd) => new Receiver(nd, `${nd.ip}:${opts.port}`, t0));
    this.index = new Map(this.receivers.map((r, i) => [r.address, i]));
    this.queue = [...topology.initial];
    this.tStart = Date.now();
  }

  /** Starts the receivers and waits until they can take data. */
  protected abstract startReceivers(): Promise<void>;
  /** Node i's receiver's arguments after its port: where it forwards, and what it does with the bytes. */
  protected abstract receiverArgs(i: number): string;
  /** The transfer begins: sends the first lanes. */
  protected abstract startSending(): void;
  /** Sends the image along one of the controller's initial lanes; resolves when that lane ends. */
  protected abstract sendInitial(targets: number[]): Promise<void>;
  /** Node i lost its sender (`why`): the controller sends to it itself, where the protocol can. */
  protected abstract resume(i: number, why: string): void;
  /** The broadcast is over: ends whatever the controller still sends. */
  protected abstract stopSending(): void;

  /** Starts the receivers, sends, waits for every result or the deadline, cleans up, reports. */
  async run(): Promise<BroadcastReport> {
    const { receivers } = this;
    const aborted = latch();
    const onAbort = () => {
      this.cutAll('aborted');
      aborted.open();
    };
    if (this.opts.signal?.aborted) onAbort();
    this.opts.signal?.addEventListener('abort', onAbort, { once: true });
    if (this.opts.onProgress) {
      this.progressTimer = setInterval(() => this.tick(), this.opts.progressIntervalMs ?? 1000);
      this.progressTimer.unref?.();
    }
    try {
      this.emitProgress();
      if (!this.opts.signal?.aborted) await this.startReceivers();
      this.tStart = Date.now();
      this.phase = 'sending';
      this.phaseAt = this.tStart;
      this.samples.push({ at: this.tStart, bytes: 0 });
      this.emitProgress();
      for (const r of receivers) {
        r.lastMove = this.tStart;
        // star nodes wait their turn; chain and tree nodes all take part from the start
        if (!this.topology.staggered) r.watch = true;
      }
      if (!this.opts.signal?.aborted) {
        this.startSending();
        await this.awaitReceivers(aborted.reached);
      }
    } finally {
      this.ended = true;
      clearInterval(this.progressTimer);
      this.opts.signal?.removeEventListener('abort', onAbort);
      this.stopSending();
      for (const r of receivers) if (!r.exited) r.ac.abort();
      await this.src.close();
      if (!this.opts.sshPool) this.pool.close();
    }
    this.phase = 'done';
    this.emitProgress();
    return this.report(Date.now());
  }

  /**
   * Starts the receivers in `order`, at most `startWindow` at once (a slot frees when its receiver
   * listens or exits); resolves when every one listens or has exited, or when none has come up for
   * `startIdleMs` (those still starting, or not started, are then given up), or at the deadline.
   */
  protected async startPaced(order: readonly number[]): Promise<void> {
    const window = Math.max(1, this.opts.startWindow ?? DEFAULT_START_WINDOW);
    const idleMs = startIdleMs(this.stallMs);
    this.lastStartedAt = Date.now();
    let stalled = false;
    const watch = setInterval(() => {
      const now = Date.now();
      if (now - this.lastStartedAt > idleMs || now >= this.deadlineAt || this.opts.signal?.aborted) {
        stalled = true;
        for (const w of this.startSlot.splice(0)) w();
      }
    }, 250);
    try {
      for (const i of order) {
        if (stalled || this.ended) break;
        if (this.starting >= window) await new Promise<void>((r) => this.startSlot.push(r));
        if (stalled || this.ended) break;
        this.starting++;
        this.receivers[i].starting = true;
        this.startReceiver(i);
      }
      while (!stalled && this.upCount < this.nodes.length) {
        await new Promise<void>((r) => this.startSlot.push(r));
      }
    } finally {
      clearInterval(watch);
    }
    for (const r of this.receivers) {
      if (!r.listening && !r.exited) {
        r.error = r.starting
          ? `receiver did not start listening (none came up for ${Math.round(idleMs / 1000)} s)`
          : 'receiver not started: the start-up stalled';
        r.ac.abort();
      }
    }
  }

  /** Node i's receiver listens or has exited: its start-up slot is free. */
  private startedUp(i: number) {
    const r = this.receivers[i];
    if (r.up) return;
    r.up = true;
    this.upCount++;
    this.lastStartedAt = Date.now();
    if (r.starting) {
      this.starting--;
      this.startSlot.shift()?.();
    }
    if (this.upCount === this.nodes.length) for (const w of this.startSlot.splice(0)) w();
  }

  /** Ends every receiver not done, with `why`. */
  private cutAll(why: string) {
    for (const r of this.receivers) {
      if (r.settled) continue;
      r.error ??= why;
      r.ac.abort();
    }
    for (const w of this.startSlot.splice(0)) w();
  }

  /** Bytes the nodes hold, summed. */
  private heldBytes(): number {
    let b = 0;
    for (const r of this.receivers) b += r.result ? r.result.bytes : r.bytes;
    return b;
  }

  /** Each progress tick: extend the deadline by the measured throughput, and report. */
  private tick() {
    if (this.phase === 'sending') this.followThroughput();
    this.emitProgress();
  }

  /**
   * While the transfer moves, the deadline follows it: when what is left, at the throughput of the
   * last 10 s, ends after the deadline, the deadline moves to that end (plus two stall times),
   * never past the hard one. A transfer that slows to a crawl keeps the deadline it had.
   */
  protected followThroughput() {
    const now = Date.now();
    const bytes = this.heldBytes();
    this.samples.push({ at: now, bytes });
    while (this.samples.length > 2 && now - this.samples[1].at >= 10_000) this.samples.shift();
    const first = this.samples[0];
    const rate = (bytes - first.bytes) / Math.max(1, now - first.at);
    if (!(rate > 0)) return;
    let left = 0;
    for (const r of this.receivers) if (!r.settled) left += Math.max(0, this.size - r.bytes);
    const end = now + left / rate + 2 * this.stallMs;
    if (end > this.deadlineAt) this.deadlineAt = Math.min(this.hardDeadline, end);
  }

  private emitProgress() {
    const cb = this.opts.onProgress;
    if (!cb) return;
    const now = Date.now();
    let done = 0;
    let failed = 0;
    for (const r of this.receivers) {
      if (r.result && r.result.bytes === this.size) done++;
      else if (r.exited || r.error) failed++;
    }
    const bytes = this.heldBytes();
    const elapsedMs = now - this.phaseAt;
    try {
      cb({
        phase: this.phase,
        nodes: this.nodes.length,
        listening: this.listeningCount,
        done,
        failed,
        bytes,
        totalBytes: this.size * this.nodes.length,
        elapsedMs,
        bytesPerSecond: this.phase === 'starting' ? 0 : (1000 * bytes) / Math.max(1, now - this.tStart),
      });
    } catch {
      // a progress display's failure is not the broadcast's
    }
  }

  /** Starts node i's `kb-agent receive`, reading its lines until it exits. */
  protected startReceiver(i: number) {
    const cmd = `kb-agent receive ${this.opts.port}${this.receiverArgs(i)}`;
    void this.pool
      .execLines({ ip: this.nodes[i].ip }, cmd, (line) => this.onLine(i, line), {
        signal: this.receivers[i].ac.signal,
      })
      .then((r) => this.onExit(i, r));
  }

  /** ` --forward a,b` per lane of node indexes. */
  protected forwardArgs(lanes: number[][]): string {
    return lanes.map((l) => ` --forward ${l.map((j) => this.receivers[j].address).join(',')}`).join('');
  }

  /** The node a receiver address belongs to. */
  protected indexOf(address: string): number | undefined {
    return this.index.get(address);
  }

  /** Keeps `text` about the node at `address`, for its error. */
  protected note(address: string, text: string) {
    const j = this.index.get(address);
    if (j !== undefined) this.receivers[j].notes.push(text);
  }

  /** Starts the queued initial lanes as the window allows. */
  protected pump() {
    while (!this.ended && this.queue.length && this.sending < this.topology.window) {
      this.sending++;
      void this.sendInitial(this.queue.shift()!).then(() => {
        this.sending--;
        this.pump();
      });
    }
  }

  private onLine(i: number, line: string) {
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(line);
    } catch {
      return;
    }
    if (typeof o !== 'object' || o === null) return;
    const s = this.receivers[i];
    if (typeof o.sha256 === 'string' && typeof o.bytes === 'number') {
      s.result = o as unknown as AgentResult;
      s.bytes = o.bytes;
      s.doneAt = Date.now();
    } else if ('listening' in o) {
      if (!s.listening) {
        s.listening = true;
        this.startedUp(i);
        if (++this.listeningCount === this.nodes.length) this.allListening.open();
      }
    } else if (typeof o.skip === 'string') {
      this.note(o.skip, `${this.nodes[i].name} skipped it: ${o.reason}`);
    } else if (typeof o.cannot === 'string') {
      const j = this.index.get(o.cannot);
      if (j !== undefined) this.resume(j, `${this.nodes[i].name} no longer buffers offset ${o.have}`);
    } else if (typeof o.bytes === 'number' && o.bytes > s.bytes) {
      s.bytes = o.bytes;
      s.lastMove = Date.now();
    }
  }

  private onExit(i: number, r: CommandResult) {
    this.startedUp(i);
    if (this.receivers[i].exit(r)) {
      for (const d of this.topology.dependents(i)) this.resume(d, `${this.nodes[i].name} died`);
    }
    if (++this.exitedCount === this.nodes.length) this.allExited.open();
  }

  /**
   * Until every receiver has exited, or the deadline (which measured progress may move, see
   * followThroughput) has cut out the ones left.
   */
  private async awaitReceivers(aborted: Promise<void>) {
    for (;;) {
      const overall = deadline(Math.max(0, this.deadlineAt - Date.now()));
      const timedOut = await Promise.race([
        this.allExited.reached.then(() => false),
        aborted.then(() => false),
        overall.expired,
      ]);
      overall.clear();
      if (!timedOut) return;
      // progress may have moved the deadline meanwhile (the timer was set for the old one)
      if (Date.now() < this.deadlineAt) continue;
      break;
    }
    const after = Date.now() - this.t0;
    for (const s of this.receivers) {
      if (s.exited) continue;
      s.error ??= `timed out after ${Math.round(after / 1000)} s at ${s.bytes} of ${this.size} bytes`;
      s.ac.abort();
    }
    const grace = deadline(2000);
    await Promise.race([this.allExited.reached, grace.expired]);
    grace.clear();
  }

  private report(end: number): BroadcastReport {
    const { size, tStart } = this;
    const n = this.nodes.length;
    const nodes = this.receivers.map((r) => r.report(this.source, tStart, end));
    const okCount = nodes.filter((r) => r.ok).length;
    const last = Math.max(tStart, ...this.receivers.map((s) => s.doneAt ?? 0));
    const makespanMs = Math.max(1, (okCount === n ? last : end) - tStart);
    return {
      topology: this.topology.name,
      nodes,
      ok: okCount,
      ko: n - okCount,
      size,
      setupMs: tStart - this.t0,
      makespanMs,
      throughputMBps: size / MB / (makespanMs / 1000),
      aggregateMBps: (size * okCount) / MB / (makespanMs / 1000),
    };
  }
}

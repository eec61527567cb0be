// The controller's side of an image broadcast through the agents' `kb-agent receive`: one
// receiver per node started over the SSH pool, their progress and results read from what they
// print, the overall deadline, and the report. What differs between the two protocols (how the
// receivers start, what they are told, how the controller sends and whether it resumes nodes)
// is left to the subclasses: ResumableBroadcast (resumable.ts) and PlainBroadcast (plain.ts).
import type { SshPool } from '../ssh/pool.js';
import type { CommandResult } from '../ssh/result.js';
import { DEFAULT_STALL_MS } from './protocol.js';
import { type AgentResult, Receiver } from './receiver.js';
import type { OpenSource } from './source.js';
import type { Topology } from './topology.js';
import type { BroadcastNode, BroadcastOptions, BroadcastReport, BroadcastSource } from './types.js';

const MB = 1e6;

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
    this.timeoutMs = opts.timeoutMs ?? 600_000;
    this.size = source.size;
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
    try {
      await this.startReceivers();
      this.tStart = Date.now();
      for (const r of receivers) {
        r.lastMove = this.tStart;
        // star nodes wait their turn; chain and tree nodes all take part from the start
        if (!this.topology.staggered) r.watch = true;
      }
      this.startSending();
      await this.awaitReceivers();
    } finally {
      this.ended = true;
      this.stopSending();
      for (const r of receivers) if (!r.exited) r.ac.abort();
      await this.src.close();
      if (!this.opts.sshPool) this.pool.close();
    }
    return this.report(Date.now());
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
    if (this.receivers[i].exit(r)) {
      for (const d of this.topology.dependents(i)) this.resume(d, `${this.nodes[i].name} died`);
    }
    if (++this.exitedCount === this.nodes.length) this.allExited.open();
  }

  /** Until every receiver has exited, or the overall deadline has cut out the ones left. */
  private async awaitReceivers() {
    const left = this.timeoutMs - (Date.now() - this.t0);
    const overall = deadline(Math.max(0, left));
    const timedOut = await Promise.race([this.allExited.reached.then(() => false), overall.expired]);
    overall.clear();
    if (!timedOut) return;
    for (const s of this.receivers) {
      if (s.exited) continue;
      s.error ??= `timed out after ${this.timeoutMs} ms at ${s.bytes} bytes`;
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

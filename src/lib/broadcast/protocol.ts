// The resumable broadcast protocol (Kascade's idea, our own wire format), shared by the controller
// and the emulated agent. A sender (the controller, or a node forwarding) connects to a receiver;
// the receiver speaks first with `HAVE <offset>\n` (the bytes it already holds), the sender sends
// the image from that offset on, and the receiver answers over the same connection with lines:
// `ALIVE <offset>\n` about every 500 ms, `DONE\n` once it holds the whole image and its own
// successors are done, or `BYE\n` when another sender has taken over (the old one then stops).
// A sender whose receiver does not answer HAVE, does not drain its writes, or goes quiet for the
// stall time skips to the next target of its list, which answers its own HAVE.
import { connect, type Socket } from 'node:net';

export const DEFAULT_STALL_MS = 3000;
export const DEFAULT_RING_BYTES = 64 * 2 ** 20;
export const CHUNK_BYTES = 64 * 1024;

/** What a lane sends from: the controller's image, or a node's ring buffer of what it received. */
export interface LaneSource {
  readonly size: number;
  /** Bytes [0, have()) have arrived... */
  have(): number;
  /** ...and [low(), have()) can still be read. */
  low(): number;
  /** At most `max` bytes from `offset` (offset in [low(), have())). */
  read(offset: number, max: number): Buffer | Promise<Buffer>;
  /** Resolves once have() > offset (maybe spuriously early: callers check again). */
  waitFor(offset: number): Promise<void>;
}

export type LaneEnd =
  /** The target holds the whole image and said DONE. */
  | { kind: 'done'; target: string }
  /** Another sender took the target over (BYE). */
  | { kind: 'replaced'; target: string }
  /** The target is behind what this source still holds: someone else must resume it. */
  | { kind: 'cannot'; target: string; have: number }
  /** Every target failed. */
  | { kind: 'exhausted' }
  | { kind: 'aborted' };

export interface LaneHooks {
  connected?(target: string, have: number): void;
  skipped?(target: string, reason: string): void;
  /** After each write (the lane's `sent` moved). */
  progress?(sent: number): void;
}

export interface LaneOptions {
  stallMs?: number;
  /** Source address of the connections (a VM's own address). */
  localAddress?: string;
  chunkBytes?: number;
  hooks?: LaneHooks;
}

class Replaced extends Error {}
class Aborted extends Error {}

/** Splits `host:port` (the host may itself hold colons: IPv6). */
export function splitTarget(target: string): { host: string; port: number } {
  const i = target.lastIndexOf(':');
  const port = Number(target.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new Error(`bad target ${target} (host:port expected)`);
  }
  return { host: target.slice(0, i).replace(/^\[(.*)\]$/, '$1'), port };
}

/** One connection from a sender to a receiver, with the receiver's answers parsed. */
class Peer {
  readonly sock: Socket;
  have = -1;
  done = false;
  lastHeard = Date.now();
  error: Error | null = null;
  private failListeners = new Set<(e: Error) => void>();
  private waiter: (() => void) | null = null;
  private pending = '';

  constructor(target: string, localAddress?: string) {
    const { host, port } = splitTarget(target);
    this.sock = connect({ host, port, localAddress });
    this.sock.setNoDelay(true);
    this.sock.on('data', (d: Buffer) => this.onData(d));
    this.sock.on('error', (e) => this.fail(e));
    this.sock.on('close', () =>
      this.fail(new Error(this.have < 0 ? 'connection closed' : 'connection lost')),
    );
  }

  fail(e: Error) {
    if (!this.error) {
      this.error = e;
      for (const f of this.failListeners) f(e);
      this.failListeners.clear();
    }
    this.wake();
  }

  /** Settles like `p`, or rejects as soon as this connection fails. */
  guard<T>(p: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.error) return reject(this.error);
      this.failListeners.add(reject);
      p.then(
        (v) => {
          this.failListeners.delete(reject);
          resolve(v);
        },
        (e) => {
          this.failListeners.delete(reject);
          reject(e);
        },
      );
    });
  }

  private wake() {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  private onData(d: Buffer) {
    this.lastHeard = Date.now();
    this.pending += d.toString('latin1');
    let nl = this.pending.indexOf('\n');
    while (nl >= 0) {
      const line = this.pending.slice(0, nl);
      this.pending = this.pending.slice(nl + 1);
      const have = /^HAVE (\d+)$/.exec(line);
      if (have) this.have = Number(have[1]);
      else if (line === 'DONE') this.done = true;
      else if (line === 'BYE') this.fail(new Replaced('replaced by another sender'));
      else if (!/^ALIVE \d+$/.test(line)) this.fail(new Error(`unexpected answer ${JSON.stringify(line)}`));
      nl = this.pending.indexOf('\n');
    }
    if (this.pending.length > 256) this.fail(new Error('answer line too long'));
    this.wake();
  }

  /** Until cond() holds; fails when the receiver is silent for `idleMs` (ALIVE lines count). */
  until(cond: () => boolean, idleMs: number, what: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setInterval(
        () => {
          if (Date.now() - this.lastHeard < idleMs) return;
          this.waiter = null;
          clearInterval(timer);
          reject(new Error(`no ${what} in ${idleMs} ms`));
        },
        Math.min(250, idleMs),
      );
      const check = () => {
        if (this.error || cond()) {
          clearInterval(timer);
          if (this.error) reject(this.error);
          else resolve();
        } else this.waiter = check;
      };
      check();
    });
  }

  /** Until the socket drains its writes; a receiver that takes longer than `ms` is stalled. */
  drain(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    let onDrain = () => {};
    const drained = new Promise<void>((resolve, reject) => {
      onDrain = resolve;
      timer = setTimeout(() => reject(new Error(`write timeout (${ms} ms)`)), ms);
      this.sock.once('drain', onDrain);
    });
    return this.guard(drained).finally(() => {
      clearTimeout(timer);
      this.sock.off('drain', onDrain);
    });
  }
}

/**
 * One outgoing stream: sends the image to the first target of `targets` that answers, from the
 * offset it announces, skipping to the next target when one fails or stalls.
 */
export class Lane {
  /** Offset sent so far (0 before the first HAVE: until then the lane may need every byte). */
  sent = 0;
  readonly forwardedTo: string[] = [];
  readonly skipped: { target: string; reason: string }[] = [];
  finished = false;
  private peer: Peer | null = null;
  private aborted = false;
  private readonly abortSignal: Promise<never>;
  private rejectAbort!: (e: Error) => void;
  private readonly stallMs: number;

  constructor(
    readonly targets: readonly string[],
    private readonly src: LaneSource,
    private readonly opts: LaneOptions = {},
  ) {
    this.stallMs = opts.stallMs ?? DEFAULT_STALL_MS;
    this.abortSignal = new Promise<never>((_, reject) => {
      this.rejectAbort = reject;
    });
    this.abortSignal.catch(() => {});
  }

  /**
   * The source must keep its bytes from this offset on for this lane: the ones it has still to
   * send, and the ones its socket has not written yet (a write holds a view of the source's
   * buffer, not a copy).
   */
  get keepFrom(): number {
    return this.sent - (this.peer?.sock.writableLength ?? 0);
  }

  abort() {
    if (this.aborted) return;
    this.aborted = true;
    this.rejectAbort(new Aborted('aborted'));
    this.peer?.fail(new Aborted('aborted'));
    this.peer?.sock.destroy();
  }

  async run(): Promise<LaneEnd> {
    const end = await this.runTargets();
    this.finished = true;
    this.peer = null;
    return end;
  }

  private async runTargets(): Promise<LaneEnd> {
    const { src } = this;
    const chunk = this.opts.chunkBytes ?? CHUNK_BYTES;
    const hooks = this.opts.hooks ?? {};
    // nothing to offer before the first byte: connecting earlier could only time out
    try {
      while (src.size > 0 && src.have() === 0) await Promise.race([src.waitFor(0), this.abortSignal]);
    } catch {
      return { kind: 'aborted' };
    }
    for (const target of this.targets) {
      if (this.aborted) return { kind: 'aborted' };
      let peer: Peer;
      try {
        peer = new Peer(target, this.opts.localAddress);
      } catch (e) {
        this.skip(target, (e as Error).message);
        continue;
      }
      this.peer = peer;
      try {
        await peer.until(() => peer.have >= 0, this.stallMs, 'HAVE');
        const m = peer.have;
        if (m > src.size) throw new Error(`announces ${m} of ${src.size} bytes`);
        if (m < src.size && m < src.low()) {
          peer.sock.end();
          return { kind: 'cannot', target, have: m };
        }
        this.sent = m;
        this.forwardedTo.push(target);
        hooks.connected?.(target, m);
        let off = m;
        while (off < src.size) {
          while (src.have() <= off) await peer.guard(src.waitFor(off));
          const r = src.read(off, Math.min(chunk, src.have() - off));
          const buf = r instanceof Promise ? await peer.guard(r) : r;
          off += buf.length;
          this.sent = off;
          const flowing = peer.sock.write(buf);
          hooks.progress?.(off);
          if (!flowing) await peer.drain(this.stallMs);
        }
        await peer.until(() => peer.done, this.stallMs, 'DONE');
        peer.sock.end();
        return { kind: 'done', target };
      } catch (e) {
        peer.sock.destroy();
        if (this.aborted || e instanceof Aborted) return { kind: 'aborted' };
        if (e instanceof Replaced) return { kind: 'replaced', target };
        this.skip(target, (e as Error).message);
      }
    }
    return { kind: 'exhausted' };
  }

  private skip(target: string, reason: string) {
    this.skipped.push({ target, reason });
    this.opts.hooks?.skipped?.(target, reason);
  }
}

/**
 * The latest bytes received, copied into one buffer allocated once and then reused in a circle,
 * so that a relay keeps none of the chunks it reads: each is garbage as soon as it is copied.
 * (Chunks kept for a while outlive the young generation and then wait for a full collection: a
 * process relaying a large file for a few dozen emulated VMs held gigabytes of dead buffers.)
 * Holds the latest `capacity` bytes or more: a push never overwrites what is at or after its
 * `keepFrom` (bytes a lane has still to send, or its socket to write), the buffer grows instead.
 */
export class Ring {
  private buf = Buffer.alloc(0);
  low = 0;
  end = 0;

  constructor(readonly capacity: number) {}

  /** Copies `chunk` in (the caller may reuse it). */
  push(chunk: Buffer, keepFrom = Number.POSITIVE_INFINITY) {
    const from = Math.max(this.low, Math.min(keepFrom, this.end));
    const need = Math.max(this.capacity, this.end + chunk.length - from);
    if (need > this.buf.length) this.resize(need, Math.max(this.low, this.end + chunk.length - need));
    copyIn(this.buf, this.end, chunk);
    this.end += chunk.length;
    this.low = Math.max(this.low, this.end - this.buf.length);
  }

  /** At most `max` bytes from `offset`: a view, valid until a push overwrites them. */
  read(offset: number, max: number): Buffer {
    if (offset < this.low || offset >= this.end) {
      throw new RangeError(`offset ${offset} outside the ring [${this.low}, ${this.end})`);
    }
    const at = offset % this.buf.length;
    return this.buf.subarray(at, at + Math.min(max, this.end - offset, this.buf.length - at));
  }

  /** A larger buffer, holding [from, end) of this one (from >= low). */
  private resize(size: number, from: number) {
    const next = Buffer.allocUnsafe(size);
    for (let off = from; off < this.end; ) {
      const part = this.read(off, this.end - off);
      copyIn(next, off, part);
      off += part.length;
    }
    this.buf = next;
    this.low = from;
  }
}

/** Writes `data` at stream offset `offset` of the circular buffer `buf`. */
function copyIn(buf: Buffer, offset: number, data: Buffer) {
  const at = offset % buf.length;
  const first = Math.min(data.length, buf.length - at);
  data.copy(buf, at, 0, first);
  if (first < data.length) data.copy(buf, 0, first);
}

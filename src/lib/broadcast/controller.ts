// Image broadcast from the controller to nodes through the agent's `kb-agent receive`: a pipelined
// chain (Kastafior, Kascade), a star (the controller sends to every node) or a pipelined k-ary
// tree. With the resumable protocol (protocol.ts) nodes that die or stall are cut out and every
// other node still ends with the whole image; with `resumable: false` the controller drives the
// real busybox agent's plain `nc | tee` form, without fault tolerance.
import { open } from 'node:fs/promises';
import { connect } from 'node:net';
import { InputError } from '../errors.js';
import { SshPool } from '../ssh/pool.js';
import type { CommandResult } from '../ssh/result.js';
import { neverStarted } from '../ssh/session.js';
import type { BroadcastMethod } from './methods.js';
import { treeShape } from './order.js';
import { DEFAULT_RING_BYTES, DEFAULT_STALL_MS, Lane, type LaneSource } from './protocol.js';

export interface BroadcastNode {
  name: string;
  ip: string;
}

/** The image: a file or bytes in memory, with its size and sha256 (hex). */
export type BroadcastSource = ({ path: string } | { data: Buffer }) & { size: number; sha256: string };

/** What each node does with the bytes: keep them (emulated disk), untar them, or write a device. */
export type BroadcastMode = 'store' | { extract: string } | { write: string };

export interface BroadcastOptions {
  /** The testbed's private key (the nodes accept it for root). */
  privateKey: string | Buffer;
  /** TCP port the receivers listen on. */
  port: number;
  mode: BroadcastMode;
  /** The resumable protocol (default); false drives the busybox agent's plain form. */
  resumable?: boolean;
  /** A node that does not drain or answer for this long is cut out (default 3000). */
  stallMs?: number;
  /** Whole broadcast; nodes not done by then are KO (default 10 min). */
  timeoutMs?: number;
  /**
   * Connections to reuse (not closed here), e.g. the deployment's own: one connection per node;
   * by default a pool of its own, closed at the end.
   */
  sshPool?: SshPool;
  /** Each node's ring buffer (default 64 MiB). */
  ringBytes?: number;
  /** How many successors a chain node may skip to before the controller steps in (default 8). */
  maxFallbacks?: number;
  /** Without the resumable protocol: pause between starting two receivers (default 300 ms). */
  startDelayMs?: number;
}

export interface StarOptions extends BroadcastOptions {
  /** Streams the controller runs at once (default 8). */
  window?: number;
}

export interface TreeOptions extends BroadcastOptions {
  /** Children per node (default 2). */
  arity?: number;
}

export interface NodeReport {
  node: string;
  ok: boolean;
  bytes: number;
  sha256: string | null;
  error?: string;
  /** From the start of the transfer to this node's result. */
  ms: number;
  /** Where the node forwarded (resumable protocol). */
  forwardedTo: string[];
  /** How many times the controller resumed it from the source. */
  resumed: number;
}

export interface BroadcastReport {
  topology: BroadcastMethod;
  nodes: NodeReport[];
  ok: number;
  ko: number;
  size: number;
  /** Starting the receivers (SSH, listening). */
  setupMs: number;
  /** From the first byte sent to the last node's result. */
  makespanMs: number;
  /** size / makespan: the rate each node got. */
  throughputMBps: number;
  /** size · OK nodes / makespan. */
  aggregateMBps: number;
}

/** A chain in the given order (see chainOrder): each node forwards to the next one. */
export async function broadcastChain(
  nodes: readonly BroadcastNode[],
  source: BroadcastSource,
  opts: BroadcastOptions,
): Promise<BroadcastReport> {
  const n = nodes.length;
  const f = Math.max(1, opts.maxFallbacks ?? 8);
  const range = (from: number, count: number) =>
    Array.from({ length: Math.max(0, Math.min(n, from + count) - from) }, (_, k) => from + k);
  return run(nodes, source, opts, {
    topology: 'chain',
    lanes: nodes.map((_, i) => (i + 1 < n ? [range(i + 1, f)] : [])),
    initial: [range(0, f)],
    window: 1,
    resumeTargets: (i) => range(i, f),
    dependents: () => [],
  });
}

/** The controller sends to every node itself, `window` streams at a time. */
export async function broadcastStar(
  nodes: readonly BroadcastNode[],
  source: BroadcastSource,
  opts: StarOptions,
): Promise<BroadcastReport> {
  const window = opts.window ?? 8;
  if (!Number.isInteger(window) || window < 1)
    throw new InputError(`broadcast: window must be >= 1, got ${window}`);
  return run(nodes, source, opts, {
    topology: 'star',
    lanes: nodes.map(() => []),
    initial: nodes.map((_, i) => [i]),
    window,
    resumeTargets: (i) => [i],
    dependents: () => [],
  });
}

/** A k-ary tree in breadth-first order of `nodes` (see treeShape), each node forwarding to its children. */
export async function broadcastTree(
  nodes: readonly BroadcastNode[],
  source: BroadcastSource,
  opts: TreeOptions,
): Promise<BroadcastReport> {
  if (opts.resumable === false) {
    throw new InputError(
      'broadcast: a tree needs the resumable protocol (the busybox agent forwards to one node)',
    );
  }
  const shape = treeShape(nodes.length, opts.arity ?? 2);
  return run(nodes, source, opts, {
    topology: 'tree',
    lanes: shape.children.map((cs) => cs.map((c) => [c])),
    initial: nodes.length ? [[0]] : [],
    window: 1,
    resumeTargets: (i) => [i],
    // a dead node's children lose their only sender
    dependents: (i) => shape.children[i],
  });
}

interface Plan {
  topology: BroadcastReport['topology'];
  /** Per node, its outgoing lanes: node indexes, the first the target, the others fallbacks. */
  lanes: number[][][];
  /** The controller's own lanes at the start. */
  initial: number[][];
  /** How many initial lanes run at once. */
  window: number;
  /** Targets of a lane that resumes node i from the source. */
  resumeTargets(i: number): number[];
  /** Nodes left without a sender when node i dies. */
  dependents(i: number): number[];
}

/** What `kb-agent receive` prints last. */
interface AgentResult {
  bytes: number;
  sha256: string;
  ok?: boolean;
  forwardedTo?: string[] | string | null;
}

interface NodeState {
  bytes: number;
  lastMove: number;
  listening: boolean;
  /** Watched for progress (the transfer has reached it). */
  watch: boolean;
  result: AgentResult | null;
  code: number | null;
  exited: boolean;
  doneAt: number | null;
  error?: string;
  notes: string[];
  resumed: number;
  ac: AbortController;
}

const SAFE_ARG = /^[A-Za-z0-9_./:@%+=,-]+$/;
const MB = 1e6;

function validate(nodes: readonly BroadcastNode[], source: BroadcastSource, opts: BroadcastOptions) {
  if (nodes.length === 0) throw new InputError('broadcast: no nodes');
  const names = new Set<string>();
  const ips = new Set<string>();
  for (const n of nodes) {
    if (names.has(n.name)) throw new InputError(`broadcast: node ${n.name} listed twice`);
    if (ips.has(n.ip)) throw new InputError(`broadcast: address ${n.ip} listed twice (${n.name})`);
    names.add(n.name);
    ips.add(n.ip);
  }
  if (!Number.isInteger(opts.port) || opts.port <= 0 || opts.port > 65535) {
    throw new InputError(`broadcast: port must be 1-65535, got ${opts.port}`);
  }
  if (!Number.isSafeInteger(source.size) || source.size < 0) {
    throw new InputError(`broadcast: source size must be a byte count, got ${source.size}`);
  }
  if (!/^[0-9a-f]{64}$/.test(source.sha256))
    throw new InputError('broadcast: source sha256 must be 64 hex digits');
  if ('data' in source && source.data.length !== source.size) {
    throw new InputError(`broadcast: source holds ${source.data.length} bytes, not ${source.size}`);
  }
  modeArgs(opts.mode, true);
  for (const [k, v] of [
    ['stallMs', opts.stallMs],
    ['timeoutMs', opts.timeoutMs],
    ['ringBytes', opts.ringBytes],
  ] as const) {
    if (v !== undefined && (!Number.isInteger(v) || v <= 0)) {
      throw new InputError(`broadcast: ${k} must be a positive integer, got ${v}`);
    }
  }
}

/**
 * The receiver's arguments for what it does with the bytes (they go to the node's shell: a target
 * path of other characters is refused).
 */
export function modeArgs(mode: BroadcastMode, resumable: boolean): string {
  // the busybox agent keeps nothing without a target: no --store there
  if (mode === 'store') return resumable ? ' --store' : '';
  const p = 'extract' in mode ? mode.extract : mode.write;
  if (!SAFE_ARG.test(p)) throw new InputError(`broadcast: unsupported characters in target path ${p}`);
  return 'extract' in mode ? ` --extract ${p}` : ` --write ${p}`;
}

interface OpenSource extends LaneSource {
  close(): Promise<void>;
}

async function openSource(s: BroadcastSource): Promise<OpenSource> {
  const base = { size: s.size, have: () => s.size, low: () => 0, waitFor: async () => {} };
  if ('data' in s) {
    const d = s.data;
    return { ...base, read: (o, max) => d.subarray(o, o + max), close: async () => {} };
  }
  const fh = await open(s.path, 'r').catch((e: Error) => {
    throw new InputError(`broadcast: cannot open ${s.path}: ${e.message}`);
  });
  const st = await fh.stat();
  if (st.size !== s.size) {
    await fh.close();
    throw new InputError(`broadcast: ${s.path} holds ${st.size} bytes, not ${s.size}`);
  }
  return {
    ...base,
    read: async (o, max) => {
      const b = Buffer.allocUnsafe(max);
      const { bytesRead } = await fh.read(b, 0, max, o);
      if (bytesRead === 0) throw new Error(`${s.path}: short read at ${o}`);
      return b.subarray(0, bytesRead);
    },
    close: () => fh.close(),
  };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A timer that can be cleared, so a deadline that was not needed keeps nothing alive. */
function deadline(ms: number) {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<true>((r) => {
    timer = setTimeout(() => r(true), ms);
  });
  return { expired, clear: () => clearTimeout(timer) };
}

async function run(
  nodes: readonly BroadcastNode[],
  source: BroadcastSource,
  opts: BroadcastOptions,
  plan: Plan,
): Promise<BroadcastReport> {
  validate(nodes, source, opts);
  const resumable = opts.resumable ?? true;
  const stallMs = opts.stallMs ?? DEFAULT_STALL_MS;
  const timeoutMs = opts.timeoutMs ?? 600_000;
  const size = source.size;
  const n = nodes.length;
  const t0 = Date.now();
  const src = await openSource(source);
  const pool = opts.sshPool ?? new SshPool({ privateKey: opts.privateKey });
  const addr = (i: number) => `${nodes[i].ip}:${opts.port}`;
  const index = new Map(nodes.map((_, i) => [addr(i), i]));
  const st: NodeState[] = nodes.map(() => ({
    bytes: 0,
    lastMove: t0,
    listening: false,
    watch: false,
    result: null,
    code: null,
    exited: false,
    doneAt: null,
    notes: [],
    resumed: 0,
    ac: new AbortController(),
  }));
  let ended = false;
  let exitedCount = 0;
  let listeningCount = 0;
  let allExited!: () => void;
  const exitedAll = new Promise<void>((r) => {
    allExited = r;
  });
  let allListening!: () => void;
  const listeningAll = new Promise<void>((r) => {
    allListening = r;
  });
  const note = (target: string, text: string) => {
    const j = index.get(target);
    if (j !== undefined) st[j].notes.push(text);
  };

  // controller lanes, keyed by the node they were started for
  const feeding = new Map<number, Lane>();
  const plainSends = new Set<{ destroy(): void }>();
  const queue = [...plan.initial];
  let initialRunning = 0;
  const startLane = (targets: number[], initial: boolean) => {
    const key = targets[0];
    const lane = new Lane(targets.map(addr), src, {
      stallMs,
      chunkBytes: 256 * 1024,
      hooks: {
        connected: (t) => {
          const j = index.get(t);
          if (j === undefined) return;
          st[j].watch = true;
          st[j].lastMove = Date.now();
        },
        skipped: (t, reason) => {
          note(t, `controller skipped it: ${reason}`);
          // a node the controller itself could not resume (no answer, no drain) is cut out
          const j = index.get(t);
          if (!initial && j === key) cutOut(j, `stalled: ${reason} when resumed from the source`);
        },
      },
    });
    feeding.set(key, lane);
    if (initial) initialRunning++;
    void lane.run().then(() => {
      if (feeding.get(key) === lane) feeding.delete(key);
      if (initial) initialRunning--;
      pump();
    });
  };
  const sendPlain = (i: number) =>
    new Promise<void>((resolve) => {
      // the busybox agent's form: one stream, start to end, no answers
      const sock = connect({ host: nodes[i].ip, port: opts.port });
      plainSends.add(sock);
      sock.on('error', (e) => st[i].notes.push(`controller stream: ${e.message}`));
      sock.on('close', () => {
        plainSends.delete(sock);
        resolve();
      });
      sock.once('connect', async () => {
        try {
          for (let off = 0; off < size; ) {
            const r = src.read(off, Math.min(256 * 1024, size - off));
            const buf = r instanceof Promise ? await r : r;
            off += buf.length;
            if (!sock.write(buf)) await new Promise<void>((ok) => sock.once('drain', ok));
            if (sock.destroyed) return;
          }
          sock.end();
        } catch (e) {
          st[i].notes.push(`controller stream: ${(e as Error).message}`);
          sock.destroy();
        }
      });
    });
  let plainRunning = 0;
  const pump = () => {
    while (!ended && queue.length && (resumable ? initialRunning : plainRunning) < plan.window) {
      const targets = queue.shift()!;
      if (resumable) startLane(targets, true);
      else {
        plainRunning++;
        void sendPlain(targets[0]).then(() => {
          plainRunning--;
          pump();
        });
      }
    }
  };
  const cutOut = (i: number, why: string) => {
    const s = st[i];
    if (s.exited || s.result) return;
    s.error ??= why;
    s.ac.abort();
  };
  const feed = (i: number, why: string) => {
    const s = st[i];
    if (ended || !resumable || feeding.has(i) || s.exited || s.result || !s.listening) return;
    s.resumed++;
    s.watch = true;
    s.lastMove = Date.now();
    s.notes.push(`resumed from the source: ${why}`);
    startLane(
      plan.resumeTargets(i).filter((j) => !st[j].exited && !st[j].result),
      false,
    );
  };

  const onLine = (i: number, line: string) => {
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(line);
    } catch {
      return;
    }
    if (typeof o !== 'object' || o === null) return;
    const s = st[i];
    if (typeof o.sha256 === 'string' && typeof o.bytes === 'number') {
      s.result = o as unknown as AgentResult;
      s.bytes = o.bytes;
      s.doneAt = Date.now();
    } else if ('listening' in o) {
      if (!s.listening) {
        s.listening = true;
        if (++listeningCount === n) allListening();
      }
    } else if (typeof o.skip === 'string') {
      note(o.skip, `${nodes[i].name} skipped it: ${o.reason}`);
    } else if (typeof o.cannot === 'string') {
      const j = index.get(o.cannot);
      if (j !== undefined) feed(j, `${nodes[i].name} no longer buffers offset ${o.have}`);
    } else if (typeof o.bytes === 'number' && o.bytes > s.bytes) {
      s.bytes = o.bytes;
      s.lastMove = Date.now();
    }
  };
  const onExit = (i: number, r: CommandResult) => {
    const s = st[i];
    s.exited = true;
    s.code = r.code;
    if (!s.result) {
      // a receiver that never started says why; one that started and has no exit status was lost
      s.error ??=
        (neverStarted(r) ? `ssh ${nodes[i].ip}: ${r.error}` : undefined) ??
        (r.code === null
          ? `node lost during the transfer at ${s.bytes} bytes (SSH connection closed)`
          : `receiver exited ${r.code} without a result${r.stderr.trim() ? `: ${r.stderr.trim()}` : ''}`);
      for (const d of plan.dependents(i)) feed(d, `${nodes[i].name} died`);
    } else if (r.code !== 0 && r.stderr.trim()) s.error ??= r.stderr.trim();
    if (++exitedCount === n) allExited();
  };

  const startCmd = (i: number) => {
    const lanes = resumable ? plan.lanes[i] : plan.lanes[i].slice(0, 1).map((l) => l.slice(0, 1));
    const fwd = lanes.map((l) => ` --forward ${l.map(addr).join(',')}`).join('');
    const extra = resumable
      ? ` --size ${size} --sha256 ${source.sha256} --stall ${stallMs} --ring ${opts.ringBytes ?? DEFAULT_RING_BYTES}`
      : '';
    const cmd = `kb-agent receive ${opts.port}${fwd}${extra}${modeArgs(opts.mode, resumable)}`;
    void pool
      .execLines({ ip: nodes[i].ip }, cmd, (line) => onLine(i, line), { signal: st[i].ac.signal })
      .then((r) => onExit(i, r));
  };

  let watchdog: NodeJS.Timeout | undefined;
  let tStart = Date.now();
  try {
    // receivers last first, so each one's successor is already there when data reaches it
    if (resumable) {
      for (let i = n - 1; i >= 0; i--) startCmd(i);
      const startup = deadline(Math.min(timeoutMs, 30_000));
      await Promise.race([listeningAll, exitedAll, startup.expired]);
      startup.clear();
      for (let i = 0; i < n; i++) {
        if (!st[i].listening && !st[i].exited) {
          st[i].error = 'receiver did not start listening';
          st[i].ac.abort();
        }
      }
    } else {
      // busybox `nc` connects to its successor as it starts and says nothing: a fixed pause
      await Promise.all(nodes.map((nd) => pool.connect({ ip: nd.ip }).catch(() => {})));
      for (let i = n - 1; i >= 0; i--) {
        startCmd(i);
        st[i].listening = true;
        await sleep(opts.startDelayMs ?? 300);
      }
    }
    tStart = Date.now();
    const orphanMs = 2 * stallMs + 1000;
    for (let i = 0; i < n; i++) {
      st[i].lastMove = tStart;
      // star nodes wait their turn; chain and tree nodes all take part from the start
      if (plan.topology !== 'star') st[i].watch = true;
    }
    if (resumable) {
      watchdog = setInterval(
        () => {
          const now = Date.now();
          st.forEach((s, i) => {
            // a node nobody feeds (its sender died after the last skip) is resumed from the source
            if (s.watch && !s.exited && !s.result && s.bytes < size && now - s.lastMove > orphanMs) {
              feed(i, `no progress for ${now - s.lastMove} ms`);
            }
          });
        },
        Math.min(500, stallMs),
      );
    }
    pump();
    const left = timeoutMs - (Date.now() - t0);
    const overall = deadline(Math.max(0, left));
    const timedOut = await Promise.race([exitedAll.then(() => false), overall.expired]);
    overall.clear();
    if (timedOut) {
      for (const s of st) {
        if (s.exited) continue;
        s.error ??= `timed out after ${timeoutMs} ms at ${s.bytes} bytes`;
        s.ac.abort();
      }
      const grace = deadline(2000);
      await Promise.race([exitedAll, grace.expired]);
      grace.clear();
    }
  } finally {
    ended = true;
    clearInterval(watchdog);
    for (const l of feeding.values()) l.abort();
    for (const s of plainSends) s.destroy();
    for (const s of st) if (!s.exited) s.ac.abort();
    await src.close();
    if (!opts.sshPool) pool.close();
  }

  const end = Date.now();
  const reports: NodeReport[] = nodes.map((nd, i) => {
    const s = st[i];
    const r = s.result;
    const fwd = r?.forwardedTo;
    const ok = !!r && r.ok !== false && s.code === 0 && r.bytes === size && r.sha256 === source.sha256;
    let error: string | undefined;
    if (!ok) {
      error =
        s.error ??
        (r
          ? `got ${r.bytes} bytes with sha256 ${r.sha256}, expected ${size} with ${source.sha256}`
          : 'no result');
      const last = s.notes.filter((t) => !t.startsWith('resumed')).at(-1);
      if (last) error += `; ${last}`;
    }
    return {
      node: nd.name,
      ok,
      bytes: r?.bytes ?? s.bytes,
      sha256: r?.sha256 ?? null,
      ...(error ? { error } : {}),
      ms: (s.doneAt ?? end) - tStart,
      forwardedTo: Array.isArray(fwd) ? fwd : typeof fwd === 'string' ? [fwd] : [],
      resumed: s.resumed,
    };
  });
  const okCount = reports.filter((r) => r.ok).length;
  const last = Math.max(tStart, ...st.map((s) => s.doneAt ?? 0));
  const makespanMs = Math.max(1, (okCount === n ? last : end) - tStart);
  return {
    topology: plan.topology,
    nodes: reports,
    ok: okCount,
    ko: n - okCount,
    size,
    setupMs: tStart - t0,
    makespanMs,
    throughputMBps: size / MB / (makespanMs / 1000),
    aggregateMBps: (size * okCount) / MB / (makespanMs / 1000),
  };
}

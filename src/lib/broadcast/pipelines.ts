// Image broadcast from the controller to nodes through the agent's `kb-agent receive`: a pipelined
// chain (Kastafior, Kascade), a star (the controller sends to every node) or a pipelined k-ary
// tree. With the resumable protocol (protocol.ts, resumable.ts) nodes that die or stall are cut
// out and every other node still ends with the whole image; with `resumable: false` the
// controller drives the real busybox agent's plain `nc | tee` form (plain.ts), without fault
// tolerance. These entry points check their input, open the image and run the controller.
import { InputError } from '../errors.js';
import { SshPool } from '../ssh/pool.js';
import { PlainBroadcast } from './plain.js';
import { modeArgs } from './receiver.js';
import { ResumableBroadcast } from './resumable.js';
import { openSource } from './source.js';
import { chainTopology, starTopology, type Topology, treeTopology } from './topology.js';
import type {
  BroadcastNode,
  BroadcastOptions,
  BroadcastReport,
  BroadcastSource,
  StarOptions,
  TreeOptions,
} from './types.js';

/** A chain in the given order (see chainOrder): each node forwards to the next one. */
export async function broadcastChain(
  nodes: readonly BroadcastNode[],
  source: BroadcastSource,
  opts: BroadcastOptions,
): Promise<BroadcastReport> {
  return run(nodes, source, opts, chainTopology(nodes.length, opts.maxFallbacks ?? 8));
}

/** The controller sends to every node itself, `window` streams at a time. */
export async function broadcastStar(
  nodes: readonly BroadcastNode[],
  source: BroadcastSource,
  opts: StarOptions,
): Promise<BroadcastReport> {
  return run(nodes, source, opts, starTopology(nodes.length, opts.window ?? 8));
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
  return run(nodes, source, opts, treeTopology(nodes.length, opts.arity ?? 2));
}

async function run(
  nodes: readonly BroadcastNode[],
  source: BroadcastSource,
  opts: BroadcastOptions,
  topology: Topology,
): Promise<BroadcastReport> {
  validate(nodes, source, opts);
  const t0 = Date.now();
  const src = await openSource(source);
  const pool = opts.sshPool ?? new SshPool({ privateKey: opts.privateKey, knownHosts: opts.knownHosts });
  const Protocol = (opts.resumable ?? true) ? ResumableBroadcast : PlainBroadcast;
  return new Protocol(nodes, source, opts, topology, src, pool, t0).run();
}

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

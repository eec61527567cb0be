// One file to many nodes through their agents, by a broadcast method (chain, tree, star,
// TakTuk), in chain order (by site, host and VM), verified by sha256 on every node: what
// BroadcastEnv (deploy/broadcast-env.ts) and `kabootstrap put` (ops/put.ts) send with.
import { readFile } from 'node:fs/promises';
import type { Logger } from '../log.js';
import type { DeployNode } from '../nodes/targets.js';
import type { KnownHosts } from '../ssh/known-hosts.js';
import type { SshPool } from '../ssh/pool.js';
import type { BroadcastMethod } from './methods.js';
import { chainOrder } from './order.js';
import { broadcastChain, broadcastStar, broadcastTree } from './pipelines.js';
import { broadcastTaktuk } from './taktuk.js';
import type { BroadcastMode, BroadcastProgress, BroadcastReport } from './types.js';

/**
 * The receivers' TCP ports on the nodes: each broadcast takes the next one, so a retry never
 * meets a receiver its failed attempt left listening.
 */
export const broadcastPorts = { first: 7010, count: 64 };
let nextPort = 0;

export interface SendOptions {
  keyFile: string;
  /** The testbed's pinned host keys: a node presenting another key gets nothing. */
  knownHosts?: KnownHosts;
  /** The emulated agent speaks the resumable protocol; the busybox agent only the plain chain. */
  resumable: boolean;
  logger: Logger;
  timeoutMs?: number;
  /** A node that does not drain for this long is cut out (the protocol's default: 3 s). */
  stallMs?: number;
  /** Each receiver's ring buffer (the protocol's default: 64 MiB, as Kascade's ~100 MiB per machine). */
  ringBytes?: number;
  /** The deployment's connections to the nodes: the receivers ride them (no second connection). */
  sshPool?: SshPool;
  /** Ends the broadcast (the deployment step's timeout or cancellation). */
  signal?: AbortSignal;
  /** Where it is: receivers up, bytes, nodes done, throughput (not for TakTuk). */
  onProgress?: (p: BroadcastProgress) => void;
}

/** What runs each method of the registry (methods.ts). */
const implementations = {
  chain: broadcastChain,
  tree: broadcastTree,
  star: broadcastStar,
  taktuk: broadcastTaktuk,
} satisfies Record<BroadcastMethod, unknown>;

export async function sendFile(
  method: BroadcastMethod,
  nodes: DeployNode[],
  source: { path: string; size: number; sha256: string },
  mode: BroadcastMode,
  opts: SendOptions,
): Promise<BroadcastReport> {
  const common = {
    privateKey: await readFile(opts.keyFile),
    ...(opts.knownHosts ? { knownHosts: opts.knownHosts } : {}),
    port: broadcastPorts.first + (nextPort++ % broadcastPorts.count),
    stallMs: opts.stallMs,
    ringBytes: opts.ringBytes,
    mode,
    resumable: opts.resumable,
    timeoutMs: opts.timeoutMs,
    sshPool: opts.sshPool,
    signal: opts.signal,
    onProgress: opts.onProgress,
  };
  const ordered = chainOrder(nodes);
  const report = await implementations[method](ordered, source, common);
  opts.logger.debug(
    `broadcast ${method}: ${report.ok} OK, ${report.ko} KO, ${report.throughputMBps.toFixed(1)} MB/s per node in ${report.makespanMs} ms`,
  );
  return report;
}

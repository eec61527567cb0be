// BroadcastEnv's transfer: the environment's image to the nodes through their agents, in the
// chosen topology (the chain ordered by site, host and VM), verified by sha256 on every node.
import { readFile } from 'node:fs/promises';
import {
  type BroadcastMode,
  type BroadcastReport,
  broadcastChain,
  broadcastStar,
  broadcastTree,
} from '../broadcast/chain.js';
import { chainOrder } from '../broadcast/order.js';
import { broadcastTaktuk } from '../broadcast/taktuk.js';
import type { RegisteredEnvironment } from '../envs/registry.js';
import type { Logger } from '../log.js';
import type { DeployNode } from '../nodes/targets.js';
import type { SshPool } from '../ssh/pool.js';
import { defaultDisk } from './driver.js';
import type { BroadcastMethod, NodeOutcome } from './workflow.js';

/**
 * The receivers' TCP ports on the nodes: each broadcast takes the next one, so a retry never
 * meets a receiver its failed attempt left listening.
 */
export const broadcastPorts = { first: 7010, count: 64 };
let nextPort = 0;

export interface BroadcastStepOptions {
  keyFile: string;
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
}

/**
 * Emulated VMs share a few processes: a 64 MiB ring each would be gigabytes per process, so they
 * keep 2 MiB (a successor that fell further behind is resumed from the source instead).
 */
export const emulatedRingBytes = 2 * 2 ** 20;

export async function broadcastImage(
  method: BroadcastMethod,
  nodes: DeployNode[],
  env: RegisteredEnvironment,
  opts: BroadcastStepOptions,
): Promise<Map<string, NodeOutcome>> {
  const mode: BroadcastMode =
    env.description.image.kind === 'tar' ? { extract: defaultDisk.mount } : { write: defaultDisk.partition };
  const report = await sendFile(
    method,
    nodes,
    { path: env.imagePath, size: env.bytes, sha256: env.sha256 },
    mode,
    opts,
  );
  return new Map(
    report.nodes.map((r) => [
      r.node,
      r.ok ? { ok: true } : { ok: false, reason: `broadcast (${method}): ${r.error ?? 'incomplete'}` },
    ]),
  );
}

/** What runs each method of the registry (src/lib/broadcast/methods.ts). */
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
  opts: BroadcastStepOptions,
): Promise<BroadcastReport> {
  const common = {
    privateKey: await readFile(opts.keyFile),
    port: broadcastPorts.first + (nextPort++ % broadcastPorts.count),
    stallMs: opts.stallMs,
    ringBytes: opts.ringBytes,
    mode,
    resumable: opts.resumable,
    timeoutMs: opts.timeoutMs,
    sshPool: opts.sshPool,
  };
  const ordered = chainOrder(nodes);
  const report = await implementations[method](ordered, source, common);
  opts.logger.debug(
    `broadcast ${method}: ${report.ok} OK, ${report.ko} KO, ${report.throughputMBps.toFixed(1)} MB/s per node in ${report.makespanMs} ms`,
  );
  return report;
}

// The image broadcast's public shapes: the nodes, the image, the options of each topology and the
// report, shared by the controller's topologies (send.ts) and the TakTuk broadcast (taktuk.ts).
import type { KnownHosts } from '../ssh/known-hosts.js';
import type { SshPool } from '../ssh/pool.js';
import type { BroadcastMethod } from './methods.js';

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
  /** The testbed's pinned host keys (for the pool made here when none is given). */
  knownHosts?: KnownHosts;
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
  /**
   * Receivers being started at once (their SSH connection and command, until they listen): the
   * set-up is paced as a TakTuk tree starts Kastafior's chain, not opened all at once (default 128).
   */
  startWindow?: number;
  /** Aborting ends the broadcast: nodes not done are KO ('aborted'). */
  signal?: AbortSignal;
  /** Called about every `progressIntervalMs` (default 1000) and when the phase changes. */
  onProgress?: (p: BroadcastProgress) => void;
  progressIntervalMs?: number;
}

/** Where a broadcast is, for a progress line. */
export interface BroadcastProgress {
  /** Receivers being started, or the image being sent. */
  phase: 'starting' | 'sending' | 'done';
  nodes: number;
  /** Receivers that said they listen. */
  listening: number;
  /** Nodes that hold the whole image (their result is in). */
  done: number;
  /** Nodes out of it (their receiver ended without the image, or was cut out). */
  failed: number;
  /** Bytes the nodes hold, summed. */
  bytes: number;
  /** The image's size times the nodes. */
  totalBytes: number;
  /** Since the phase began. */
  elapsedMs: number;
  /** Bytes per second over the whole transfer so far (summed over the nodes). */
  bytesPerSecond: number;
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

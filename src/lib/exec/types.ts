// Shared shapes for running one command on many nodes (flat, tree, taktuk) and the tagged,
// per-node output every method prints.
import type { KnownHosts } from '../ssh/known-hosts.js';
import type { CommandResult } from '../ssh/result.js';

export interface ExecTarget {
  name: string;
  ip: string;
  port?: number;
}

/** A command's result (the one shape, ssh/result.ts) on a named node. */
export interface NodeExecResult extends CommandResult {
  node: string;
  ip: string;
  ms: number;
  /** Tree only: the relays the node was reached through, nearest the controller first. */
  via?: string[];
  /** TakTuk only, when above 1: the TakTuk runs that tried the node (it was unreached before). */
  attempts?: number;
}

export interface ExecOptions {
  privateKey: string | Buffer;
  /** The testbed's pinned host keys: a node presenting another key is refused. */
  knownHosts?: KnownHosts;
  username?: string;
  /** Flat: nodes connecting or running at once. Tree: direct connections of the controller. */
  window?: number;
  /** Per node command. */
  timeoutMs?: number;
  connectTimeoutMs?: number;
  onResult?: (r: NodeExecResult) => void;
}

export interface ExecStats {
  method: 'flat' | 'tree' | 'taktuk';
  nodes: number;
  ok: number;
  /** Exited with a non-zero status. */
  failed: number;
  /** No exit status: unreachable, timed out, or lost with its relay. */
  errors: number;
  /** Most TCP connections the controller held open at once (connecting ones included). */
  maxDirectConnections: number;
  /** SSH connections opened, direct or tunnelled (0 for taktuk: it opens its own). */
  connectionsOpened: number;
  /** Most nodes connecting or running at once (flat). */
  maxInFlight: number;
  /** Deepest node: 1 when reached directly, 2 through one relay, ... */
  maxDepth: number;
  /** Tree: relays whose connection dropped during the run. */
  relaysLost: number;
  /**
   * Tree: nodes queued again after their relay dropped before their command started. TakTuk:
   * nodes given to another TakTuk run because the previous one never reached them.
   */
  retried: number;
  /** Tree: successful steal requests. */
  steals: number;
  ms: number;
  /** TakTuk: its runs, the first on every node, each next one on those the previous never reached. */
  taktukRuns?: TaktukRunStats[];
}

/** One TakTuk run: its nodes, its -t, the nodes it never reached, how long it took. */
export interface TaktukRunStats {
  nodes: number;
  connectorS: number;
  unreached: number;
  ms: number;
  timedOut: boolean;
}

export interface ExecOutcome {
  results: NodeExecResult[];
  stats: ExecStats;
}

export function emptyStats(method: ExecStats['method'], nodes: number): ExecStats {
  return {
    method,
    nodes,
    ok: 0,
    failed: 0,
    errors: 0,
    maxDirectConnections: 0,
    connectionsOpened: 0,
    maxInFlight: 0,
    maxDepth: 0,
    relaysLost: 0,
    retried: 0,
    steals: 0,
    ms: 0,
  };
}

/** Fills ok/failed/errors from the results. */
export function countResults(stats: ExecStats, results: NodeExecResult[]): ExecStats {
  stats.ok = results.filter((r) => r.code === 0).length;
  stats.failed = results.filter((r) => r.code !== null && r.code !== 0).length;
  stats.errors = results.filter((r) => r.code === null).length;
  return stats;
}

function lines(text: string): string[] {
  if (!text) return [];
  const out = text.split('\n');
  if (out[out.length - 1] === '') out.pop();
  return out.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
}

export function statusOf(r: NodeExecResult): string {
  if (r.error) return r.error;
  if (r.signal) return `killed by ${r.signal}`;
  return r.code === 0 ? 'ok' : `exit ${r.code}`;
}

/**
 * Output tagged by node (`name: line`, `name [err]: line`) in the order given, then one status
 * line per node that did not succeed and a count, so a grep by node name gives all of its story.
 */
export function formatTagged(results: NodeExecResult[]): string {
  const out: string[] = [];
  for (const r of results) {
    for (const l of lines(r.stdout)) out.push(`${r.node}: ${l}`);
    for (const l of lines(r.stderr)) out.push(`${r.node} [err]: ${l}`);
  }
  for (const r of results) if (r.code !== 0) out.push(`${r.node} [status]: ${statusOf(r)}`);
  const ok = results.filter((r) => r.code === 0).length;
  const failed = results.filter((r) => r.code !== null && r.code !== 0).length;
  const errors = results.length - ok - failed;
  out.push(`${results.length} nodes: ${ok} ok, ${failed} failed, ${errors} without status`);
  return `${out.join('\n')}\n`;
}

// Broadcast through the real TakTuk, as Kadeploy's BroadcastEnvTaktuk does: every node runs the
// agent's receiver on its standard input (`kb-agent receive -`), and TakTuk feeds the file to all
// of them through its own tree of connections (`broadcast input file`). Each node checks size and
// sha256; TakTuk's per-node exit status and the agent's last JSON line say which ones got it.
// Nodes TakTuk never reached get a second run of their own (runTaktuk), the file fed to them alone.
import { runTaktuk, taktukInputArgs } from '../exec/taktuk.js';
import type { NodeExecResult } from '../exec/types.js';
import type { KnownHosts } from '../ssh/known-hosts.js';
import { modeArgs } from './receiver.js';
import type { BroadcastMode, BroadcastNode, BroadcastReport, BroadcastSource, NodeReport } from './types.js';

export interface TaktukBroadcastOptions {
  privateKey: string | Buffer;
  /** The testbed's pinned host keys, handed to TakTuk's ssh (StrictHostKeyChecking=yes). */
  knownHosts?: KnownHosts;
  mode: BroadcastMode;
  /** Whole broadcast (default 10 min). */
  timeoutMs?: number;
  /** TakTuk's deployment window: connections a TakTuk engine opens at once (its -w). */
  window?: number;
  /** -s: TakTuk sends itself to the nodes (they need perl instead of an installed taktuk). */
  propagate?: boolean;
}

/** The receiver's command line on each node. */
export function receiverCommand(source: { size: number; sha256: string }, mode: BroadcastMode): string {
  return `kb-agent receive - --size ${source.size} --sha256 ${source.sha256}${modeArgs(mode, true)}`;
}

/** One node's outcome from what TakTuk reported of its receiver. */
export function nodeReport(r: NodeExecResult, source: { size: number; sha256: string }): NodeReport {
  let last: { bytes?: number; sha256?: string } = {};
  for (const line of r.stdout.split('\n').reverse()) {
    if (!line.startsWith('{')) continue;
    try {
      last = JSON.parse(line);
      break;
    } catch {}
  }
  const bytes = typeof last.bytes === 'number' ? last.bytes : 0;
  const sha256 = typeof last.sha256 === 'string' ? last.sha256 : null;
  const ok = r.code === 0 && bytes === source.size && sha256 === source.sha256;
  const error = ok
    ? undefined
    : (r.error ??
      (r.stderr.trim().split('\n').pop() ||
        (r.code !== 0 ? `receiver exited with status ${r.code}` : `got ${bytes} bytes, sha256 ${sha256}`)));
  return { node: r.node, ok, bytes, sha256, error, ms: r.ms, forwardedTo: [], resumed: 0 };
}

export async function broadcastTaktuk(
  nodes: readonly BroadcastNode[],
  source: BroadcastSource,
  opts: TaktukBroadcastOptions,
): Promise<BroadcastReport> {
  if (!('path' in source)) throw new Error('taktuk broadcast: the source must be a file');
  const targets = nodes.map((n) => ({ name: n.name, ip: n.ip }));
  const command = receiverCommand(source, opts.mode);
  const run = await runTaktuk(targets, (ts, o) => taktukInputArgs(ts, command, source.path, o), {
    privateKey: opts.privateKey,
    ...(opts.knownHosts ? { knownHosts: opts.knownHosts } : {}),
    window: opts.window,
    timeoutMs: opts.timeoutMs ?? 600_000,
    propagate: opts.propagate,
    what: 'taktuk broadcast',
  });
  const reports = run.results.map((r) => nodeReport(r, source));
  const ok = reports.filter((r) => r.ok).length;
  const secs = Math.max(run.ms, 1) / 1000;
  return {
    topology: 'taktuk',
    nodes: reports,
    ok,
    ko: reports.length - ok,
    size: source.size,
    setupMs: 0,
    makespanMs: run.ms,
    throughputMBps: source.size / 1e6 / secs,
    aggregateMBps: (source.size * ok) / 1e6 / secs,
  };
}

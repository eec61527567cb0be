// `exec --method flat`: the controller connects to every node itself, a window of them at a time
// (pdsh-like). Simple and fast for tens of nodes; the controller holds one connection per node.
import { eachLimited } from '../concurrency.js';
import { InputError } from '../errors.js';
import { SshPool } from '../ssh/pool.js';
import { DEFAULT_COMMAND_TIMEOUT_MS } from '../ssh/session.js';
import {
  countResults,
  type ExecOptions,
  type ExecOutcome,
  type ExecTarget,
  emptyStats,
  type NodeExecResult,
} from './types.js';

export const DEFAULT_FLAT_WINDOW = 32;

export function checkExecWindow(window: number | undefined, fallback: number): number {
  const w = window ?? fallback;
  if (!Number.isInteger(w) || w < 1)
    throw new InputError(`exec: window must be a positive integer, got ${w}`);
  return w;
}

/**
 * Runs `command` on every target, at most `window` connecting or running at once. Results come
 * back in targets order, one per target. With `pool` the connections stay open for the next
 * command; without, they are closed before returning.
 */
export async function flatExec(
  targets: ExecTarget[],
  command: string,
  opts: ExecOptions,
  pool?: SshPool,
): Promise<ExecOutcome> {
  const window = checkExecWindow(opts.window, DEFAULT_FLAT_WINDOW);
  const start = Date.now();
  const own = !pool;
  const p = pool ?? new SshPool(opts);
  const openedBefore = p.connectionsOpened;
  const stats = emptyStats('flat', targets.length);
  const results: NodeExecResult[] = new Array(targets.length);
  let inFlight = 0;
  try {
    await eachLimited(targets, window, async (target, i) => {
      inFlight++;
      stats.maxInFlight = Math.max(stats.maxInFlight, inFlight);
      const r: NodeExecResult = {
        node: target.name,
        ip: target.ip,
        ...(await p.exec(target, command, opts.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS)),
      };
      inFlight--;
      results[i] = r;
      opts.onResult?.(r);
    });
  } finally {
    if (own) p.close();
  }
  stats.connectionsOpened = p.connectionsOpened - openedBefore;
  stats.maxDirectConnections = p.maxLive;
  stats.maxDepth = targets.length ? 1 : 0;
  stats.ms = Date.now() - start;
  return { results, stats: countResults(stats, results) };
}

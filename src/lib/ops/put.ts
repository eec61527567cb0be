// `kabootstrap put`: one file to the testbed's VMs by broadcast, written at the same path on each
// and checked by sha256 there.
import { stat } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import type { BroadcastMethod } from '../broadcast/methods.js';
import { sendFile } from '../broadcast/send.js';
import type { BroadcastReport } from '../broadcast/types.js';
import { hashFile } from '../envs/registry.js';
import { InputError } from '../errors.js';
import type { Logger } from '../log.js';
import { openTestbed } from '../nodes/open-testbed.js';
import { runtimeFor } from '../runtime/index.js';

export interface PutRequest {
  testbed: string;
  file: string;
  dest: string;
  method: BroadcastMethod;
  nodeFile?: string;
}

export async function putOnTestbed(
  req: PutRequest,
  logger: Logger,
): Promise<BroadcastReport & { sha256: string }> {
  if (!isAbsolute(req.dest)) throw new InputError(`put: destination ${req.dest} must be an absolute path`);
  let size: number;
  try {
    const s = await stat(req.file);
    if (!s.isFile()) throw new InputError(`put: ${req.file} is not a regular file`);
    size = s.size;
  } catch (e) {
    if (e instanceof InputError) throw e;
    throw new InputError(
      `put: ${req.file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`,
    );
  }
  const { state, nodes, keyFile, knownHosts } = await openTestbed(req.testbed, req.nodeFile);
  const { sha256 } = await hashFile(req.file);
  const send = (to: typeof nodes) =>
    sendFile(
      req.method,
      to,
      { path: req.file, size, sha256 },
      { write: req.dest },
      {
        keyFile,
        knownHosts,
        // the protocol the nodes' agent speaks, and how slow a receiver may be
        ...runtimeFor(state.config).tuning.broadcast,
        logger,
      },
    );
  const first = await send(nodes);
  // A put killed a moment ago may leave its receivers listening (until they notice their
  // connection is gone): the nodes whose receiver found its port taken are sent the file again,
  // on the next port (sendFile takes a new one for each broadcast).
  const busy = new Set(first.nodes.filter((n) => !n.ok && portTaken.test(n.error ?? '')).map((n) => n.node));
  if (busy.size === 0) return { ...first, sha256 };
  logger.info(`put: ${busy.size} receiver(s) found their port taken; sending to them again on another port`);
  const again = await send(nodes.filter((n) => busy.has(n.name)));
  return { ...mergeReports(first, again), sha256 };
}

/** A receiver that could not listen: its port held by another. */
const portTaken = /EADDRINUSE|address already in use/i;

/** `first` with the nodes `again` was sent to replaced by their new outcome; the times add up. */
export function mergeReports(first: BroadcastReport, again: BroadcastReport): BroadcastReport {
  const redone = new Map(again.nodes.map((n) => [n.node, n]));
  const nodes = first.nodes.map((n) => redone.get(n.node) ?? n);
  const ok = nodes.filter((n) => n.ok).length;
  const makespanMs = first.makespanMs + again.makespanMs;
  const mb = first.size / 1e6;
  return {
    ...first,
    nodes,
    ok,
    ko: nodes.length - ok,
    setupMs: first.setupMs + again.setupMs,
    makespanMs,
    throughputMBps: makespanMs > 0 ? mb / (makespanMs / 1000) : 0,
    aggregateMBps: makespanMs > 0 ? (mb * ok) / (makespanMs / 1000) : 0,
  };
}

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
  const report = await sendFile(
    req.method,
    nodes,
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
  return { ...report, sha256 };
}

// BroadcastEnv's transfer: the environment's image to the nodes (broadcast/send.ts), written to
// the deployment partition or extracted on it, and each node's outcome for the workflow engine.

import { type SendOptions, sendFile } from '../broadcast/send.js';
import type { BroadcastMode } from '../broadcast/types.js';
import type { RegisteredEnvironment } from '../envs/registry.js';
import type { DeployNode } from '../nodes/targets.js';
import { defaultDisk } from './driver.js';
import type { BroadcastMethod, NodeOutcome } from './workflow.js';

export async function broadcastImage(
  method: BroadcastMethod,
  nodes: DeployNode[],
  env: RegisteredEnvironment,
  opts: SendOptions,
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

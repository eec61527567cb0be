// `kabootstrap exec` behind its flags: a command on the testbed's VMs (all, or a node file's),
// by one of the three methods, every node reported.
import { readFile } from 'node:fs/promises';
import { flatExec } from '../exec/flat.js';
import { sshConnector, taktukExec } from '../exec/taktuk.js';
import { treeExec } from '../exec/tree.js';
import type { ExecOutcome } from '../exec/types.js';
import { openTestbed } from '../nodes/open-testbed.js';

export type ExecMethod = 'flat' | 'tree' | 'taktuk';

export interface ExecRequest {
  testbed: string;
  command: string;
  method: ExecMethod;
  nodeFile?: string;
  window?: number;
  timeoutMs?: number;
}

export async function execOnTestbed(req: ExecRequest): Promise<ExecOutcome> {
  const { nodes, keyFile, knownHosts } = await openTestbed(req.testbed, req.nodeFile);
  const targets = nodes.map((n) => ({ name: n.name, ip: n.ip }));
  const privateKey = await readFile(keyFile);
  const opts = { privateKey, knownHosts, window: req.window, timeoutMs: req.timeoutMs };
  if (req.method === 'tree') return treeExec(targets, req.command, opts);
  // TakTuk's ssh reads the pinned keys straight from the store (an OpenSSH known_hosts file)
  if (req.method === 'taktuk')
    return taktukExec(targets, req.command, {
      ...opts,
      connector: sshConnector(keyFile, undefined, knownHosts.file),
    });
  return flatExec(targets, req.command, opts);
}

// `kabootstrap exec` behind its flags: a command on the testbed's VMs (all, or a node file's),
// by one of the three methods, every node reported.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readNodeFile, selectNodes, testbedNodes } from '../deploy/targets.js';
import { TestbedError } from '../errors.js';
import { StateStore } from '../state/store.js';
import { flatExec } from './flat.js';
import { sshConnector, taktukExec } from './taktuk.js';
import { treeExec } from './tree.js';
import type { ExecOutcome } from './types.js';

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
  const store = new StateStore(req.testbed);
  const state = await store.read();
  if (!state) throw new TestbedError(`testbed ${req.testbed} is not set up: run 'kabootstrap setup' first`);
  const names = req.nodeFile ? await readNodeFile(req.nodeFile) : null;
  const nodes = selectNodes(testbedNodes(state), names, `-f ${req.nodeFile}`, req.testbed);
  const targets = nodes.map((n) => ({ name: n.name, ip: n.ip }));
  const keyFile = join(store.dir, 'ssh', 'id_ed25519');
  const opts = { privateKey: await readFile(keyFile), window: req.window, timeoutMs: req.timeoutMs };
  if (req.method === 'tree') return treeExec(targets, req.command, opts);
  if (req.method === 'taktuk')
    return taktukExec(targets, req.command, { ...opts, connector: sshConnector(keyFile) });
  return flatExec(targets, req.command, opts);
}

// What exec, put, reboot and deploy start from: the testbed's state (it must be set up), the
// testbed's SSH key and the VMs to act on (all, or those a node file names). SSH goes through the
// site's gateway when the config says so.
import { TestbedError } from '../errors.js';
import { routeSsh } from '../provider/gateway.js';
import { KnownHosts } from '../ssh/known-hosts.js';
import { StateStore, type TestbedState } from '../state/store.js';
import { type DeployNode, readNodeFile, selectNodes, testbedNodes } from './targets.js';

export interface OpenTestbed {
  store: StateStore;
  state: TestbedState;
  /** The private key every node and host accepts. */
  keyFile: string;
  /** The host keys pinned for its hosts and VMs. */
  knownHosts: KnownHosts;
  nodes: DeployNode[];
}

export async function openTestbed(testbed: string, nodeFile?: string): Promise<OpenTestbed> {
  const store = new StateStore(testbed);
  const state = await store.read();
  if (!state) throw new TestbedError(`testbed ${testbed} is not set up: run 'kabootstrap setup' first`);
  const names = nodeFile ? await readNodeFile(nodeFile) : null;
  const nodes = selectNodes(testbedNodes(state), names, `-f ${nodeFile}`, testbed);
  const knownHosts = KnownHosts.at(store.layout.knownHosts);
  await routeSsh(state.config, state.configSource, knownHosts);
  return { store, state, keyFile: store.layout.ssh.clientKey, knownHosts, nodes };
}

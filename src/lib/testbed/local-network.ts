// The local provider's testbed network on this machine: namespaces for hosts and service nodes,
// VLAN bridges, the controller's veth and route, and sshd on every host (its host key pinned).
import { readFile } from 'node:fs/promises';

import { InputError } from '../errors.js';
import { buildNetwork, requireRoot } from '../netns/build.js';
import { raiseNeighbourTables } from '../netns/neigh.js';
import { probeSsh, type SshProbe } from '../netns/ssh-check.js';
import { ensureSshFiles, sshdPidFile, startSshd } from '../netns/sshd.js';
import { buildTopology, isHostGroup, type Topology } from '../netns/topology.js';
import { isAlive } from '../pid.js';
import type { Plan } from '../planner/plan.js';
import type { Progress } from '../progress.js';
import { localLayout } from '../provider/local-layout.js';
import { runtimeFor } from '../runtime/index.js';
import { KnownHosts, knownHostsAddress } from '../ssh/known-hosts.js';
import { type StateStore, type TestbedState, upsertResource } from '../state/store.js';

/** The namespaces laid out as the runtime asks, within the number of hosts it runs locally. */
export function localTopology(state: TestbedState, plan: Plan, source: string): Topology {
  const runtime = runtimeFor(state.config);
  const { hostLayout, maxHosts } = runtime.localTwin;
  const topo = buildTopology(
    plan,
    localLayout(state.config, source),
    state.config.network.prefix,
    hostLayout,
  );
  if (maxHosts !== undefined && topo.namespaces.length > maxHosts) {
    throw new InputError(
      `config ${source}: vms.runtime: ${topo.namespaces.length} hosts is more than the ${maxHosts} a local ${runtime.name} testbed runs; use runtime: emulated`,
    );
  }
  return topo;
}

export function checkLocalNetworkPossible(): void {
  requireRoot('kabootstrap setup of the local testbed');
}

export async function buildLocalNetwork(
  store: StateStore,
  state: TestbedState,
  topo: Topology,
  progress: Progress,
  addresses: number,
): Promise<void> {
  await raiseNeighbourTables(store, state, addresses);
  await progress.step(
    `Build the network: ${topo.namespaces.length} host namespaces, ${topo.bridges.length} bridges`,
    (step) => buildNetwork(store, state, topo, (done, total) => step.status(`${done}/${total} namespaces`)),
  );
  const files = await ensureSshFiles(store.layout);
  // the sshd's key is ours: pinned for every address it answers on before any contact
  const sshdHosts = topo.namespaces.filter((n) => !isHostGroup(n));
  await KnownHosts.at(store.layout.knownHosts).pin(
    sshdHosts.map((h) => ({ address: knownHostsAddress(h.ip), node: h.fqdn })),
    await readFile(`${files.hostKey}.pub`, 'utf8'),
  );
  await progress.step('Start sshd on every host', async (step) => {
    let started = 0;
    // A host group's hosts answer SSH from its process, not from an sshd.
    for (const h of topo.namespaces.filter((n) => !isHostGroup(n))) {
      const key = `sshd/${h.ns}`;
      const rec = state.resources.find((r) => r.key === key && r.status === 'created');
      if (rec && isAlive(rec.data.pid as number)) continue;
      // Recorded before it starts: teardown finds it by its namespace or its pid file.
      upsertResource(state, {
        kind: 'process',
        key,
        status: 'creating',
        data: { ns: h.ns, pidFile: sshdPidFile(files, h.ns) },
      });
      await store.write(state);
      const pid = await startSshd(files, h.ns, h.ip);
      upsertResource(state, { kind: 'process', key, status: 'created', data: { pid, match: 'sshd' } });
      await store.write(state);
      step.status(`${++started} started`);
    }
  });
}

export async function probeHosts(store: StateStore, state: TestbedState): Promise<SshProbe[]> {
  const hosts = state.resources.filter((r) => r.kind === 'netns' && r.status === 'created' && r.data.ip);
  const key = store.layout.ssh.clientKey;
  const knownHosts = KnownHosts.at(store.layout.knownHosts);
  const first = await Promise.all(hosts.map((h) => probeSsh(h.data.ip as string, key, 10_000, knownHosts)));
  // a machine busy with other work can be slow to fork a command: those that timed out get one
  // more, longer try before they count as down
  return Promise.all(
    first.map((p) => (p.ok || !/timeout/.test(p.detail) ? p : probeSsh(p.host, key, 30_000, knownHosts))),
  );
}

// setup's third phase, the only one tied to the local provider: the testbed's machines on this
// host — a namespace per host and service node, the VLAN bridges, the controller's route and
// sshd on every host — then the check that each host answers SSH. On g5k the machines are the
// reserved nodes themselves and this phase has nothing to do yet.
// Resume: buildNetwork skips the namespaces and links the state records as created and still
// there, the neighbour tables are raised only when below what is needed, an sshd whose
// recorded pid is alive is not started again.
import { TestbedError } from '../../errors.js';
import type { SshProbe } from '../../netns/ssh-check.js';
import { isHostGroup, type Topology } from '../../netns/topology.js';
import { throughTwin } from '../../provider/session.js';
import type { TestbedState } from '../../state/store.js';
import { buildLocalNetwork, checkLocalNetworkPossible, localTopology, probeHosts } from '../local-network.js';
import { type PlannedContext, recordPhase, type SetupOptions } from './context.js';

/** Whether setup builds the testbed's machines (and what runs on them) on this host. */
export function buildsLocalMachines(config: TestbedState['config'], options: SetupOptions): boolean {
  return config.provider === 'local' && !throughTwin(config) && !options.reserveOnly;
}

/** Checked before anything is reserved, so a run that could not build the machines changes nothing. */
export function checkMachinesPossible(config: TestbedState['config'], options: SetupOptions): void {
  // the twin's machines are namespaces on this machine too (a reservation only needs its records)
  if (buildsLocalMachines(config, options) || (throughTwin(config) && twinMachines(options))) {
    checkLocalNetworkPossible();
  }
}

/**
 * Whether the twin setup starts brings up machines: always but for a `--reserve-only` without
 * root, which is served the records only (as the embedded API serves them on the direct path).
 */
export function twinMachines(options: SetupOptions): boolean {
  return !options.reserveOnly || process.getuid?.() === 0;
}

export async function buildMachines(ctx: PlannedContext): Promise<{ topology: Topology; hosts: SshProbe[] }> {
  const { store, state, plan, progress } = ctx;
  const topology = localTopology(state, plan, ctx.source);
  const emulatedIps = new Set(topology.namespaces.filter(isHostGroup).map((n) => n.ip));
  await recordPhase(ctx, 'network');
  await buildLocalNetwork(
    store,
    state,
    topology,
    progress,
    plan.totals.vms + plan.totals.hosts + plan.totals.serviceNodes,
  );
  const hosts = await progress.step('Check every host answers SSH', async () =>
    // a host group's hosts are checked once its process runs, in the VM-hosts phase
    (await probeHosts(store, state)).filter((h) => !emulatedIps.has(h.host)),
  );
  const down = hosts.filter((h) => !h.ok);
  if (down.length) {
    throw new TestbedError(
      `${down.length} host(s) do not answer SSH: ${down.map((h) => `${h.host} (${h.detail})`).join(', ')}`,
    );
  }
  return { topology, hosts };
}

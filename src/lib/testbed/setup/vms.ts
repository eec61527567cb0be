// setup's last phases, VM hosts then VMs, in one module for now: each runtime's stage does both
// in one call. Emulated: start one emulated host group per site, check every emulated host
// answers SSH, then (unless --no-vms) power on the VMs and wait for them. QEMU (unless
// --no-vms): build the deployment environment, put it on the service nodes, check KVM, then
// prepare each host and launch and wait for its VMs. The one place the runtime is chosen.
// Resume: an emulated host group whose recorded pid is alive is not started again; VMs are
// launched and waited for again.
import type { VmBoot } from '../boot-tracker.js';
import { runEmulatedStage } from '../emulated-stage.js';
import { runVmStage } from '../vm-stage.js';
import type { MachinesContext } from './context.js';

export interface VmsOutcome {
  vms: VmBoot[];
  accel: 'kvm' | 'tcg' | null;
  /** Emulated hosts that answered SSH (runtime: emulated). */
  emulatedHosts: number;
}

export async function startVmHostsAndVms(ctx: MachinesContext): Promise<VmsOutcome> {
  const { store, state, plan, topology, options, progress, logger } = ctx;
  if (state.config.vms.runtime === 'emulated') {
    const stage = await runEmulatedStage(
      store,
      state,
      plan,
      topology,
      { vms: options.vms !== false, retries: options.retries ?? 1 },
      progress,
      logger,
    );
    return { vms: stage.vms, accel: null, emulatedHosts: stage.hosts };
  }
  if (options.vms === false) return { vms: [], accel: null, emulatedHosts: 0 };
  const stage = await runVmStage(store, state, plan, topology, progress, logger);
  return { vms: stage.vms, accel: stage.accel, emulatedHosts: 0 };
}

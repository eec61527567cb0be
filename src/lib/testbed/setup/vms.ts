// setup's last phase (unless --no-vms): the plan's VMs, launched on the hosts the VM-hosts phase
// prepared (VmHosts.launchVms): power on, follow the boots, wait until each answers SSH in the
// deployment environment; the emulated runtime power-resets a failed VM and waits again
// (`retries` times).
// Resume: VMs are launched and waited for again.
import type { VmBoot } from '../../runtime/boot-tracker.js';
import type { VmHosts } from '../../runtime/index.js';
import type { MachinesContext } from './context.js';

export async function launchVms(ctx: MachinesContext, hosts: VmHosts): Promise<VmBoot[]> {
  if (ctx.options.vms === false) return [];
  return hosts.launchVms({ retries: ctx.options.retries ?? 1 });
}

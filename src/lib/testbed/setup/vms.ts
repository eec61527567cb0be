// setup's last phase (unless --no-vms): the plan's VMs, launched on the hosts the VM-hosts phase
// prepared (VmHosts.launchVms): power on, follow the boots, wait until each answers SSH in the
// deployment environment; the emulated runtime power-resets a failed VM and waits again
// (`retries` times). Each VM's outcome is recorded for `status` (state/vm-record.ts).
// Resume: VMs are launched and waited for again, and the record rewritten.
import type { VmBoot } from '../../runtime/boot-tracker.js';
import type { VmHosts } from '../../runtime/index.js';
import { writeVmRecord } from '../../state/vm-record.js';
import type { VmPhasesContext } from './context.js';

export async function launchVms(ctx: VmPhasesContext, hosts: VmHosts): Promise<VmBoot[]> {
  if (ctx.options.vms === false) return [];
  const boots = await hosts.launchVms({ retries: ctx.options.retries ?? 1 });
  await writeVmRecord(
    ctx.store.layout.vmsFile,
    boots.map((b) =>
      b.state === 'ssh'
        ? { name: b.name, outcome: 'up', reason: null }
        : { name: b.name, outcome: 'failed', reason: b.reason ?? `stopped at ${b.state}` },
    ),
  );
  return boots;
}

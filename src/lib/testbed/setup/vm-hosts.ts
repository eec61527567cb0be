// setup's fifth phase: the VM hosts, made ready for their VMs by the testbed's runtime
// (runtime.prepareHosts). Emulated: start one emulated host group per site and check every
// emulated host answers SSH. QEMU (unless --no-vms): build the deployment environment, put it on
// the service nodes and check whether KVM works here.
// Resume: an emulated host group whose recorded pid is alive is not started again.
import { runtimeFor, type VmHosts } from '../../runtime/index.js';
import type { VmPhasesContext } from './context.js';

export async function prepareVmHosts(ctx: VmPhasesContext): Promise<VmHosts> {
  return runtimeFor(ctx.state.config).prepareHosts(ctx, { vms: ctx.options.vms !== false });
}

// What an emulated host group is told, whichever way it is started (one per site on the local
// twin, one per VM host over SSH): its VMs as the plan places them, and the boot model, seed and
// faults of `vms.emulated`.
import type { TestbedConfig } from '../../config/schema.js';
import type { EmulatedGroupOptions, EmulatedVmSpec } from '../../emulated/group.js';
import { defaultModel } from '../../emulated/model.js';
import { parsePrefix } from '../../net/ipv4.js';
import type { SitePlan, VmPlan } from '../../planner/plan.js';

/** `vms` (of `site`) with their subnet's length and their service node's address. */
export function groupVms(site: SitePlan, vms: readonly VmPlan[]): EmulatedVmSpec[] {
  const snIp = new Map(site.serviceNodes.map((s) => [s.host, s.ip]));
  const prefixLength = parsePrefix(site.network).length;
  return vms.map((vm) => ({
    name: vm.name,
    mac: vm.mac,
    ip: vm.ip,
    prefixLength,
    serviceNodeIp: vm.serviceNode ? (snIp.get(vm.serviceNode) ?? '') : '',
    host: vm.host,
  }));
}

/** The boot model, seed and faults; VMs wait for `kb-host power on` (setup's VMs phase). */
export function groupModel(
  config: TestbedConfig,
): Pick<EmulatedGroupOptions, 'seed' | 'model' | 'faults' | 'autostart'> {
  const em = config.vms.emulated;
  const { transient, reboot, ...rates } = em.faults;
  return {
    seed: em.seed,
    model: { ...defaultModel, timeScale: em.timeScale },
    faults: { rates, transient, rebootHang: reboot },
    autostart: false,
  };
}

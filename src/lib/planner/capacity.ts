// How many VMs a host can carry. The default policy is the reference experiment's:
// at most `perCore` vCPUs per core, RAM minus a host reserve divided by (VM memory + overhead),
// and a cap; `perHost` replaces the policy when the user knows better.
import type { VmConfig } from '../config/schema.js';

export interface HostHardware {
  cores: number;
  threads: number;
  ramMB: number;
}

export type CapacityPolicy = Pick<
  VmConfig,
  'perHost' | 'perCore' | 'maxPerHost' | 'overheadMB' | 'hostReserveMB' | 'flavour'
>;

export interface Capacity {
  vms: number;
  /** Which bound decided it: 'memory', 'cpu', 'cap' or 'perHost'. */
  limit: 'memory' | 'cpu' | 'cap' | 'perHost';
}

/** True when a single VM of the flavour fits on the host at all. */
export function flavourFits(host: HostHardware, policy: CapacityPolicy): boolean {
  const { vcpus, memoryMB } = policy.flavour;
  return host.ramMB - policy.hostReserveMB >= memoryMB + policy.overheadMB && host.threads >= vcpus;
}

export function vmCapacity(host: HostHardware, policy: CapacityPolicy): Capacity {
  if (!flavourFits(host, policy)) return { vms: 0, limit: 'memory' };
  if (policy.perHost !== undefined) return { vms: policy.perHost, limit: 'perHost' };
  const byMemory = Math.floor(
    (host.ramMB - policy.hostReserveMB) / (policy.flavour.memoryMB + policy.overheadMB),
  );
  const byCpu = Math.floor((policy.perCore * host.cores) / policy.flavour.vcpus);
  const vms = Math.min(byMemory, byCpu, policy.maxPerHost);
  const limit = vms === policy.maxPerHost ? 'cap' : vms === byMemory ? 'memory' : 'cpu';
  return { vms, limit };
}

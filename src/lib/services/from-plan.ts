// Per service node, what it serves (pure): its site's VM network, the VMs it boots (those on
// the hosts it was dealt), DNS records for every host, service node and VM of the testbed, and
// IPv6 router advertisements on its VLAN where it serves DHCP; the testbed's control secret.
import { broadcastOf } from '../net/ipv4.js';
import type { Plan } from '../planner/plan.js';
import { deployInitrdPath, deployKernelPath, type ServiceNodeFiles } from '../state/layout.js';
import type { ServiceNodeInput } from './config.js';

export interface ServiceLayout {
  /** Host FQDN → its own address (the hosts' network), for DNS. */
  hostIps: Map<string, string>;
  /** Each service node's files, from its host and site (TestbedLayout.serviceNode). */
  serviceNode: (
    host: string,
    site: string,
  ) => Pick<ServiceNodeFiles, 'tftpRoot' | 'httpRoot' | 'uploadDir' | 'radvdDir'>;
  /** The testbed's control secret, which every control request must carry; none: no check. */
  controlSecret?: string;
  /** Where the deployment environment's kernel and initrd live under each httpRoot. */
  deployKernel?: string;
  deployInitrd?: string;
}

export function serviceNodeConfigs(plan: Plan, layout: ServiceLayout): ServiceNodeInput[] {
  const records: { name: string; ip: string }[] = [];
  for (const [fqdn, ip] of layout.hostIps) records.push({ name: fqdn, ip });
  for (const site of plan.sites) for (const vm of site.vms) records.push({ name: vm.fqdn, ip: vm.ip });
  const out: ServiceNodeInput[] = [];
  for (const site of plan.sites) {
    for (const sn of site.serviceNodes) {
      const files = layout.serviceNode(sn.host, site.name);
      out.push({
        name: sn.host,
        site: site.name,
        domain: plan.domain,
        ip: sn.ip,
        interface: 'vlan0',
        network: { subnet: site.network, gateway: site.vmGateway ?? site.gateway, dns: [sn.ip] },
        roles: sn.roles as ServiceNodeInput['roles'],
        broadcast: broadcastOf(site.network),
        tftpRoot: files.tftpRoot,
        httpRoot: files.httpRoot,
        uploadDir: files.uploadDir,
        boot: {
          deploy: {
            kernel: layout.deployKernel ?? deployKernelPath,
            initrd: layout.deployInitrd ?? deployInitrdPath,
            cmdline: 'console=ttyS0',
          },
        },
        nodes: site.vms
          .filter((vm) => vm.serviceNode === sn.host)
          .map((vm) => ({
            mac: vm.mac,
            ip: vm.ip,
            hostname: vm.name,
            fqdn: vm.fqdn,
            profile: 'deploy' as const,
          })),
        dns: { records, forward: [] },
        control: layout.controlSecret ? { secret: layout.controlSecret } : undefined,
        // Where nodes network-boot (DHCP is served), a bare IPv6 router advertisement ends iPXE's
        // ≈16 s wait for one, with either backend.
        routerAdvertisements: sn.roles.includes('dhcp') ? { runDir: files.radvdDir } : undefined,
      });
    }
  }
  return out;
}

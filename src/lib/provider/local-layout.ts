// Addressing of the local (embedded) testbed, derived from network.prefix alone:
// the first sixteenth of the prefix holds the controller, hosts and service nodes' own
// addresses (what Grid'5000 calls the production network); each site's VMs get one of the
// other sixteenths unless the config names a subnet for the site.
import type { TestbedConfig } from '../config/schema.js';
import { InputError } from '../errors.js';
import {
  formatPrefix,
  intToIp,
  lastAddress,
  octetsOf,
  overlaps,
  type Prefix,
  parsePrefix,
  subdivide,
} from '../net/ipv4.js';
import { testbedDomain } from '../planner/plan.js';

export interface LocalHost {
  uid: string;
  fqdn: string;
  site: string;
  cluster: string;
  ip: string;
  mac: string;
}

export interface LocalSiteLayout {
  name: string;
  /** The site's VM network: reservable /22 blocks come from it. */
  vmNetwork: string;
  gateway: string;
  hosts: LocalHost[];
}

export interface LocalLayout {
  domain: string;
  infra: string;
  controllerIp: string;
  sites: LocalSiteLayout[];
}

/** Locally administered MAC made from an IPv4 address, for the emulated hosts' own NICs. */
function hostMac(ip: number): string {
  return ['02', '00', ...octetsOf(ip)]
    .map((b) => (typeof b === 'string' ? b : b.toString(16).padStart(2, '0')))
    .join(':');
}

export function hostUids(cluster: TestbedConfig['sites'][number]['clusters'][number]): string[] {
  return Array.isArray(cluster.hosts)
    ? cluster.hosts
    : Array.from({ length: cluster.hosts }, (_, i) => `${cluster.name}-${i + 1}`);
}

export function localLayout(config: TestbedConfig, source: string): LocalLayout {
  const prefix = parsePrefix(config.network.prefix);
  const sixteenths = subdivide(prefix, prefix.length + 4);
  const infra = sixteenths[0];
  const explicit = config.sites.filter((s) => s.subnet).map((s) => parsePrefix(s.subnet!));
  const free = sixteenths.slice(1).filter((b) => !explicit.some((e) => overlaps(e, b)));
  const domain = testbedDomain(config);
  let nextHost = infra.base + 10;
  const sites = config.sites.map((site, i): LocalSiteLayout => {
    let vm: Prefix;
    if (site.subnet) vm = parsePrefix(site.subnet);
    else {
      const b = free.shift();
      if (!b) {
        throw new InputError(
          `config ${source}: sites[${i}].subnet: network.prefix ${config.network.prefix} has no room left for site ${site.name}; give the site a subnet or use a larger prefix`,
        );
      }
      vm = b;
    }
    if (overlaps(vm, infra)) {
      throw new InputError(
        `config ${source}: sites[${i}].subnet: ${site.subnet} overlaps the hosts' network ${formatPrefix(infra)} (the first sixteenth of network.prefix)`,
      );
    }
    const hosts: LocalHost[] = [];
    for (const cluster of site.clusters) {
      for (const uid of hostUids(cluster)) {
        if (nextHost >= lastAddress(infra)) {
          throw new InputError(
            `config ${source}: network.prefix: ${formatPrefix(infra)} has no room for more hosts; use a larger prefix`,
          );
        }
        const ip = nextHost++;
        hosts.push({
          uid,
          fqdn: `${uid}.${site.name}.${domain}`,
          site: site.name,
          cluster: cluster.name,
          ip: intToIp(ip),
          mac: hostMac(ip),
        });
      }
    }
    return { name: site.name, vmNetwork: formatPrefix(vm), gateway: intToIp(lastAddress(vm) - 1), hosts };
  });
  return { domain, infra: formatPrefix(infra), controllerIp: intToIp(infra.base + 1), sites };
}

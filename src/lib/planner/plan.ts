// The capacity planner: from the config and the facts of candidate hosts, decide per site
// which hosts are service nodes, which carry VMs and how many, which /22 blocks the VMs use,
// and each VM's name, address and MAC. Pure and deterministic: same input, same plan.
import type { TestbedConfig } from '../config/schema.js';
import { InputError } from '../errors.js';
import { naturalCompare } from '../natural-order.js';
import {
  formatPrefix,
  intToIp,
  ipToInt,
  netmask,
  type Prefix,
  PrefixError,
  parsePrefix,
  subdivide,
} from '../net/ipv4.js';
import { countUsable, macForIp, usableAddresses } from './addressing.js';
import { type CapacityPolicy, flavourFits, vmCapacity } from './capacity.js';

export interface PlannerHost {
  uid: string;
  fqdn: string;
  cluster: string;
  cores: number;
  threads: number;
  ramMB: number;
}

export interface PlannerSite {
  name: string;
  /** Index in config.sites, for error paths. */
  index: number;
  /** Candidate hosts, in preference order. */
  hosts: PlannerHost[];
  /** The site's VM network (netmask and gateway the VMs use). */
  network: string;
  gateway: string;
  /** /22 blocks actually reserved; absent when planning before a reservation. */
  blocks?: string[];
  wantedVms: number | 'auto';
  serviceNodes: number;
}

export interface ServiceNodePlan {
  host: string;
  cluster: string;
  ip: string;
  roles: string[];
}

export interface HostPlan {
  host: string;
  uid: string;
  cluster: string;
  cores: number;
  threads: number;
  ramMB: number;
  capacity: number;
  vms: number;
}

export interface VmPlan {
  name: string;
  fqdn: string;
  site: string;
  host: string;
  ip: string;
  mac: string;
  serviceNode: string | null;
}

export interface SitePlan {
  name: string;
  network: string;
  netmask: string;
  gateway: string;
  blocks: string[];
  /** What to ask the testbed for: hosts per cluster (service nodes included) and /22 blocks. */
  reserve: { clusters: Record<string, number>; hosts: string[]; subnets22: number };
  serviceNodes: ServiceNodePlan[];
  hosts: HostPlan[];
  vms: VmPlan[];
  /** The site's reserved KaVLAN (provider g5k, set by setup's KaVLAN phase; see planner/vlan.ts). */
  vlan?: VlanPlan | null;
  /** The VMs' default gateway when it is not `gateway` (inside a routed or global VLAN). */
  vmGateway?: string;
  /** The VMs' resolvers: the site's DNS service nodes, else the VLAN's gateway. */
  vmDns?: string[];
}

export interface VlanPlan {
  id: number;
  type: string;
  /** From the site document's `kavlans`; null when it does not list this VLAN. */
  network: string | null;
  gateway: string | null;
}

export interface Plan {
  testbed: string;
  provider: TestbedConfig['provider'];
  domain: string;
  runtime: TestbedConfig['vms']['runtime'];
  flavour: TestbedConfig['vms']['flavour'];
  vlan: TestbedConfig['vlan']['type'];
  sites: SitePlan[];
  totals: { sites: number; hosts: number; serviceNodes: number; vms: number; subnets22: number };
}

export function testbedDomain(config: TestbedConfig): string {
  return config.domain ?? `${config.name}.test`;
}

function policyOf(config: TestbedConfig): CapacityPolicy {
  return config.vms;
}

/** Splits `total` over weights by largest remainder, never over each weight's cap. */
export function apportion(total: number, caps: number[]): number[] {
  const sum = caps.reduce((a, b) => a + b, 0);
  if (sum === 0) return caps.map(() => 0);
  const exact = caps.map((c) => (c * total) / sum);
  const out = exact.map((x, i) => Math.min(Math.floor(x), caps[i]));
  let left = total - out.reduce((a, b) => a + b, 0);
  const order = exact
    .map((x, i) => ({ i, frac: x - Math.floor(x) }))
    .sort((a, b) => b.frac - a.frac || a.i - b.i);
  while (left > 0) {
    let moved = false;
    for (const { i } of order) {
      if (left === 0) break;
      if (out[i] < caps[i]) {
        out[i]++;
        left--;
        moved = true;
      }
    }
    if (!moved) break;
  }
  return out;
}

interface SiteChoice {
  site: PlannerSite;
  service: PlannerHost[];
  ranked: { host: PlannerHost; capacity: number }[];
  capacity: number;
}

function chooseServiceNodes(site: PlannerSite, policy: CapacityPolicy, fail: Fail): SiteChoice {
  // Biggest hosts carry VMs; the smallest ones become service nodes, where they cost least.
  const ranked = site.hosts
    .map((host) => ({ host, capacity: vmCapacity(host, policy).vms }))
    .sort((a, b) => b.capacity - a.capacity || naturalCompare(a.host.fqdn, b.host.fqdn));
  if (ranked.length <= site.serviceNodes) {
    fail(
      `sites[${site.index}].clusters`,
      `site ${site.name} has ${ranked.length} host(s) but needs ${site.serviceNodes} service node(s) plus at least one VM host`,
    );
  }
  const service = ranked.splice(ranked.length - site.serviceNodes, site.serviceNodes).map((r) => r.host);
  service.sort((a, b) => naturalCompare(a.fqdn, b.fqdn));
  return { site, service, ranked, capacity: ranked.reduce((a, r) => a + r.capacity, 0) };
}

type Fail = (path: string, message: string) => never;

function siteVmCounts(config: TestbedConfig, choices: SiteChoice[], fail: Fail): number[] {
  const explicit = choices.map((c) => (c.site.wantedVms === 'auto' ? null : c.site.wantedVms));
  const global = config.vms.count;
  const counts = choices.map((c, i) => explicit[i] ?? (global === 'auto' ? c.capacity : 0));
  if (global !== 'auto') {
    const fixed = explicit.reduce<number>((a, b) => a + (b ?? 0), 0);
    const open = choices.map((c, i) => (explicit[i] === null ? c.capacity : 0));
    const openCount = open.filter((_, i) => explicit[i] === null).length;
    if (openCount === 0 && fixed !== global) {
      fail('vms.count', `${global} differs from the sum of sites[].vms (${fixed})`);
    }
    const rest = global - fixed;
    if (rest < 0) fail('vms.count', `${global} is fewer than the sites' own VM counts (${fixed})`);
    const openCapacity = open.reduce((a, b) => a + b, 0);
    if (rest > openCapacity) {
      fail('vms.count', `${global} VMs wanted but the hosts can carry at most ${fixed + openCapacity}`);
    }
    apportion(rest, open).forEach((n, i) => {
      if (explicit[i] === null) counts[i] = n;
    });
  }
  return counts;
}

function siteNetwork(site: PlannerSite, fail: Fail): { network: Prefix; gateway: number } {
  try {
    return { network: parsePrefix(site.network), gateway: ipToInt(site.gateway) };
  } catch (e) {
    if (e instanceof PrefixError) fail(`sites[${site.index}].subnet`, e.message);
    throw e;
  }
}

function planSite(
  config: TestbedConfig,
  choice: SiteChoice,
  wanted: number,
  domain: string,
  fail: Fail,
): SitePlan {
  const { site } = choice;
  const path = `sites[${site.index}]`;
  if (wanted > choice.capacity) {
    fail(
      `${path}.vms`,
      `${wanted} VMs wanted at ${site.name} but its ${choice.ranked.length} VM host(s) carry at most ${choice.capacity}`,
    );
  }
  // Fewest hosts that hold the wanted VMs, then spread the VMs over them by capacity.
  const chosen: { host: PlannerHost; capacity: number }[] = [];
  let held = 0;
  for (const r of choice.ranked) {
    if (held >= wanted && chosen.length > 0) break;
    if (r.capacity === 0) continue;
    chosen.push(r);
    held += r.capacity;
  }
  chosen.sort((a, b) => naturalCompare(a.host.fqdn, b.host.fqdn));
  const perHost = apportion(
    wanted,
    chosen.map((c) => c.capacity),
  );

  const { network, gateway } = siteNetwork(site, fail);
  const needed = wanted + choice.service.length;
  let blocks: Prefix[];
  if (site.blocks) {
    blocks = site.blocks.map((b) => parsePrefix(b)).sort((a, b) => a.base - b.base);
  } else {
    const all = network.length >= 22 ? [network] : subdivide(network, 22);
    blocks = [];
    for (const b of all) {
      if (countUsable(blocks, network, gateway) >= needed) break;
      blocks.push(b);
    }
  }
  const usable = usableAddresses(blocks, network, gateway);
  if (usable.length < needed) {
    const where = site.blocks ? `the reserved blocks ${site.blocks.join(', ')}` : formatPrefix(network);
    fail(
      site.blocks ? `${path}.vms` : `${path}.subnet`,
      `${wanted} VMs and ${choice.service.length} service node(s) need ${needed} addresses but ${where} has ${usable.length}`,
    );
  }

  let next = 0;
  const roles = config.services.roles;
  const serviceNodes: ServiceNodePlan[] = choice.service.map((h) => ({
    host: h.fqdn,
    cluster: h.cluster,
    ip: intToIp(usable[next++]),
    roles: [...roles],
  }));
  const hosts: HostPlan[] = [];
  const vms: VmPlan[] = [];
  chosen.forEach((c, hi) => {
    hosts.push({
      host: c.host.fqdn,
      uid: c.host.uid,
      cluster: c.host.cluster,
      cores: c.host.cores,
      threads: c.host.threads,
      ramMB: c.host.ramMB,
      capacity: c.capacity,
      vms: perHost[hi],
    });
    // Each host's VMs are served by one service node, hosts dealt round-robin.
    const serviceNode = serviceNodes.length ? serviceNodes[hi % serviceNodes.length].host : null;
    for (let k = 0; k < perHost[hi]; k++) {
      const ip = usable[next++];
      const name = `vm-${site.name}-${vms.length + 1}`;
      vms.push({
        name,
        fqdn: `${name}.${domain}`,
        site: site.name,
        host: c.host.fqdn,
        ip: intToIp(ip),
        mac: macForIp(ip),
        serviceNode,
      });
    }
  });

  const reserveHosts = [...choice.service, ...chosen.map((c) => c.host)];
  const clusters: Record<string, number> = {};
  for (const h of reserveHosts) clusters[h.cluster] = (clusters[h.cluster] ?? 0) + 1;
  const usedBlocks = blocks;
  return {
    name: site.name,
    network: formatPrefix(network),
    netmask: netmask(network.length),
    gateway: intToIp(gateway),
    blocks: usedBlocks.map(formatPrefix),
    reserve: {
      clusters,
      hosts: reserveHosts.map((h) => h.fqdn).sort(naturalCompare),
      subnets22: usedBlocks.reduce((a, b) => a + 2 ** (22 - Math.min(22, b.length)), 0),
    },
    serviceNodes,
    hosts,
    vms,
  };
}

export function buildPlan(config: TestbedConfig, sites: PlannerSite[], source: string): Plan {
  const fail: Fail = (path, message) => {
    throw new InputError(`plan for ${source}: ${path}: ${message}`);
  };
  const policy = policyOf(config);
  const allHosts = sites.flatMap((s) => s.hosts);
  if (allHosts.length > 0 && !allHosts.some((h) => flavourFits(h, policy))) {
    const biggest = [...allHosts].sort((a, b) => b.ramMB - a.ramMB || b.threads - a.threads)[0];
    const { vcpus, memoryMB } = config.vms.flavour;
    fail(
      'vms.flavour',
      `a VM of ${vcpus} vCPU(s) and ${memoryMB} MB (+${policy.overheadMB} MB overhead, ${policy.hostReserveMB} MB kept for the host) fits on no host; the largest is ${biggest.fqdn} with ${biggest.ramMB} MB and ${biggest.threads} threads`,
    );
  }
  const choices = sites.map((s) => chooseServiceNodes(s, policy, fail));
  const counts = siteVmCounts(config, choices, fail);
  const domain = testbedDomain(config);
  const sitePlans = choices.map((c, i) => planSite(config, c, counts[i], domain, fail));
  return {
    testbed: config.name,
    provider: config.provider,
    domain,
    runtime: config.vms.runtime,
    flavour: config.vms.flavour,
    vlan: config.vlan.type,
    sites: sitePlans,
    totals: {
      sites: sitePlans.length,
      hosts: sitePlans.reduce((a, s) => a + s.hosts.length, 0),
      serviceNodes: sitePlans.reduce((a, s) => a + s.serviceNodes.length, 0),
      vms: sitePlans.reduce((a, s) => a + s.vms.length, 0),
      subnets22: sitePlans.reduce((a, s) => a + s.reserve.subnets22, 0),
    },
  };
}

// Re-planning after machines were lost (stayed KO after their redeploys). Pure: from the plan,
// the lost machines and each site's spare hosts (reserved, deployed OK, carrying no VM yet):
// - a lost service node is replaced by a host of its site — a spare first (it carries nothing),
//   else the VM host with the fewest VMs, whose VMs are then re-planned; it keeps the service
//   node's address and roles, so the VMs' boot configuration does not change;
// - the VMs of a lost (or converted) host move to the site's other hosts while they have room,
//   the host with the most room first; a VM that fits nowhere is reported as not placed;
// - a site left with no service node has none of its VMs placed: they could not boot.
// A VM keeps its name, address and MAC; only its host (and maybe its service node) changes.
import { naturalCompare } from '../natural-order.js';
import type { HostPlan, Plan, SitePlan, VmPlan } from './plan.js';

export interface ServiceNodeReplacement {
  site: string;
  lost: string;
  /** The host that took its place; null when the site had none left. */
  by: string | null;
}

export interface VmMove {
  vm: string;
  from: string;
  to: string;
}

export interface Replan {
  plan: Plan;
  /** VM hosts that were lost, in natural order. */
  lostHosts: string[];
  replacedServiceNodes: ServiceNodeReplacement[];
  moved: VmMove[];
  /** VMs left out of the plan, each with the host it was planned on. */
  unplaced: VmPlan[];
}

/** `spares`: per site, hosts not in the plan that can take VMs (their `vms` is 0). */
export function replanAfterLoss(
  plan: Plan,
  lost: ReadonlySet<string>,
  spares: Record<string, HostPlan[]> = {},
): Replan {
  const out: Replan = {
    plan: structuredClone(plan),
    lostHosts: [],
    replacedServiceNodes: [],
    moved: [],
    unplaced: [],
  };
  out.plan.sites = plan.sites.map((site) => replanSite(site, lost, spares[site.name] ?? [], out));
  const sites = out.plan.sites;
  out.plan.totals = {
    ...plan.totals,
    hosts: sites.reduce((a, s) => a + s.hosts.length, 0),
    serviceNodes: sites.reduce((a, s) => a + s.serviceNodes.length, 0),
    vms: sites.reduce((a, s) => a + s.vms.length, 0),
  };
  out.lostHosts.sort(naturalCompare);
  return out;
}

function replanSite(
  original: SitePlan,
  lost: ReadonlySet<string>,
  spareHosts: HostPlan[],
  out: Replan,
): SitePlan {
  const site = structuredClone(original);
  const spares = spareHosts
    .filter((h) => !lost.has(h.host) && !site.hosts.some((p) => p.host === h.host))
    .map((h) => ({ ...h, vms: 0 }));
  let hosts = site.hosts.filter((h) => !lost.has(h.host));
  out.lostHosts.push(...site.hosts.filter((h) => lost.has(h.host)).map((h) => h.host));
  /** Hosts whose VMs must move: the lost ones, then those turned into service nodes. */
  const emptied = new Set(site.hosts.filter((h) => lost.has(h.host)).map((h) => h.host));
  const serviceOf = new Map<string, string | null>();

  for (const sn of site.serviceNodes) {
    if (!lost.has(sn.host)) continue;
    const replacement = takeReplacement(spares, hosts);
    if (replacement) {
      hosts = hosts.filter((h) => h.host !== replacement.host);
      if (replacement.vms > 0) emptied.add(replacement.host);
    }
    out.replacedServiceNodes.push({ site: site.name, lost: sn.host, by: replacement?.host ?? null });
    serviceOf.set(sn.host, replacement?.host ?? null);
    if (replacement) Object.assign(sn, { host: replacement.host, cluster: replacement.cluster });
  }
  site.serviceNodes = site.serviceNodes.filter((sn) => !lost.has(sn.host));
  const remaining = site.serviceNodes.map((sn) => sn.host);
  // A VM whose service node was lost without a replacement goes to another one of its site.
  const mapService = (s: string | null): string | null => {
    if (s === null || !serviceOf.has(s)) return s;
    return serviceOf.get(s) ?? remaining[0] ?? null;
  };

  const kept: VmPlan[] = [];
  const orphans: VmPlan[] = [];
  for (const vm of site.vms) {
    vm.serviceNode = mapService(vm.serviceNode);
    (emptied.has(vm.host) ? orphans : kept).push(vm);
  }
  if (original.serviceNodes.length > 0 && remaining.length === 0) {
    out.unplaced.push(...site.vms);
    site.vms = [];
    site.hosts = hosts.map((h) => ({ ...h, vms: 0 }));
    return site;
  }

  for (const h of hosts) h.vms = kept.filter((vm) => vm.host === h.host).length;
  const pool = [...hosts, ...spares];
  for (const vm of orphans) {
    const target = pool
      .filter((h) => h.vms < h.capacity)
      .sort((a, b) => b.capacity - b.vms - (a.capacity - a.vms) || naturalCompare(a.host, b.host))[0];
    if (!target) {
      out.unplaced.push(vm);
      continue;
    }
    // It joins the service node that serves the target's other VMs, so each host keeps one.
    const neighbour = kept.find((v) => v.host === target.host);
    out.moved.push({ vm: vm.name, from: vm.host, to: target.host });
    kept.push({ ...vm, host: target.host, serviceNode: neighbour?.serviceNode ?? vm.serviceNode });
    target.vms++;
  }
  const order = new Map(site.vms.map((vm, i) => [vm.name, i]));
  site.vms = kept.sort((a, b) => order.get(a.name)! - order.get(b.name)!);
  site.hosts = pool
    .filter((h) => h.vms > 0 || hosts.includes(h))
    .sort((a, b) => naturalCompare(a.host, b.host));
  return site;
}

/** A spare first (it carries nothing), the smallest one; else the VM host with the fewest VMs. */
function takeReplacement(spares: HostPlan[], hosts: HostPlan[]): HostPlan | null {
  spares.sort((a, b) => a.capacity - b.capacity || naturalCompare(a.host, b.host));
  const spare = spares.shift();
  if (spare) return spare;
  return (
    [...hosts].sort(
      (a, b) => a.vms - b.vms || a.capacity - b.capacity || naturalCompare(a.host, b.host),
    )[0] ?? null
  );
}

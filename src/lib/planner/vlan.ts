// The VMs' gateway and resolvers inside a site's KaVLAN. Pure.
// A KaVLAN has its own network and router, listed in the site document's `kavlans`; once the
// hosts are in the VLAN, the site's usual gateway is no longer on their link, so the VMs route
// through the VLAN's gateway. Assumed (not documented by Grid'5000, to be checked on a first real
// run): a routed or global VLAN's router also routes the site's g5k-subnet addresses the VMs
// carry; a local VLAN (`kavlan-local`) routes nothing out. Without a `kavlans` entry the VMs
// keep the site's gateway. Resolvers: the site's DNS service nodes, else that gateway.
import type { SitePlan, VlanPlan } from './plan.js';

export function planVlanNetwork(
  site: SitePlan,
  vlan: { id: number; type: string },
  kavlans: Record<string, { network?: string; gateway?: string }> | undefined,
): SitePlan {
  const doc = kavlans?.[String(vlan.id)];
  const plan: VlanPlan = { ...vlan, network: doc?.network ?? null, gateway: doc?.gateway ?? null };
  const vmGateway = plan.gateway ?? site.gateway;
  const dnsNodes = site.serviceNodes.filter((sn) => sn.roles.includes('dns')).map((sn) => sn.ip);
  return { ...site, vlan: plan, vmGateway, vmDns: dnsNodes.length > 0 ? dnsNodes : [vmGateway] };
}

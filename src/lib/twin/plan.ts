// Where a site's twin puts its machines on this machine (pure): one namespace per node of the
// config, its address and MAC from the local layout, a fabric namespace whose `prod` bridge is
// the production network (the router at its third address), VLAN bridges (`kv<id>s<site>`, a
// global one `kv<id>`) made when a machine first joins one, and the controller's veth with a route to the whole prefix.
import type { TestbedConfig } from '../config/schema.js';
import { intToIp, parsePrefix } from '../net/ipv4.js';
import { nsPrefix, testbedTag } from '../netns/topology.js';
import { localLayout } from '../provider/local-layout.js';

export interface TwinMachine {
  uid: string;
  fqdn: string;
  site: string;
  ip: string;
  mac: string;
  ns: string;
  /** Its veth's peer in the fabric namespace. */
  peer: string;
}

export interface TwinPlan {
  name: string;
  prefix: string;
  fabricNs: string;
  /** The production network's router, in the fabric. */
  router: string;
  /** Prefix length of the production network. */
  prodLength: number;
  controller: { link: string; peer: string; address: string; route: { dst: string; via: string } };
  /** By FQDN. */
  machines: Map<string, TwinMachine>;
  /** Each site's VM network (its g5k subnet), routed into the site's VLAN once its machines are in one. */
  vmNetworks: Map<string, string>;
}

export const prodBridge = 'prod';
/**
 * A VLAN's bridge in the fabric: a global VLAN is one network across sites, a local or routed one
 * is the site's own (VLAN ids repeat from site to site). `site`: the site's index in the plan.
 */
export function vlanBridge(id: number, site: number | null): string {
  return site === null ? `kv${id}` : `kv${id}s${site}`;
}

/** The index of a site in the plan (its order in the config), as VLAN bridge names use it. */
export function siteIndex(plan: TwinPlan, site: string): number {
  return [...plan.vmNetworks.keys()].indexOf(site);
}

export function twinPlan(config: TestbedConfig, source: string): TwinPlan {
  const layout = localLayout(config, source);
  const prod = parsePrefix(layout.infra);
  const router = intToIp(prod.base + 2);
  const machines = new Map<string, TwinMachine>();
  let k = 0;
  for (const site of layout.sites) {
    for (const h of site.hosts) {
      machines.set(h.fqdn, {
        uid: h.uid,
        fqdn: h.fqdn,
        site: h.site,
        ip: h.ip,
        mac: h.mac,
        ns: `${nsPrefix(config.name)}${h.uid}-${h.site}`,
        peer: `m${k++}`,
      });
    }
  }
  return {
    name: config.name,
    prefix: config.network.prefix,
    fabricNs: `${nsPrefix(config.name)}fabric`,
    router,
    prodLength: prod.length,
    controller: {
      link: `kb${testbedTag(config.name)}c`,
      peer: 'ctl',
      address: `${layout.controllerIp}/${prod.length}`,
      route: { dst: config.network.prefix, via: router },
    },
    machines,
    vmNetworks: new Map(layout.sites.map((s) => [s.name, s.vmNetwork])),
  };
}

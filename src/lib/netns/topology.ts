// The local testbed's network, as data (pure): which namespaces, links, addresses and routes
// a plan needs on this machine. `build.ts` applies it; `teardown` removes what state recorded.
//
//   root ns ── veth ──┐ fabric ns: bridge "prod" (hosts' own network, router = infra+2)
//                     │            bridge "vlanN" per site (VM network, router = site gateway)
//   host ns:    eth0 → prod, vlan0 → site VLAN bridge (later bridged with the VMs' taps), sshd
//   service ns: eth0 → prod, vlan0 → site VLAN bridge with the service node's VM-network address
//   emulated ns (host layout per site, as the emulated runtime asks): eth0 → prod with every host address of the
//              site (the emulated hosts), vlan0 → site VLAN bridge (the emulated VMs add their
//              leased addresses); traffic from VM addresses leaves by the VLAN, as a real VM's does
import { createHash } from 'node:crypto';
import {
  broadcastOf,
  formatPrefix,
  intToIp,
  networkOfAddress,
  overlaps,
  type Prefix,
  parsePrefix,
} from '../net/ipv4.js';
import type { Plan } from '../planner/plan.js';
import type { LocalLayout } from '../provider/local-layout.js';

export interface NsInterface {
  /** Name inside its namespace (≤ 15 characters). */
  name: string;
  /** Peer name in the fabric namespace. */
  fabricPeer: string;
  /** Fabric bridge the peer joins. */
  bridge: string;
  address: string | null;
  /** More addresses on the same interface (an emulated group's other hosts). */
  aliases?: string[];
  mac?: string;
}

export interface NsRoute {
  dst: string;
  via?: string;
  dev?: string;
  /** Policy routing table (main when absent). */
  table?: number | 'local';
  type?: 'broadcast';
}

export interface HostNs {
  ns: string;
  role: 'host' | 'service' | 'host-group';
  fqdn: string;
  site: string;
  /** Its address on the hosts' network (sshd listens there). */
  ip: string;
  interfaces: NsInterface[];
  /** Routes inside the namespace: the testbed prefix via the fabric router. */
  routes: NsRoute[];
  /** Policy rules: traffic from `from` looks up `table`. */
  rules?: { from: string; table: number; priority: number }[];
  /** The hosts an emulated namespace plays (its own fqdn/ip is the first of them). */
  hosts?: { fqdn: string; ip: string }[];
}

export interface Topology {
  testbed: string;
  prefix: string;
  fabricNs: string;
  bridges: { name: string; address: string }[];
  controller: { link: string; fabricPeer: string; address: string; route: { dst: string; via: string } };
  namespaces: HostNs[];
}

/** Short, stable tag of a testbed name for interface names, which are at most 15 characters. */
export function testbedTag(name: string): string {
  return createHash('sha256').update(name).digest('hex').slice(0, 6);
}

export function nsPrefix(testbed: string): string {
  return `kb-${testbed}-`;
}

/**
 * How a plan's VM hosts become namespaces: one per host (each with its sshd), or one per site
 * whose namespace plays every host of the site (a process answers SSH for them). The runtime says
 * which (runtime/runtime.ts, LocalTwin).
 */
export type HostLayout = 'per-host' | 'per-site';

/** A namespace that plays a group of hosts (layout per site): a process answers SSH for them, not an sshd. */
export function isHostGroup(n: HostNs): boolean {
  return n.role === 'host-group';
}

/** Policy table for traffic sourced from emulated VM addresses. */
export const emulatedVmTable = 100;

export function buildTopology(
  plan: Plan,
  layout: LocalLayout,
  prefix: string,
  hostLayout: HostLayout = 'per-host',
): Topology {
  const infra = parsePrefix(layout.infra);
  const router = intToIp(infra.base + 2);
  const hostLen = infra.length;
  const fabricNs = `${nsPrefix(plan.testbed)}fabric`;
  const bridges = [{ name: 'prod', address: `${router}/${hostLen}` }];
  const namespaces: HostNs[] = [];
  const ipOf = new Map(layout.sites.flatMap((s) => s.hosts.map((h) => [h.fqdn, h] as const)));
  let n = 0;
  plan.sites.forEach((site, i) => {
    const vlanBridge = `vlan${i}`;
    const net = parsePrefix(site.network);
    bridges.push({ name: vlanBridge, address: `${site.gateway}/${net.length}` });
    const add = (fqdn: string, role: HostNs['role'], vlanAddress: string | null) => {
      const h = ipOf.get(fqdn);
      if (!h) throw new Error(`host ${fqdn} of the plan is not in the local layout`);
      const k = n++;
      namespaces.push({
        ns: `${nsPrefix(plan.testbed)}${h.uid}-${site.name}`,
        role,
        fqdn,
        site: site.name,
        ip: h.ip,
        interfaces: [
          { name: 'eth0', fabricPeer: `p${k}`, bridge: 'prod', address: `${h.ip}/${hostLen}`, mac: h.mac },
          { name: 'vlan0', fabricPeer: `v${k}`, bridge: vlanBridge, address: vlanAddress },
        ],
        routes: [{ dst: prefix, via: router }],
      });
    };
    for (const s of site.serviceNodes) add(s.host, 'service', `${s.ip}/${net.length}`);
    if (hostLayout === 'per-host') {
      for (const h of site.hosts) add(h.host, 'host', null);
      return;
    }
    if (site.hosts.length === 0) return;
    // One namespace plays every VM host of the site: a few processes instead of hundreds.
    const hosts = site.hosts.map((h) => {
      const l = ipOf.get(h.host);
      if (!l) throw new Error(`host ${h.host} of the plan is not in the local layout`);
      return { fqdn: h.host, ip: l.ip };
    });
    const k = n++;
    namespaces.push({
      ns: `${nsPrefix(plan.testbed)}emu-${site.name}`,
      role: 'host-group',
      fqdn: hosts[0].fqdn,
      site: site.name,
      ip: hosts[0].ip,
      hosts,
      interfaces: [
        {
          name: 'eth0',
          fabricPeer: `p${k}`,
          bridge: 'prod',
          address: `${hosts[0].ip}/${hostLen}`,
          aliases: hosts.slice(1).map((h) => `${h.ip}/${hostLen}`),
        },
        { name: 'vlan0', fabricPeer: `v${k}`, bridge: vlanBridge, address: null },
      ],
      routes: [
        { dst: prefix, via: router },
        // DHCP DISCOVERs go to the limited broadcast address, out of the VLAN
        { dst: '255.255.255.255/32', dev: 'vlan0' },
        // the service node answers to the subnet's broadcast address, which the namespace
        // must take as its own although it holds no address there until a VM has leased one
        { dst: broadcastOf(site.network), dev: 'vlan0', table: 'local', type: 'broadcast' },
        { dst: site.network, dev: 'vlan0', table: emulatedVmTable },
        { dst: '255.255.255.255/32', dev: 'vlan0', table: emulatedVmTable },
        { dst: 'default', via: site.gateway, dev: 'vlan0', table: emulatedVmTable },
      ],
      rules: [{ from: site.network, table: emulatedVmTable, priority: 100 }],
    });
  });
  const tag = testbedTag(plan.testbed);
  return {
    testbed: plan.testbed,
    prefix,
    fabricNs,
    bridges,
    controller: {
      link: `kb${tag}c`,
      fabricPeer: 'ctl',
      address: `${layout.controllerIp}/${hostLen}`,
      route: { dst: prefix, via: router },
    },
    namespaces,
  };
}

/** Routes of this machine that overlap the testbed prefix (a default route does not count). */
export function overlappingRoutes(
  prefix: string,
  routes: { dst: string; dev?: string }[],
  ownLink: string,
): string[] {
  const p = parsePrefix(prefix);
  const out: string[] = [];
  for (const r of routes) {
    if (r.dst === 'default' || r.dev === ownLink) continue;
    let route: Prefix;
    try {
      route = networkOfAddress(r.dst);
    } catch {
      continue;
    }
    if (overlaps(p, route)) out.push(`${formatPrefix(route)} dev ${r.dev ?? '?'}`);
  }
  return out;
}

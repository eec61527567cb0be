// Where the controller reaches a reserved machine over SSH after its reinstall (pure). On
// Grid'5000 a node in a KaVLAN answers only as `<uid>-kavlan-<id>.<site>.grid5000.fr` (the site's
// DNS names it), outside a VLAN as its FQDN. Any other API is a site's twin, whose machines keep
// the address of their reference document (its primary NIC's `ip`) and are reached without DNS:
// no name is ever resolved for them, so nothing leaves this machine.
import { TestbedError } from '../../errors.js';
import { vlanNodeAddress } from '../../g5k/client.js';
import { primaryNic } from '../../g5k/facts.js';
import type { NodeDoc } from '../../g5k/types.js';
import type { Plan } from '../../planner/plan.js';
import type { TestbedState } from '../../state/store.js';

/** Grid'5000's own API (public, or its proxy seen from a frontend): its nodes are named by its DNS. */
export function isGrid5000Api(apiUrl: string): boolean {
  const host = new URL(apiUrl).hostname;
  return host === 'grid5000.fr' || host.endsWith('.grid5000.fr');
}

export interface MachineWhere {
  fqdn: string;
  site: string;
  vlan: number | null;
  /** Its reference document (the twin's give the address). */
  doc: NodeDoc | undefined;
}

export function machineAddress(m: MachineWhere, api: { url: string; domain: string }): string {
  if (isGrid5000Api(api.url)) {
    return m.vlan === null ? m.fqdn : vlanNodeAddress(m.fqdn, `kavlan-${m.vlan}`, m.site, api.domain);
  }
  const ip = m.doc ? primaryNic(m.doc).ip : undefined;
  if (!ip) throw new TestbedError(`${m.fqdn}: its reference document gives no address to reach it by`);
  return ip;
}

/** Every planned host and service node, by FQDN → the address recorded at its reinstall. */
export function plannedAddresses(state: TestbedState, plan: Plan): Map<string, string> {
  const out = new Map<string, string>();
  for (const site of plan.sites) {
    for (const fqdn of [...site.serviceNodes.map((s) => s.host), ...site.hosts.map((h) => h.host)]) {
      const m = state.machines?.[fqdn];
      if (m?.state !== 'ok') throw new TestbedError(`${fqdn}: planned but not reinstalled OK`);
      out.set(fqdn, m.address);
    }
  }
  return out;
}

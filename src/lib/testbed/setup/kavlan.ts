// setup's KaVLAN phase (provider g5k), after the reinstall: each reserved VLAN's own DHCP server
// is stopped (`PUT .../vlans/{id}/dhcpd {"action":"stop"}`), so the service nodes' DHCP is the
// only one answering there; then every machine deployed OK must be in its site's VLAN. The
// deployment's `vlan` moved its primary NIC; membership is read back (`GET .../vlans/{id}/nodes`)
// because the real API answers a refused move `unchanged`, not `failure`. A machine missing is
// asked for once more by the VLAN API (its primary NIC's name is the node's own FQDN), read back
// again, and one still missing is an error naming it. Finally the VMs' gateway and resolvers are
// planned inside the VLAN (planner/vlan.ts).
// Secondary NICs (`<node>-ethN.<site>.grid5000.fr`) are not moved: the plan puts the VMs on the
// primary NIC's bridge, so nothing needs them yet.
// Resume: stopping a stopped DHCP and checking membership again change nothing.
import { TestbedError } from '../../errors.js';
import type { VlanNodeItem } from '../../g5k/client.js';
import type { Plan } from '../../planner/plan.js';
import { planVlanNetwork } from '../../planner/vlan.js';
import type { SiteReference } from '../reference.js';
import { type PlannedContext, recordPhase } from './context.js';
import { siteVlan } from './reinstall.js';

export interface VlanOutcome {
  site: string;
  vlan: number;
  type: string;
  /** Machines of the site deployed OK, all found in the VLAN. */
  members: number;
  gateway: string | null;
}

export async function joinVlans(
  ctx: PlannedContext,
  refs: SiteReference[],
): Promise<{ plan: Plan; vlans: VlanOutcome[] }> {
  const { state, session } = ctx;
  const client = session.client;
  const type = state.config.vlan.type;
  const sites = ctx.plan.sites
    .map((s, i) => ({ site: s.name, index: i, vlan: siteVlan(state, s.name) }))
    .filter((s): s is { site: string; index: number; vlan: number } => s.vlan !== null);
  if (sites.length === 0) return { plan: ctx.plan, vlans: [] };
  const outcomes = await ctx.progress
    .step(`Stop the VLANs' DHCP and check their members`, async () => {
      // A global VLAN is stopped once, at the site whose job holds it.
      const stopped = new Set<number>();
      for (const [site, got] of Object.entries(state.discovered)) {
        for (const id of got.vlans) {
          if (stopped.has(id) || !sites.some((s) => s.vlan === id)) continue;
          await client.stopVlanDhcp(site, id);
          stopped.add(id);
        }
      }
      return Promise.all(
        sites.map(async ({ site, vlan }) => {
          const deployed = Object.entries(state.machines ?? {})
            .filter(([, m]) => m.site === site && m.state === 'ok')
            .map(([node]) => node);
          let missing = absent(deployed, await client.getVlanNodes(site, vlan));
          const answers: Record<string, string> = {};
          if (missing.length > 0) {
            const answer = await client.setVlanNodes(site, vlan, missing).catch((e: Error) => {
              for (const n of missing) answers[n] = e.message;
              return {};
            });
            for (const [addr, r] of Object.entries(answer))
              answers[addr] = `${r.status}: ${r.message || 'no message'}`;
            missing = absent(deployed, await client.getVlanNodes(site, vlan));
          }
          if (missing.length > 0) {
            const list = missing
              .map((n) => (answers[n] ? `${n} (the API answered ${answers[n]})` : n))
              .join(', ');
            throw new TestbedError(
              `KaVLAN ${vlan} at ${site}: ${missing.length} machine(s) not in the VLAN after their deployment: ${list}`,
            );
          }
          return { site, vlan, members: deployed.length };
        }),
      );
    })
    .catch(async (e) => {
      await recordPhase(ctx, 'failed');
      throw e;
    });
  const plan: Plan = {
    ...ctx.plan,
    sites: ctx.plan.sites.map((s, i) => {
      const v = sites.find((x) => x.index === i);
      return v ? planVlanNetwork(s, { id: v.vlan, type }, refs[i]?.doc.kavlans) : s;
    }),
  };
  state.plan = plan;
  await recordPhase(ctx, 'vlan');
  return {
    plan,
    vlans: outcomes.map((o) => ({
      ...o,
      type,
      gateway: plan.sites.find((s) => s.name === o.site)?.vlan?.gateway ?? null,
    })),
  };
}

/** The machines not listed in a VLAN; an entry may name the node, its FQDN or its `-kavlan-N` name. */
function absent(machines: string[], members: VlanNodeItem[]): string[] {
  const shorts = members.map((m) => String(m.uid).split('.')[0]);
  return machines.filter((fqdn) => {
    const uid = fqdn.split('.')[0];
    return !shorts.some((s) => s === uid || s.startsWith(`${uid}-kavlan-`));
  });
}

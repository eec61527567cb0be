// setup's reinstall phase (provider g5k): every reserved machine of a site — service nodes, VM
// hosts and spare hosts — is reinstalled with one deployment (`POST /sites/{site}/deployments`:
// the configured environment, the testbed's public key, and the site's KaVLAN, which is how a
// machine's primary NIC joins it), polled with backoff. Machines that come back KO are deployed
// again, `reinstall.redeploys` more times; one still KO is lost: its VMs are re-planned onto the
// site's other hosts when they have room (planner/replan.ts), else reported as not placed, and a
// lost service node is replaced by a host of its site.
// Resume: each deployment's outcome is recorded in the state (`machines`); a machine recorded
// OK is not deployed again, a lost one gets a new round of deployments.
// A machine deployed OK has a fresh system and so a new SSH host key: the keys pinned for it are
// forgotten, and the next contact learns the new one.
import { vmCapacity } from '../../planner/capacity.js';
import type { HostPlan, Plan } from '../../planner/plan.js';
import { type Replan, replanAfterLoss } from '../../planner/replan.js';
import { KnownHosts } from '../../ssh/known-hosts.js';
import type { MachineRecord, TestbedState } from '../../state/store.js';
import { testbedPublicKey } from '../testbed-key.js';
import { machineAddress } from './addresses.js';
import { type PlannedContext, recordPhase } from './context.js';
import type { Reservation } from './reserve.js';

export interface MachineOutcome extends MachineRecord {
  node: string;
  /** What the plan made of it before the reinstall. */
  role: 'service node' | 'host' | 'spare';
}

export interface ReinstallResult {
  /** The plan once lost machines are taken out. */
  plan: Plan;
  machines: MachineOutcome[];
  replan: Replan;
}

/** The KaVLAN a site's machines go into: its own job's, else (global VLAN) the one reserved elsewhere. */
export function siteVlan(state: TestbedState, site: string): number | null {
  if (state.config.vlan.type === 'none') return null;
  const own = state.discovered[site]?.vlans[0];
  if (own !== undefined) return own;
  if (state.config.vlan.type !== 'kavlan-global') return null;
  return Object.values(state.discovered).find((d) => d.vlans.length > 0)?.vlans[0] ?? null;
}

export async function reinstallMachines(
  ctx: PlannedContext,
  reservation: Reservation,
): Promise<ReinstallResult> {
  const { state, session, store, plan } = ctx;
  const config = state.config;
  const { environment, redeploys } = config.reinstall;
  const key = await testbedPublicKey(store.layout);
  const knownHosts = KnownHosts.at(store.layout.knownHosts);
  state.machines ??= {};
  const machines = state.machines;
  const sites = Object.entries(state.discovered);
  const total = sites.reduce((a, [, d]) => a + d.nodes.length, 0);
  const docs = new Map(
    reservation.refs.flatMap((r) => [...r.nodes].map(([fqdn, n]) => [fqdn, n.doc] as const)),
  );
  await ctx.progress.step(`Reinstall ${total} machine(s) with ${environment}`, async (step) => {
    const show = () => {
      const all = Object.values(machines);
      const ok = all.filter((m) => m.state === 'ok').length;
      step.status(`${ok}/${total} OK${all.length > ok ? `, ${all.length - ok} KO` : ''}`);
    };
    await Promise.all(
      sites.map(async ([site, got]) => {
        const vlan = siteVlan(state, site);
        const pending = got.nodes.filter((n) => machines[n]?.state !== 'ok');
        if (pending.length === 0) return;
        await session.client.deploy(
          site,
          { nodes: pending, environment, key, ...(vlan !== null ? { vlan: String(vlan) } : {}) },
          {
            maxTries: 1 + redeploys,
            pollMs: session.pollMs,
            onTry: async ({ ok, ko }) => {
              for (const node of [...ok, ...Object.keys(ko)]) {
                const reason = ko[node];
                machines[node] = {
                  site,
                  state: reason === undefined ? 'ok' : 'ko',
                  deployments: (machines[node]?.deployments ?? 0) + 1,
                  ...(reason !== undefined ? { reason } : {}),
                  vlan,
                  address: machineAddress(
                    { fqdn: node, site, vlan, doc: docs.get(node) },
                    { url: session.apiUrl, domain: session.inventoryDomain },
                  ),
                };
              }
              await knownHosts.forget(
                ok.flatMap((node) => {
                  const address = machines[node].address;
                  return address && address !== node ? [node, address] : [node];
                }),
              );
              // Written after every deployment: a resumed setup deploys only what is not OK.
              await store.write(state);
              show();
            },
          },
        );
      }),
    );
  });
  const lost = new Set(sites.flatMap(([, got]) => got.nodes).filter((n) => machines[n]?.state !== 'ok'));
  const replan = replanAfterLoss(plan, lost, spareHosts(state, plan, reservation));
  state.plan = replan.plan;
  await recordPhase(ctx, 'reinstalled');
  return { plan: replan.plan, machines: outcomes(state, plan), replan };
}

/** In a VLAN a machine answers as `<node>-kavlan-<id>.<site>.<domain>`; else as itself. */
/** Reserved machines the plan leaves idle, deployed OK: what a lost machine can be replaced by. */
function spareHosts(state: TestbedState, plan: Plan, reservation: Reservation): Record<string, HostPlan[]> {
  const out: Record<string, HostPlan[]> = {};
  for (const [i, site] of plan.sites.entries()) {
    const used = new Set([...site.serviceNodes.map((s) => s.host), ...site.hosts.map((h) => h.host)]);
    const ref = reservation.refs[i];
    out[site.name] = (state.discovered[site.name]?.nodes ?? [])
      .filter((n) => !used.has(n) && state.machines?.[n]?.state === 'ok' && ref?.nodes.has(n))
      .map((n) => {
        const h = ref.nodes.get(n)!.host;
        return {
          host: h.fqdn,
          uid: h.uid,
          cluster: h.cluster,
          cores: h.cores,
          threads: h.threads,
          ramMB: h.ramMB,
          capacity: vmCapacity(h, state.config.vms).vms,
          vms: 0,
        };
      });
  }
  return out;
}

function outcomes(state: TestbedState, plan: Plan): MachineOutcome[] {
  const roles = new Map<string, MachineOutcome['role']>();
  for (const site of plan.sites) {
    for (const sn of site.serviceNodes) roles.set(sn.host, 'service node');
    for (const h of site.hosts) roles.set(h.host, 'host');
  }
  return Object.entries(state.discovered).flatMap(([, got]) =>
    got.nodes
      .filter((n) => state.machines?.[n])
      .map((n) => ({ node: n, role: roles.get(n) ?? 'spare', ...state.machines![n] })),
  );
}

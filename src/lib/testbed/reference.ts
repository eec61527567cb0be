// Reads the candidate hosts of every configured cluster from the testbed API's reference
// documents and turns them into planner input. Used before a reservation (to decide how many
// hosts to ask for) and after it (to plan on the hosts actually assigned).
import type { TestbedConfig } from '../config/schema.js';
import { InputError, TestbedError } from '../errors.js';
import { nodeFacts } from '../g5k/facts.js';
import type { NodeDoc, SiteDoc } from '../g5k/types.js';
import { naturalCompare } from '../natural-order.js';
import type { PlannerHost, PlannerSite } from '../planner/plan.js';
import type { ProviderSession } from '../provider/session.js';

export interface SiteReference {
  doc: SiteDoc;
  /** Candidate hosts in config order, then natural order. */
  hosts: PlannerHost[];
  /** Every node document of the configured clusters, by FQDN. */
  nodes: Map<string, { doc: NodeDoc; host: PlannerHost }>;
}

async function orNotFound<T>(p: Promise<T>, path: string, what: string, source: string): Promise<T> {
  try {
    return await p;
  } catch (e) {
    if (e instanceof TestbedError && e.status === 404)
      throw new InputError(`config ${source}: ${path}: ${what}`);
    throw e;
  }
}

export async function readReference(
  session: ProviderSession,
  config: TestbedConfig,
  source: string,
): Promise<SiteReference[]> {
  return Promise.all(
    config.sites.map(async (site, i) => {
      const doc = await orNotFound(
        session.client.getSite(site.name),
        `sites[${i}].name`,
        `site "${site.name}" is not in the testbed API at ${session.apiUrl}`,
        source,
      );
      const hosts: PlannerHost[] = [];
      const nodes = new Map<string, { doc: NodeDoc; host: PlannerHost }>();
      for (const [j, cluster] of site.clusters.entries()) {
        const path = `sites[${i}].clusters[${j}]`;
        const docs = await orNotFound(
          session.client.getNodes(site.name, cluster.name),
          `${path}.name`,
          `cluster "${cluster.name}" is not at site ${site.name} in the testbed API at ${session.apiUrl}`,
          source,
        );
        docs.sort((a, b) => naturalCompare(a.uid, b.uid));
        const all = docs.map((d) => {
          const f = nodeFacts(d, site.name, session.inventoryDomain, cluster.name);
          const host: PlannerHost = {
            uid: f.uid,
            fqdn: f.fqdn,
            cluster: cluster.name,
            cores: f.cores,
            threads: f.threads,
            ramMB: Math.floor(f.ramBytes / 2 ** 20),
          };
          nodes.set(f.fqdn, { doc: d, host });
          return host;
        });
        if (Array.isArray(cluster.hosts)) {
          for (const name of cluster.hosts) {
            const h = all.find((x) => x.uid === name || x.fqdn === name);
            if (!h)
              throw new InputError(
                `config ${source}: ${path}.hosts: host "${name}" is not in cluster ${cluster.name}`,
              );
            hosts.push(h);
          }
        } else {
          if (cluster.hosts > all.length) {
            throw new InputError(
              `config ${source}: ${path}.hosts: ${cluster.hosts} hosts wanted but cluster ${cluster.name} at ${site.name} has ${all.length}`,
            );
          }
          hosts.push(...all.slice(0, cluster.hosts));
        }
      }
      return { doc, hosts, nodes };
    }),
  );
}

function siteNetwork(ref: SiteReference, siteName: string): { network: string; gateway: string } {
  const net = ref.doc.g5ksubnet;
  if (!net?.network || !net.gateway) {
    throw new TestbedError(
      `site ${siteName} has no g5ksubnet in the testbed API: VMs need one sub-network per site`,
    );
  }
  return net;
}

/** Planner input before a reservation: every candidate host, no blocks yet. */
export function candidateSites(config: TestbedConfig, refs: SiteReference[]): PlannerSite[] {
  return config.sites.map((site, index) => ({
    name: site.name,
    index,
    hosts: refs[index].hosts,
    ...siteNetwork(refs[index], site.name),
    wantedVms: site.vms ?? 'auto',
    serviceNodes: site.serviceNodes ?? config.services.perSite,
  }));
}

/** Planner input after a reservation: only the assigned hosts, and the reserved /22 blocks. */
export function assignedSites(
  config: TestbedConfig,
  refs: SiteReference[],
  assigned: Record<string, { nodes: string[]; subnets: string[] }>,
  planned: { name: string; vms: number }[],
): PlannerSite[] {
  return candidateSites(config, refs).map((site, i) => {
    const got = assigned[site.name];
    const hosts = got.nodes.map((fqdn) => {
      const entry = refs[i].nodes.get(fqdn);
      if (!entry)
        throw new TestbedError(
          `job at ${site.name} was given ${fqdn}, which is not in the configured clusters`,
        );
      return entry.host;
    });
    return { ...site, hosts, blocks: got.subnets, wantedVms: planned[i].vms };
  });
}

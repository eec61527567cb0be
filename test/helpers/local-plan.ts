// Planner input for a local config without going through the embedded API: keeps the pure
// planner tests free of HTTP. The CLI always plans from the API's reference documents.
import type { TestbedConfig } from '../../src/lib/config/schema.js';
import type { PlannerSite } from '../../src/lib/planner/plan.js';
import { type LocalLayout, localLayout } from '../../src/lib/provider/local-layout.js';

/** Candidate hosts and networks of every site, as the planner wants them, before any reservation. */
export function localPlannerSites(config: TestbedConfig, source: string): PlannerSite[] {
  const layout: LocalLayout = localLayout(config, source);
  return config.sites.map((site, index) => {
    const siteLayout = layout.sites[index];
    const hardwareOf = new Map(site.clusters.map((c) => [c.name, c.hardware!]));
    return {
      name: site.name,
      index,
      hosts: siteLayout.hosts.map((h) => {
        const hw = hardwareOf.get(h.cluster)!;
        return {
          uid: h.uid,
          fqdn: h.fqdn,
          cluster: h.cluster,
          cores: hw.cores,
          threads: hw.threads ?? hw.cores,
          ramMB: hw.ramMB,
        };
      }),
      network: siteLayout.vmNetwork,
      gateway: siteLayout.gateway,
      wantedVms: site.vms ?? 'auto',
      serviceNodes: site.serviceNodes ?? config.services.perSite,
    };
  });
}

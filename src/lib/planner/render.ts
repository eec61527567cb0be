// Human views of a plan: one table per site, one per host.
import { table } from '../cli/render.js';
import type { Plan } from './plan.js';

export function renderPlan(plan: Plan, opts: { hosts?: boolean } = {}): string {
  const out: string[] = [];
  const f = plan.flavour;
  out.push(
    `Testbed ${plan.testbed} (${plan.provider} provider, ${plan.runtime} VMs of ${f.vcpus} vCPU / ${f.memoryMB} MB, domain ${plan.domain})`,
  );
  out.push('');
  out.push(
    table(
      ['site', 'VM network', 'blocks /22', 'service nodes', 'VM hosts', 'VMs', 'first VM', 'last VM'],
      plan.sites.map((s) => [
        s.name,
        s.network,
        s.blocks.length,
        s.serviceNodes.length,
        s.hosts.length,
        s.vms.length,
        s.vms[0]?.ip ?? '-',
        s.vms.at(-1)?.ip ?? '-',
      ]),
    ),
  );
  out.push('');
  const t = plan.totals;
  out.push(
    `Total: ${t.sites} sites, ${t.hosts} VM hosts, ${t.serviceNodes} service nodes, ${t.vms} VMs in ${t.subnets22} /22 blocks`,
  );
  if (opts.hosts) {
    for (const s of plan.sites) {
      out.push('');
      out.push(
        `Site ${s.name}: service nodes ${s.serviceNodes.map((n) => `${n.host} (${n.ip})`).join(', ') || 'none'}`,
      );
      out.push(
        table(
          ['host', 'cluster', 'cores', 'threads', 'RAM MB', 'capacity', 'VMs'],
          s.hosts.map((h) => [h.host, h.cluster, h.cores, h.threads, h.ramMB, h.capacity, h.vms]),
        ),
      );
    }
  }
  return out.join('\n');
}

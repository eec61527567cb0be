// setup's fourth phase: start the plan's service nodes (DHCP, TFTP, HTTP, DNS for the VMs'
// network boot) in their namespaces, and check each answers on its control endpoint.
// Resume: nothing is skipped; the service-node recipe is run again for every service node.
import { TestbedError } from '../../errors.js';
import { type ServiceProbe, startLocalServiceNodes } from '../service-nodes.js';
import type { MachinesContext } from './context.js';

export async function startServiceNodes(ctx: MachinesContext): Promise<ServiceProbe[]> {
  const services = await startLocalServiceNodes(
    ctx.store,
    ctx.state,
    ctx.plan,
    ctx.topology,
    ctx.source,
    ctx.progress,
    ctx.logger,
  );
  const silent = services.filter((s) => !s.ok);
  if (silent.length) {
    throw new TestbedError(
      `${silent.length} service node(s) do not answer: ${silent.map((s) => `${s.name} (${s.detail})`).join(', ')}`,
    );
  }
  return services;
}

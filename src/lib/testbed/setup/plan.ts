// setup's second phase: discover what the running jobs were given (hosts, VLANs, subnets) and
// plan on it: the reference documents of the assigned hosts, the VMs per site as reserved.
// Resume: nothing to skip; the discovery and the plan are made again from the recorded config,
// the reference documents and the jobs, and recorded.
import { buildPlan, type Plan } from '../../planner/plan.js';
import { assignedSites } from '../reference.js';
import { discovered } from '../reserve.js';
import { recordPhase, type SetupContext } from './context.js';
import type { Reservation } from './reserve.js';

export async function discoverAndPlan(ctx: SetupContext, reservation: Reservation): Promise<Plan> {
  const { state } = ctx;
  const config = state.config;
  state.discovered = discovered(reservation.jobs);
  const plan = await ctx.progress.step('Discover hosts, VLANs and subnets; plan on them', async () =>
    buildPlan(
      config,
      assignedSites(
        config,
        reservation.refs,
        state.discovered,
        reservation.preliminary.sites.map((s) => ({ name: s.name, vms: s.vms.length })),
      ),
      ctx.source,
    ),
  );
  state.plan = plan;
  await recordPhase(ctx, 'discovered');
  return plan;
}

// `setup --dry-run`: the plan for a config from the provider's reference documents, reserving
// and recording nothing. setup's reserve phase plans the same way before it reserves.

import type { LoadedConfig } from '../config/load.js';
import type { TestbedConfig } from '../config/schema.js';
import { buildPlan, type Plan } from '../planner/plan.js';
import type { Progress } from '../progress.js';
import { openSession, type ProviderSession } from '../provider/session.js';
import type { TestbedContext } from './context.js';
import { candidateSites, readReference, type SiteReference } from './reference.js';

/** The plan for a config, from the API's reference documents; reserves and records nothing. */
export async function planTestbed(loaded: LoadedConfig, ctx: TestbedContext): Promise<Plan> {
  const session = await openSession(loaded.config, {
    logger: ctx.logger,
    source: loaded.source,
    embedded: true,
  });
  try {
    return (await referencePlan(session, loaded.config, loaded.source, ctx.progress)).plan;
  } finally {
    await session.close();
  }
}

/** The reference documents of the configured sites and the plan on their candidate hosts. */
export async function referencePlan(
  session: ProviderSession,
  config: TestbedConfig,
  source: string,
  progress: Progress,
): Promise<{ refs: SiteReference[]; plan: Plan }> {
  const refs = await progress.step(`Read the reference inventory at ${session.apiUrl}`, () =>
    readReference(session, config, source),
  );
  return { refs, plan: buildPlan(config, candidateSites(config, refs), source) };
}

// setup's first phase: read the reference documents, plan on the candidate hosts to know what
// to ask for, reserve it (one job per site and queue) and wait until every job runs.
// Resume: a job whose submission answer was lost is found again by its name and user
// (resolvePending), a site's queue with a recorded job is not submitted again (submitJobs), and
// the recorded jobs are waited for again (a running one answers at once).
import { TestbedError } from '../../errors.js';
import type { Job } from '../../g5k/types.js';
import type { Plan } from '../../planner/plan.js';
import { countStates } from '../../progress.js';
import { referencePlan } from '../plan.js';
import type { SiteReference } from '../reference.js';
import { resolvePending, type SiteJob, submitJobs, waitForJobs } from '../reserve.js';
import { recordPhase, type SetupContext } from './context.js';

export interface Reservation {
  refs: SiteReference[];
  /** The plan on the candidate hosts: what was asked for, per site. */
  preliminary: Plan;
  /** Every job, running: one per site and queue. */
  jobs: SiteJob[];
}

/**
 * On a job that ends in error the state is kept (teardown releases the rest); on a refused
 * reservation the jobs submitted by this run are cancelled again.
 */
export async function reserve(ctx: SetupContext): Promise<Reservation> {
  const { session, store, state, progress } = ctx;
  const { refs, plan: preliminary } = await referencePlan(session, state.config, ctx.source, progress);
  state.apiUrl = session.apiUrl;
  await resolvePending(session, store, state);
  await progress.step(`Reserve ${preliminary.sites.length} site(s)`, async (step) => {
    await submitJobs(session, store, state, preliminary, {
      onSubmitted: (site, job) => step.status(`${site}: job ${job.uid} ${job.state}`),
    });
  });
  const latest = new Map<number, Job>();
  const jobs = await progress
    .step('Wait for the jobs to run', (step) =>
      waitForJobs(session, state, ctx.options.waitTimeoutMs, {
        onPoll: (_site, job) => {
          latest.set(job.uid, job);
          step.status(countStates([...latest.values()].map((j) => j.state)));
        },
      }),
    )
    .catch(async (e) => {
      await recordPhase(ctx, 'failed');
      if (e instanceof TestbedError) {
        throw new TestbedError(
          `${e.message}; run 'kabootstrap teardown' to release what was reserved`,
          e.status,
        );
      }
      throw e;
    });
  await recordPhase(ctx, 'reserved');
  return { refs, preliminary, jobs };
}

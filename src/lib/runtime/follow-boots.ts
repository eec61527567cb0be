// What both runtimes do while their VMs boot: the service nodes' event streams feed one boot
// tracker, and the progress step shows its counts and ETA until the work is done.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log.js';
import type { VmPlan } from '../planner/plan.js';
import type { Progress } from '../progress.js';
import { ServiceClient } from '../services/client.js';
import { serviceNodesOf } from '../state/service-nodes.js';
import type { TestbedState } from '../state/store.js';
import { BootTracker, type VmBoot } from './boot-tracker.js';

/**
 * Runs `work` as the progress step `title` with a tracker of `vms` fed by every service node's
 * event stream (followed until the step ends), and returns every VM's boot as the tracker saw it.
 */
export async function followBoots(
  state: TestbedState,
  vms: VmPlan[],
  title: string,
  ctx: { progress: Progress; logger: Logger; what: string; controlSecret: string | null },
  work: (tracker: BootTracker) => Promise<void>,
): Promise<VmBoot[]> {
  const tracker = new BootTracker(vms);
  const abort = new AbortController();
  // Each stream until aborted. A stream that breaks (its daemon crashed and its supervisor started
  // it again) is followed again: the boots it tells of go on, and a lost stream must not fail them.
  const follow = async (url: string) => {
    const client = new ServiceClient(url, { secret: ctx.controlSecret });
    while (!abort.signal.aborted) {
      try {
        await client.followEvents((e) => tracker.event(e), { signal: abort.signal });
      } catch (e) {
        ctx.logger.debug(`${(e as Error).message}; following it again`);
      }
      await sleep(500, undefined, { signal: abort.signal }).catch(() => {});
    }
  };
  const following = serviceNodesOf(state).map((s) => follow(s.url));
  try {
    return await ctx.progress.step(title, async (step) => {
      const started = Date.now();
      const tick = setInterval(() => {
        const eta = tracker.eta(Date.now());
        step.status(`${tracker.summary()}${eta === null ? '' : `, ETA ${eta} s`}`);
      }, 500);
      try {
        await work(tracker);
        ctx.logger.debug(`${ctx.what}: ${tracker.summary()} after ${Date.now() - started} ms`);
        return tracker.vms();
      } finally {
        clearInterval(tick);
      }
    });
  } finally {
    abort.abort();
    await Promise.allSettled(following);
  }
}

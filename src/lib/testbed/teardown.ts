// `teardown`: releases everything a testbed's state records (the local network and its
// processes, then the reservations), then removes the state. Idempotent.
import { type NetworkTeardown, teardownNetwork } from '../netns/teardown.js';
import { openSession, type ProviderSession, throughTwin } from '../provider/session.js';
import { runningTwin, stopTwin } from '../provider/twin-process.js';
import { StateStore, type TestbedState } from '../state/store.js';
import type { TestbedContext } from './context.js';
import { releaseJobs } from './reserve.js';

export interface TeardownResult {
  testbed: string;
  found: boolean;
  releasedJobs: number;
  network: NetworkTeardown;
}

/** Releases everything the state records, then removes the state. Idempotent. */
export async function teardownTestbed(name: string, ctx: TestbedContext): Promise<TeardownResult> {
  const store = new StateStore(name);
  const state = await store.read();
  if (!state) {
    // No state, yet a setup killed before its first write may have left namespaces: sweep by name.
    const network = await teardownNetwork({ name, resources: [] });
    await store.destroy();
    return { testbed: name, found: false, releasedJobs: 0, network };
  }
  await store.lock('teardown');
  let session: ProviderSession | null = null;
  try {
    if (throughTwin(state.config)) return await teardownThroughTwin(store, state, ctx);
    const network =
      state.provider === 'local'
        ? await ctx.progress.step('Remove the local network and its processes', () => teardownNetwork(state))
        : { processes: 0, namespaces: 0, links: 0 };
    session = await openSession(state.config, {
      logger: ctx.logger,
      source: state.configSource,
      stateDir: store.dir,
    });
    const releasedJobs = await ctx.progress.step('Release the reservations', (step) =>
      releaseJobs(session!, store, state, (site, uid) => step.status(`${site}: job ${uid} released`)),
    );
    await session.close();
    session = null;
    await store.destroy();
    return { testbed: name, found: true, releasedJobs, network };
  } finally {
    await session?.close();
    await store.unlock();
  }
}

/**
 * The local provider through its twin: the jobs released over the twin's API (the twin removes
 * their machines), then the twin stopped, then whatever a twin killed half-way left swept by name.
 * A twin already gone took its jobs with it: nothing to release.
 */
async function teardownThroughTwin(
  store: StateStore,
  state: TestbedState,
  ctx: TestbedContext,
): Promise<TeardownResult> {
  let releasedJobs = 0;
  if (await runningTwin(store.dir)) {
    const session = await openSession(state.config, {
      logger: ctx.logger,
      source: state.configSource,
      stateDir: store.dir,
    });
    try {
      releasedJobs = await ctx.progress.step('Release the reservations', (step) =>
        releaseJobs(session, store, state, (site, uid) => step.status(`${site}: job ${uid} released`)),
      );
    } finally {
      await session.close();
    }
  }
  await ctx.progress.step('Stop the twin', () => stopTwin(store.dir));
  const network = await teardownNetwork(state);
  await store.destroy();
  return { testbed: state.name, found: true, releasedJobs, network };
}

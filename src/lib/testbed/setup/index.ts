// What the setup, status and teardown commands do, behind their flags and rendering.
import type { LoadedConfig } from '../config/load.js';
import { TestbedError } from '../errors.js';
import type { Job } from '../g5k/types.js';
import type { Logger } from '../log.js';
import type { SshProbe } from '../netns/ssh-check.js';
import { type NetworkTeardown, teardownNetwork } from '../netns/teardown.js';
import { buildPlan, type Plan } from '../planner/plan.js';
import { countStates, type Progress } from '../progress.js';
import { openSession, type ProviderSession } from '../provider/session.js';
import { newState, StateStore, type TestbedState } from '../state/store.js';
import type { VmBoot } from './boot-tracker.js';
import { runEmulatedStage } from './emulated-stage.js';
import { buildLocalNetwork, checkLocalNetworkPossible, localTopology, probeHosts } from './local-network.js';
import { assignedSites, candidateSites, readReference } from './reference.js';
import { discovered, jobRecords, releaseJobs, resolvePending, submitJobs, waitForJobs } from './reserve.js';
import { probeServiceNodes, type ServiceProbe, startLocalServiceNodes } from './service-nodes.js';
import { runVmStage } from './vm-stage.js';

export interface ServiceContext {
  logger: Logger;
  progress: Progress;
}

/** The plan for a config, from the API's reference documents; reserves and records nothing. */
export async function planTestbed(loaded: LoadedConfig, ctx: ServiceContext): Promise<Plan> {
  const session = await openSession(loaded.config, { logger: ctx.logger, source: loaded.source });
  try {
    return await planWith(session, loaded, ctx);
  } finally {
    await session.close();
  }
}

async function planWith(session: ProviderSession, loaded: LoadedConfig, ctx: ServiceContext): Promise<Plan> {
  const refs = await ctx.progress.step(`Read the reference inventory at ${session.apiUrl}`, () =>
    readReference(session, loaded.config, loaded.source),
  );
  return buildPlan(loaded.config, candidateSites(loaded.config, refs), loaded.source);
}

export interface SetupResult {
  hosts: SshProbe[];
  services: ServiceProbe[];
  /** Each VM's boot: answering SSH in the deployment environment, or failed with a reason. */
  vms: VmBoot[];
  accel: 'kvm' | 'tcg' | null;
  runtime: 'qemu' | 'emulated';
  /** Emulated hosts that answered SSH (runtime: emulated). */
  emulatedHosts: number;
  testbed: string;
  provider: string;
  apiUrl: string;
  phase: TestbedState['phase'];
  resumed: boolean;
  jobs: { site: string; uid: number; state: string }[];
  discovered: TestbedState['discovered'];
  plan: Plan;
}

export interface SetupOptions {
  waitTimeoutMs: number;
  /** Stop after reserving and discovering; build nothing on this machine. */
  reserveOnly?: boolean;
  /** Launch the plan's VMs and wait for them; false stops once services (and emulated hosts) answer. */
  vms?: boolean;
  /** Power resets of a VM that failed to come up, before it is reported failed (default 1). */
  retries?: number;
}

/** Whether setup builds the local testbed network (namespaces, sshd) on this machine. */
function buildsLocalNetwork(config: TestbedState['config'], opts: SetupOptions): boolean {
  return config.provider === 'local' && !opts.reserveOnly;
}

/**
 * Reserve → wait → discover, resuming from whatever the state already records. On a job that
 * ends in error the state is kept (teardown releases the rest); on a refused reservation the
 * jobs submitted by this run are cancelled again.
 */
export async function setupTestbed(
  loaded: LoadedConfig,
  opts: SetupOptions,
  ctx: ServiceContext,
): Promise<SetupResult> {
  // Checked before anything is reserved, so a non-root run changes nothing.
  if (buildsLocalNetwork(loaded.config, opts)) checkLocalNetworkPossible();
  const store = new StateStore(loaded.config.name);
  await store.lock('setup');
  let session: ProviderSession | null = null;
  let existing: TestbedState | null = null;
  let state: TestbedState | null = null;
  try {
    existing = await store.read();
    if (existing && existing.provider !== loaded.config.provider) {
      throw new TestbedError(
        `testbed ${existing.name} was set up with the ${existing.provider} provider; tear it down before switching`,
      );
    }
    state = existing ?? newState(loaded.config, loaded.source);
    return await reserveAndDiscover(store, state, existing !== null, loaded.source, opts, ctx, (s) => {
      session = s;
    });
  } catch (e) {
    // A first setup that failed holding nothing (refused, unreachable, bad plan) leaves nothing
    // behind, not even its state directory.
    if (existing === null && state && jobRecords(state).length === 0) {
      await (session as ProviderSession | null)?.close();
      session = null;
      await store.destroy();
    }
    throw e;
  } finally {
    await (session as ProviderSession | null)?.close();
    await store.unlock();
  }
}

async function reserveAndDiscover(
  store: StateStore,
  state: TestbedState,
  resumed: boolean,
  source: string,
  opts: SetupOptions,
  ctx: ServiceContext,
  opened: (s: ProviderSession) => void,
): Promise<SetupResult> {
  // Resume uses the config recorded at first setup; a changed file needs a teardown first.
  const config = state.config;
  const session = await openSession(config, { logger: ctx.logger, source, stateDir: store.dir });
  opened(session);
  const refs = await ctx.progress.step(`Read the reference inventory at ${session.apiUrl}`, () =>
    readReference(session, config, source),
  );
  const preliminary = buildPlan(config, candidateSites(config, refs), source);
  state.apiUrl = session.apiUrl;
  await resolvePending(session, store, state);
  await ctx.progress.step(`Reserve ${preliminary.sites.length} site(s)`, async (step) => {
    await submitJobs(session, store, state, preliminary, {
      onSubmitted: (site, job) => step.status(`${site}: job ${job.uid} ${job.state}`),
    });
  });
  const latest = new Map<string, Job>();
  const jobs = await ctx.progress
    .step('Wait for the jobs to run', (step) =>
      waitForJobs(session, state, opts.waitTimeoutMs, {
        onPoll: (site, job) => {
          latest.set(site, job);
          step.status(countStates([...latest.values()].map((j) => j.state)));
        },
      }),
    )
    .catch(async (e) => {
      state.phase = 'failed';
      await store.write(state);
      if (e instanceof TestbedError) {
        throw new TestbedError(
          `${e.message}; run 'kabootstrap teardown' to release what was reserved`,
          e.status,
        );
      }
      throw e;
    });
  state.phase = 'reserved';
  state.discovered = discovered(jobs);
  await store.write(state);
  const plan = await ctx.progress.step('Discover hosts, VLANs and subnets; plan on them', async () =>
    buildPlan(
      config,
      assignedSites(
        config,
        refs,
        state.discovered,
        preliminary.sites.map((s) => ({ name: s.name, vms: s.vms.length })),
      ),
      source,
    ),
  );
  state.plan = plan;
  state.phase = 'discovered';
  await store.write(state);
  let hosts: SshProbe[] = [];
  let services: ServiceProbe[] = [];
  let vms: VmBoot[] = [];
  let accel: 'kvm' | 'tcg' | null = null;
  let emulatedHosts = 0;
  if (buildsLocalNetwork(config, opts)) {
    const topo = localTopology(state, plan, source);
    const emulatedIps = new Set(topo.namespaces.filter((n) => n.role === 'emulated').map((n) => n.ip));
    state.phase = 'network';
    await store.write(state);
    await buildLocalNetwork(
      store,
      state,
      topo,
      ctx.progress,
      plan.totals.vms + plan.totals.hosts + plan.totals.serviceNodes,
    );
    hosts = await ctx.progress.step('Check every host answers SSH', async () =>
      // emulated hosts are checked once their group runs, after the service nodes
      (await probeHosts(store, state)).filter((h) => !emulatedIps.has(h.host)),
    );
    const down = hosts.filter((h) => !h.ok);
    if (down.length) {
      throw new TestbedError(
        `${down.length} host(s) do not answer SSH: ${down.map((h) => `${h.host} (${h.detail})`).join(', ')}`,
      );
    }
    services = await startLocalServiceNodes(store, state, plan, topo, source, ctx.progress, ctx.logger);
    const silent = services.filter((s) => !s.ok);
    if (silent.length) {
      throw new TestbedError(
        `${silent.length} service node(s) do not answer: ${silent.map((s) => `${s.name} (${s.detail})`).join(', ')}`,
      );
    }
    if (config.vms.runtime === 'emulated') {
      const stage = await runEmulatedStage(
        store,
        state,
        plan,
        topo,
        { vms: opts.vms !== false, retries: opts.retries ?? 1 },
        ctx.progress,
        ctx.logger,
      );
      vms = stage.vms;
      emulatedHosts = stage.hosts;
    } else if (opts.vms !== false) {
      const stage = await runVmStage(store, state, plan, topo, ctx.progress, ctx.logger);
      vms = stage.vms;
      accel = stage.accel;
    }
    state.phase = 'ready';
    await store.write(state);
  }
  return {
    hosts,
    services,
    vms,
    accel,
    runtime: config.vms.runtime,
    emulatedHosts,
    testbed: config.name,
    provider: config.provider,
    apiUrl: session.apiUrl,
    phase: state.phase,
    resumed,
    jobs: Object.entries(jobs).map(([site, j]) => ({ site, uid: j.uid, state: j.state })),
    discovered: state.discovered,
    plan,
  };
}

export interface StatusResult {
  testbed: string;
  provider: string;
  phase: TestbedState['phase'];
  apiUrl: string | null;
  jobs: { site: string; uid: number | null; state: string; assignedNodes: number }[];
  totals: Plan['totals'] | null;
  /** Local testbed: does every host answer SSH (a real handshake and command)? */
  hosts: SshProbe[];
  services: ServiceProbe[];
  resources: { kind: string; key: string; status: string }[];
}

export async function testbedStatus(name: string, ctx: ServiceContext): Promise<StatusResult | null> {
  const store = new StateStore(name);
  const state = await store.read();
  if (!state) return null;
  const session = await openSession(state.config, {
    logger: ctx.logger,
    source: state.configSource,
    stateDir: store.dir,
  });
  try {
    const jobs = await Promise.all(
      jobRecords(state).map(async (r) => {
        if (r.status === 'creating')
          return { site: r.site!, uid: null, state: 'submitting', assignedNodes: 0 };
        const job = await session.client.getJob(r.site!, r.data.uid as number);
        return { site: r.site!, uid: job.uid, state: job.state, assignedNodes: job.assigned_nodes.length };
      }),
    );
    const [hosts, services] = await Promise.all([probeHosts(store, state), probeServiceNodes(state)]);
    return {
      services,
      testbed: state.name,
      provider: state.provider,
      phase: state.phase,
      hosts,
      apiUrl: state.provider === 'g5k' ? state.apiUrl : null,
      jobs,
      totals: state.plan?.totals ?? null,
      resources: state.resources.map((r) => ({ kind: r.kind, key: r.key, status: r.status })),
    };
  } finally {
    await session.close();
  }
}

export interface TeardownResult {
  testbed: string;
  found: boolean;
  releasedJobs: number;
  network: NetworkTeardown;
}

/** Releases everything the state records, then removes the state. Idempotent. */
export async function teardownTestbed(name: string, ctx: ServiceContext): Promise<TeardownResult> {
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

// `setup`: builds a testbed as named phases, in order, each resuming from what the state records
// (each module says how): reserve (submit the jobs and wait for them), discover and plan; then on
// g5k reinstall, KaVLAN, then VM hosts and service nodes over SSH; on the local provider machines
// (its network), service nodes, VM hosts and VMs. Holds the lock, the first-run cleanup and the result the command renders.
import type { LoadedConfig } from '../../config/load.js';
import { InputError, TestbedError } from '../../errors.js';
import { type JobResources, jobResources } from '../../g5k/job-resources.js';
import type { SshProbe } from '../../netns/ssh-check.js';
import type { Plan } from '../../planner/plan.js';
import { routeSsh } from '../../provider/gateway.js';
import { openSession, type ProviderSession, throughTwin } from '../../provider/session.js';
import { stopTwin } from '../../provider/twin-process.js';
import type { VmBoot } from '../../runtime/boot-tracker.js';
import type { RuntimeName } from '../../runtime/runtime.js';
import { KnownHosts } from '../../ssh/known-hosts.js';
import { newState, StateStore, type TestbedState } from '../../state/store.js';
import type { TestbedContext } from '../context.js';
import { jobRecords } from '../reserve.js';
import type { ServiceProbe } from '../service-nodes.js';
import { isGrid5000Api } from './addresses.js';
import { recordPhase, type SetupContext, type SetupOptions } from './context.js';
import { joinVlans, type VlanOutcome } from './kavlan.js';
import { buildMachines, buildsLocalMachines, checkMachinesPossible, twinMachines } from './machines.js';
import { runSshPhases } from './over-ssh.js';
import { discoverAndPlan } from './plan.js';
import type { HostPrepResult } from './prepare-hosts.js';
import { type MachineOutcome, reinstallMachines } from './reinstall.js';
import { reserve } from './reserve.js';
import { startServiceNodes } from './service-nodes.js';
import { localAccess, sshAccess } from './vm-access.js';
import { prepareVmHosts } from './vm-hosts.js';
import { launchVms } from './vms.js';

export type { SetupOptions } from './context.js';
export { setupExitCode } from './outcome.js';

/** What the reinstall phase lost and how the plan was changed (provider g5k). */
export interface LossReport {
  /** VM hosts still KO after their redeploys. */
  lostHosts: string[];
  replacedServiceNodes: { site: string; lost: string; by: string | null }[];
  moved: { vm: string; from: string; to: string }[];
  /** VMs left out of the plan (no room on the site's other hosts), with the host they were planned on. */
  unplaced: { vm: string; host: string }[];
}

export interface SetupResult {
  hosts: SshProbe[];
  /** Provider g5k: each VM host prepared over SSH (bridge, disk, packages, KVM). */
  preparedHosts: HostPrepResult[];
  services: ServiceProbe[];
  /** Each VM's boot: answering SSH in the deployment environment, or failed with a reason. */
  vms: VmBoot[];
  accel: 'kvm' | 'tcg' | null;
  runtime: RuntimeName;
  /** Emulated hosts that answered SSH (runtime: emulated). */
  emulatedHosts: number;
  testbed: string;
  provider: string;
  apiUrl: string;
  phase: TestbedState['phase'];
  resumed: boolean;
  /** One per site and queue, with what that job was given. */
  jobs: { site: string; queue: string; uid: number; state: string; resources: JobResources }[];
  discovered: TestbedState['discovered'];
  /** Provider g5k: each reserved machine's reinstall (empty otherwise). */
  machines: MachineOutcome[];
  loss: LossReport | null;
  /** Provider g5k: each site's KaVLAN, its DHCP stopped and its members checked. */
  vlans: VlanOutcome[];
  plan: Plan;
}

/**
 * Runs the phases, resuming from whatever the state already records. On a job that ends in
 * error the state is kept (teardown releases the rest); on a refused reservation the jobs
 * submitted by this run are cancelled again.
 */
export async function setupTestbed(
  loaded: LoadedConfig,
  opts: SetupOptions,
  ctx: TestbedContext,
): Promise<SetupResult> {
  // Checked before anything is reserved, so a non-root run changes nothing.
  checkMachinesPossible(loaded.config, opts);
  if (opts.until && loaded.config.provider !== 'g5k' && !throughTwin(loaded.config)) {
    throw new InputError(
      `--until ${opts.until}: the local provider builds its machines in one go; only provider g5k (or local.via: twin) stops after a phase`,
    );
  }
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
    // Resume uses the config recorded at first setup; a changed file needs a teardown first.
    session = await openSession(state.config, {
      logger: ctx.logger,
      source: loaded.source,
      stateDir: store.dir,
      startTwin: { file: loaded.file, machines: twinMachines(opts) },
      needsMachines: !opts.reserveOnly,
    });
    await routeSsh(state.config, loaded.source, KnownHosts.at(store.layout.knownHosts));
    return await runPhases(
      {
        store,
        state,
        session,
        source: loaded.source,
        options: opts,
        logger: ctx.logger,
        progress: ctx.progress,
      },
      existing !== null,
    );
  } catch (e) {
    // A first setup that failed holding nothing (refused, unreachable, bad plan) leaves nothing
    // behind, not even its state directory.
    if (existing === null && state && jobRecords(state).length === 0) {
      await session?.close();
      session = null;
      await stopTwin(store.dir);
      await store.destroy();
    }
    throw e;
  } finally {
    await session?.close();
    await store.unlock();
  }
}

async function runPhases(ctx: SetupContext, resumed: boolean): Promise<SetupResult> {
  const { state, options } = ctx;
  const config = state.config;
  const reservation = await reserve(ctx);
  let plan = await discoverAndPlan(ctx, reservation);
  let machineOutcomes: MachineOutcome[] = [];
  let loss: LossReport | null = null;
  let vlans: VlanOutcome[] = [];
  let preparedHosts: HostPrepResult[] = [];
  let services: ServiceProbe[] = [];
  let vms: VmBoot[] = [];
  let accel: 'kvm' | 'tcg' | null = null;
  let emulatedHosts = 0;
  // On g5k and through a twin (the local provider otherwise builds its machines below), the
  // reserved machines are reinstalled, put into the VLAN, then prepared and given their services over SSH, then the
  // runtime launches the VMs on them over SSH.
  if (ctx.session.machinesOverSsh && !options.reserveOnly) {
    const reinstalled = await reinstallMachines({ ...ctx, plan }, reservation);
    machineOutcomes = reinstalled.machines;
    const r = reinstalled.replan;
    loss = {
      lostHosts: r.lostHosts,
      replacedServiceNodes: r.replacedServiceNodes,
      moved: r.moved,
      unplaced: r.unplaced.map((vm) => ({ vm: vm.name, host: vm.host })),
    };
    ({ plan, vlans } = await joinVlans({ ...ctx, plan: reinstalled.plan }, reservation.refs));
    const overSsh = await runSshPhases({ ...ctx, plan }, options.until ?? 'services');
    ({ preparedHosts, services } = overSsh);
    if (options.until === undefined && options.vms !== false) {
      const access = sshAccess(
        ctx.store.layout,
        config.name,
        overSsh.addresses,
        preparedHosts,
        !isGrid5000Api(ctx.session.apiUrl),
      );
      const built = { ...ctx, plan, topology: null, access };
      const vmHosts = await prepareVmHosts(built);
      try {
        vms = await launchVms(built, vmHosts);
      } finally {
        vmHosts.close();
      }
      ({ accel, emulatedHosts } = vmHosts);
      await recordPhase(ctx, 'ready');
    }
  }
  let hosts: SshProbe[] = [];
  // Past the plan, everything is built on the local provider's machines; on g5k (where nothing
  // is built by setup yet) and with --reserve-only, setup ends here.
  if (buildsLocalMachines(config, options)) {
    const machines = await buildMachines({ ...ctx, plan });
    hosts = machines.hosts;
    const built = {
      ...ctx,
      plan,
      topology: machines.topology,
      access: localAccess(ctx.store.layout, machines.topology),
    };
    services = await startServiceNodes(built);
    const vmHosts = await prepareVmHosts(built);
    try {
      vms = await launchVms(built, vmHosts);
    } finally {
      vmHosts.close();
    }
    ({ accel, emulatedHosts } = vmHosts);
    await recordPhase(ctx, 'ready');
  }
  return {
    hosts,
    preparedHosts,
    services,
    vms,
    accel,
    runtime: config.vms.runtime,
    emulatedHosts,
    testbed: config.name,
    provider: config.provider,
    apiUrl: ctx.session.apiUrl,
    phase: state.phase,
    resumed,
    jobs: reservation.jobs.map(({ site, job }) => ({
      site,
      queue: job.queue,
      uid: job.uid,
      state: job.state,
      resources: jobResources(job),
    })),
    discovered: state.discovered,
    machines: machineOutcomes,
    loss,
    vlans,
    plan,
  };
}

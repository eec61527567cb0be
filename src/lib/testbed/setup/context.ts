// What setup's phases share: the state store and the state it writes after every change (what
// a resumed setup starts from), the provider session, the options and where to report. Later
// phases also get what earlier ones produced: the plan, then the local topology.
import type { Logger } from '../../log.js';
import type { Topology } from '../../netns/topology.js';
import type { Plan } from '../../planner/plan.js';
import type { Progress } from '../../progress.js';
import type { ProviderSession } from '../../provider/session.js';
import type { VmHostAccess } from '../../runtime/runtime.js';
import type { StateStore, TestbedState } from '../../state/store.js';

export interface SetupOptions {
  waitTimeoutMs: number;
  /** Stop after reserving and discovering; build nothing on this machine. */
  reserveOnly?: boolean;
  /** Launch the plan's VMs and wait for them; false stops once services (and emulated hosts) answer. */
  vms?: boolean;
  /** Power resets of a VM that failed to come up, before it is reported failed (default 1). */
  retries?: number;
  /** Provider g5k: the last phase to run (default: every phase built). */
  until?: 'vlan' | 'hosts' | 'services';
}

export interface SetupContext {
  store: StateStore;
  /** Its `config` is the one recorded at first setup: a changed file needs a teardown first. */
  state: TestbedState;
  session: ProviderSession;
  /** The config file's name, for messages. */
  source: string;
  options: SetupOptions;
  progress: Progress;
  logger: Logger;
}

/** From the plan phase on. */
export interface PlannedContext extends SetupContext {
  plan: Plan;
}

/** What the SSH-only phases (host preparation, service nodes over SSH) need: no API session. */
export type SshPhaseContext = Pick<PlannedContext, 'store' | 'state' | 'plan' | 'progress' | 'logger'>;

/** From the machines phase on: the local testbed's namespaces, bridges and addresses. */
export interface MachinesContext extends PlannedContext {
  topology: Topology;
}

/** The VM phases, on either provider: how they reach the hosts and service nodes. */
export interface VmPhasesContext extends PlannedContext {
  topology: Topology | null;
  access: VmHostAccess;
}

/** Records how far setup got, in the state. */
export async function recordPhase(ctx: SetupContext, phase: TestbedState['phase']): Promise<void> {
  ctx.state.phase = phase;
  await ctx.store.write(ctx.state);
}

// What every VM runtime (real QEMU VMs, emulated VMs) provides, so that setup, deploy, reboot and
// put never ask which runtime they run on: setup's two last phases (prepare the VM hosts, then
// launch the VMs on them), power control of VMs through their host, the timings and broadcast
// protocol the deployment engine must use with its nodes, and how a local twin lays out hosts.
// `runtimeFor` (index.ts) picks the implementation; it is the only place that reads its name.
import { eachLimited } from '../concurrency.js';
import type { Logger } from '../log.js';
import type { HostLayout, Topology } from '../netns/topology.js';
import type { Plan } from '../planner/plan.js';
import type { Progress } from '../progress.js';
import type { SshSession } from '../ssh/session.js';
import { deployInitrdPath, deployKernelPath } from '../state/layout.js';
import type { StateStore, TestbedState } from '../state/store.js';
import type { VmBoot } from './boot-tracker.js';

export type RuntimeName = TestbedState['config']['vms']['runtime'];

/** on, off, reset (the VM reboots at once), cycle (off then on: a reset may not clear a wedged VM). */
export type PowerAction = 'on' | 'off' | 'reset' | 'cycle';

/** One VM's power outcome; the reason says which host and what failed. */
export type PowerOutcome = { ok: true } | { ok: false; reason: string };

/** A VM host reached over SSH, for power control of its VMs. */
export interface PowerHost {
  /** Its FQDN, for messages. */
  name: string;
  session: SshSession;
}

/**
 * How the VM phases reach what the earlier phases built, on either provider: the local twin's
 * namespaces, or reinstalled machines prepared over SSH.
 */
export interface VmHostAccess {
  /** Each VM host's FQDN → the address SSH reaches it at. */
  hostAddresses: ReadonlyMap<string, string>;
  /** The host's interface facing the VMs, for the bridge to take; null when host preparation bridged it. */
  uplink: string | null;
  /** KVM or TCG as host preparation found it on every host; null: tried on this machine. */
  accel: 'kvm' | 'tcg' | null;
  /** The bridge on each host that faces the VMs (QEMU's taps join it, emulated VMs' addresses go on it). */
  bridge: string;
  /**
   * Puts this package and a node binary on a host reached over SSH (once per package build) and
   * says where they are there; absent where hosts share this machine's files (the local twin).
   */
  installPackage?(host: string, session: SshSession): Promise<{ node: string; packageDir: string }>;
  /** Puts a file under a service node's HTTP root, at `path` (relative to it, as in its URLs). */
  putServiceFile(serviceNode: { host: string; site: string }, path: string, file: string): Promise<void>;
}

/** What setup's VM phases work on: the testbed as built by the earlier phases. */
export interface RuntimeContext {
  store: StateStore;
  state: TestbedState;
  plan: Plan;
  /** The local twin's namespaces; null for machines reached over SSH only (provider g5k). */
  topology: Topology | null;
  access: VmHostAccess;
  progress: Progress;
  logger: Logger;
}

/** The VM-hosts phase's outcome: hosts ready to take their VMs. */
export interface VmHosts {
  /** The accelerator QEMU VMs run with; null when the runtime chose none. */
  accel: 'kvm' | 'tcg' | null;
  /** Emulated hosts that answered SSH (0 on a runtime whose hosts setup checked earlier). */
  emulatedHosts: number;
  /** The VMs phase: power on the plan's VMs, follow their boots, wait until each answers SSH. */
  launchVms(opts: { retries: number }): Promise<VmBoot[]>;
  /** Closes what the phases kept open (SSH sessions to the hosts). */
  close(): void;
}

/** How the deployment engine, reboot and put must treat this runtime's nodes. */
export interface RuntimeTuning {
  /** Emulated boots run at the model's time scale: so do the pauses between reboot windows. */
  timeScale: number;
  /** After a reboot order, an answer within this long comes from the system going down (the driver). */
  rebootGraceMs: number;
  /** Between SSH probes of a rebooting node (the driver). */
  probeIntervalMs: number;
  /** `kabootstrap reboot`: a node still answering this soon after the order has not gone down yet. */
  firstProbeDelayMs: number;
  /**
   * The reboot timeout when `n` nodes reboot at once (in every batch of the deployment), from the
   * engine's standard one; absent: the standard.
   */
  rebootTimeoutMs?: (n: number, standardMs: number) => number;
  /** The broadcast protocol the nodes' agent speaks and how a receiver is treated. */
  broadcast: {
    /** The emulated agent speaks the resumable protocol; the busybox agent only the plain chain. */
    resumable: boolean;
    /** A node that does not drain for this long is cut out (absent: the protocol's default). */
    stallMs?: number;
    /** Each receiver's ring buffer (absent: the protocol's default). */
    ringBytes?: number;
  };
  /** Why BroadcastEnvTaktuk cannot run on this runtime's deployment environment; absent: it can. */
  taktukRefusal?: string;
  /** The fastest deployment of an image of this size the boot model allows; absent: no model. */
  lowerBoundMs?: (imageBytes: number) => number;
}

/** What a local twin of a testbed with this runtime looks like on this machine. */
export interface LocalTwin {
  /** One namespace (with its sshd) per VM host, or one per site playing all of its hosts. */
  hostLayout: HostLayout;
  /** At most this many host namespaces a local testbed of this runtime runs; absent: no limit. */
  maxHosts?: number;
}

export interface VmRuntime {
  readonly name: RuntimeName;
  readonly tuning: RuntimeTuning;
  readonly localTwin: LocalTwin;
  /** Debian packages a VM host needs for this runtime (checked, and installed when missing, over SSH). */
  readonly hostPackages: readonly string[];
  /**
   * The VM-hosts phase: what the hosts need before their VMs can start. `vms` false: setup stops
   * after this phase (a runtime may then skip what only the VMs need).
   */
  prepareHosts(ctx: RuntimeContext, opts: { vms: boolean }): Promise<VmHosts>;
  /** Power `vms` (names) of one host through its SSH session; one outcome per VM. */
  power(host: PowerHost, action: PowerAction, vms: readonly string[]): Promise<Map<string, PowerOutcome>>;
}

/** VMs (or anything placed on a host) grouped by host, in their order: power and launches go host by host. */
export function byHost<T extends { host: string }>(items: Iterable<T>): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const x of items) {
    const list = m.get(x.host);
    if (list) list.push(x);
    else m.set(x.host, [x]);
  }
  return m;
}

/** Puts a deployment environment's kernel and initrd on every planned service node, 8 at once. */
export async function putDeployEnvironment(
  ctx: Pick<RuntimeContext, 'plan' | 'access'>,
  files: { kernel: string; initrd: string },
): Promise<void> {
  const serviceNodes = ctx.plan.sites.flatMap((site) =>
    site.serviceNodes.map((sn) => ({ host: sn.host, site: site.name })),
  );
  await eachLimited(serviceNodes, 8, async (sn) => {
    await ctx.access.putServiceFile(sn, deployKernelPath, files.kernel);
    await ctx.access.putServiceFile(sn, deployInitrdPath, files.initrd);
  });
}

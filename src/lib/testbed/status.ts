// `status`: the whole truth about a testbed, for both providers — its jobs live from the API, then,
// probed live within one deadline, every machine (VM hosts and service node machines: SSH, a real
// handshake and command), every service node's control endpoint (with the testbed's secret) and
// every VM (SSH in its system), each judged against what setup recorded. `probe: false` gives the
// recorded state only, without the API or the network.
import { readFile } from 'node:fs/promises';
import { machineAddresses } from '../nodes/targets.js';
import type { Plan } from '../planner/plan.js';
import { routeSsh } from '../provider/gateway.js';
import { openSession } from '../provider/session.js';
import { KnownHosts } from '../ssh/known-hosts.js';
import { readControlSecret } from '../state/control-secret.js';
import { serviceNodesOf } from '../state/service-nodes.js';
import { StateStore, type TestbedState } from '../state/store.js';
import { readVmRecord } from '../state/vm-record.js';
import type { TestbedContext } from './context.js';
import { jobRecords, recordGroup } from './reserve.js';
import { probeService } from './service-nodes.js';
import {
  classifyMachine,
  classifyVm,
  countByState,
  type MachineState,
  machineStates,
  type ServiceState,
  troubles,
  type VmState,
  vmStates,
} from './status-model.js';
import {
  DEFAULT_PROBE_TIMEOUT_MS,
  type ProbeAnswer,
  probeAll,
  probeShell,
  probeVmSystem,
} from './status-probe.js';

export interface StatusOptions {
  /** False: the recorded state only (no API, no probes). */
  probe: boolean;
  /** The whole live probe's deadline. */
  timeoutMs: number;
  /** SSH probes in flight at once. */
  window?: number;
}

export const DEFAULT_STATUS_TIMEOUT_S = 120;
export const DEFAULT_STATUS_WINDOW = 256;

export interface JobStatus {
  site: string;
  uid: number | null;
  /** Only when the job's record names one. */
  queue?: string;
  /** Live from the API; `recorded` with --no-probe. */
  state: string;
  /** The nodes the API says the job holds; null with --no-probe. */
  assignedNodes: string[] | null;
}

export interface MachineStatus {
  name: string;
  role: 'host' | 'service';
  site: string;
  /** Where the probe reached it. */
  address: string;
  state: MachineState;
  detail: string;
  ms: number | null;
}

export interface ServiceStatus {
  name: string;
  site: string | null;
  url: string;
  state: ServiceState;
  detail: string;
}

export interface VmStatus {
  name: string;
  ip: string;
  mac: string;
  host: string;
  site: string;
  state: VmState;
  detail: string;
}

export interface StatusResult {
  testbed: string;
  provider: string;
  phase: TestbedState['phase'];
  apiUrl: string | null;
  /** Whether the states come from live probes (else: as recorded). */
  probed: boolean;
  /** How long the probes took. */
  probeMs: number | null;
  jobs: JobStatus[];
  totals: Plan['totals'] | null;
  machines: MachineStatus[];
  machineCounts: Record<MachineState, number>;
  services: ServiceStatus[];
  vmCounts: Record<VmState, number>;
  /** Every VM of the plan (the text output lists only those not up). */
  vms: VmStatus[];
  resources: { kind: string; key: string; status: string }[];
  /** What is recorded up and does not answer: empty when everything answers. */
  troubles: string[];
}

export async function testbedStatus(
  name: string,
  opts: StatusOptions,
  ctx: TestbedContext,
): Promise<StatusResult | null> {
  const store = new StateStore(name);
  const state = await store.read();
  if (!state) return null;
  const t0 = Date.now();
  const jobs = opts.probe
    ? await ctx.progress.step(`Read ${jobRecords(state).length} job(s) from the API`, () =>
        liveJobs(store, state, ctx),
      )
    : recordedJobs(state);
  const deadline = Date.now() + opts.timeoutMs;
  if (opts.probe) await routeSsh(state.config, state.configSource, KnownHosts.at(store.layout.knownHosts));
  const probe = opts.probe
    ? {
        privateKey: await readFile(store.layout.ssh.clientKey).catch(() => null),
        knownHosts: KnownHosts.at(store.layout.knownHosts),
        deadline,
        window: opts.window ?? DEFAULT_STATUS_WINDOW,
        probeTimeoutMs: DEFAULT_PROBE_TIMEOUT_MS,
      }
    : null;

  const machines = planMachines(state);
  const expectedUp = state.phase === 'network' || state.phase === 'ready';
  const notSetUp = `not set up (phase ${state.phase})`;
  const machineAnswers =
    probe && expectedUp
      ? await ctx.progress.step(`Probe ${machines.length} machine(s) over SSH`, (step) =>
          probeOrSay(
            machines,
            probe,
            (done, total) => step.status(`${done}/${total} probed`),
            (_m, s, t) => probeShell(s, t),
          ),
        )
      : machines.map(() => null);
  const machineStatus = machines.map((m, i) => ({
    ...m,
    ...classifyMachine(expectedUp, probe !== null, machineAnswers[i], notSetUp),
    ms: machineAnswers[i]?.ms ?? null,
  }));

  const services = await probeServices(store, state, probe !== null);

  const vms = (state.plan?.sites ?? []).flatMap((s) => s.vms);
  const record = await readVmRecord(store.layout.vmsFile);
  const recorded = new Map((record?.vms ?? []).map((v) => [v.name, v]));
  // the VMs recorded up first: the deadline then cuts short the ones that failed at setup anyway
  const launched = vms
    .filter((v) => recorded.has(v.name))
    .sort((a, b) => rankOf(recorded.get(a.name)!.outcome) - rankOf(recorded.get(b.name)!.outcome));
  const vmAnswers = new Map<string, ProbeAnswer | null>();
  if (probe && launched.length) {
    const answers = await ctx.progress.step(`Probe ${launched.length} VM(s) over SSH`, (step) =>
      probeOrSay(
        launched.map((v) => ({ ...v, address: v.ip })),
        probe,
        (done, total) => step.status(`${done}/${total} probed`),
        (v, s, t) => probeVmSystem(v, s, t),
      ),
    );
    for (const [i, v] of launched.entries()) vmAnswers.set(v.name, answers[i]);
  }
  const vmStatus: VmStatus[] = vms.map((v) => ({
    name: v.name,
    ip: v.ip,
    mac: v.mac,
    host: v.host,
    site: v.site,
    ...classifyVm(recorded.get(v.name), probe !== null, vmAnswers.get(v.name) ?? null),
  }));
  const vmCounts = countByState(vmStates, vmStatus);
  return {
    testbed: state.name,
    provider: state.provider,
    phase: state.phase,
    apiUrl: state.provider === 'g5k' ? state.apiUrl : null,
    probed: probe !== null,
    probeMs: probe ? Date.now() - t0 : null,
    jobs,
    totals: state.plan?.totals ?? null,
    machines: machineStatus,
    machineCounts: countByState(machineStates, machineStatus),
    services,
    vmCounts,
    vms: vmStatus,
    resources: state.resources.map((r) => ({ kind: r.kind, key: r.key, status: r.status })),
    troubles: troubles({ machines: machineStatus, services, vmCounts, probed: probe !== null }),
  };
}

const rankOf = (outcome: 'up' | 'failed') => (outcome === 'up' ? 0 : 1);

/** The probes, or, without the testbed's key, every item answered with why it was not probed. */
function probeOrSay<T extends { address: string }>(
  items: T[],
  probe: {
    privateKey: Buffer | null;
    knownHosts: KnownHosts;
    deadline: number;
    window: number;
    probeTimeoutMs: number;
  },
  onProgress: (done: number, total: number) => void,
  run: Parameters<typeof probeAll<T>>[2],
): Promise<(ProbeAnswer | null)[]> {
  const { privateKey } = probe;
  if (!privateKey) {
    return Promise.resolve(items.map(() => ({ ok: false, detail: 'the testbed has no SSH key', ms: 0 })));
  }
  return probeAll(items, { ...probe, privateKey, onProgress }, run, (i) => ({ host: i.address }));
}

/** Each job live from the API: its state and the nodes it holds. */
async function liveJobs(store: StateStore, state: TestbedState, ctx: TestbedContext): Promise<JobStatus[]> {
  const session = await openSession(state.config, {
    logger: ctx.logger,
    source: state.configSource,
    stateDir: store.dir,
  });
  try {
    return await Promise.all(
      jobRecords(state).map(async (r): Promise<JobStatus> => {
        const queue = { queue: recordGroup(r).queue };
        if (r.status === 'creating')
          return { site: r.site!, uid: null, ...queue, state: 'submitting', assignedNodes: [] };
        const job = await session.client.getJob(r.site!, r.data.uid as number);
        return { site: r.site!, uid: job.uid, ...queue, state: job.state, assignedNodes: job.assigned_nodes };
      }),
    );
  } finally {
    await session.close();
  }
}

function recordedJobs(state: TestbedState): JobStatus[] {
  return jobRecords(state).map((r) => ({
    site: r.site!,
    uid: typeof r.data.uid === 'number' ? r.data.uid : null,
    ...(typeof r.data.queue === 'string' ? { queue: r.data.queue } : {}),
    state: r.status === 'creating' ? 'submitting' : 'recorded',
    assignedNodes: null,
  }));
}

/**
 * The plan's machines, VM hosts then service node machines, each with the address that reaches
 * it (see machineAddresses); a machine never reinstalled by its name.
 */
function planMachines(state: TestbedState): Omit<MachineStatus, 'state' | 'detail' | 'ms'>[] {
  if (!state.plan) return [];
  const ips = machineAddresses(state);
  const address = (fqdn: string) => ips.get(fqdn) ?? fqdn;
  return state.plan.sites.flatMap((s) => [
    ...s.hosts.map((h) => ({ name: h.host, role: 'host' as const, site: s.name, address: address(h.host) })),
    ...s.serviceNodes.map((n) => ({
      name: n.host,
      role: 'service' as const,
      site: s.name,
      address: address(n.host),
    })),
  ]);
}

/** The service nodes setup started: their control endpoints' health, with the testbed's secret. */
async function probeServices(
  store: StateStore,
  state: TestbedState,
  live: boolean,
): Promise<ServiceStatus[]> {
  const nodes = serviceNodesOf(state);
  if (!live) {
    return nodes.map((n) => ({
      name: n.name,
      site: n.site,
      url: n.url,
      state: 'up',
      detail: 'recorded started (not probed)',
    }));
  }
  const secret = await readControlSecret(store.layout.controlSecret);
  return Promise.all(
    nodes.map(async (n) => {
      const p = await probeService(n.name, n.url, secret);
      return { name: n.name, site: n.site, url: n.url, state: p.ok ? 'up' : 'down', detail: p.detail };
    }),
  );
}

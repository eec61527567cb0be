// setup's last stage on the emulated runtime: one emulated host group per site (a Node process
// in the site's namespace playing the site's hosts and VMs), then — as on a real testbed — power
// on every VM through its host's SSH, follow the boots on the service nodes' event stream and
// the hosts' `kb-host status`, and check each VM answers SSH in the deployment environment.
// Failed VMs get a power reset and another wait, `retries` times.
import { spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { eachLimited } from '../concurrency.js';
import type { EmulatedGroupOptions } from '../emulated/group.js';
import type { VmStatus } from '../emulated/host.js';
import { defaultModel } from '../emulated/model.js';
import { TestbedError } from '../errors.js';
import type { Logger } from '../log.js';
import { parsePrefix } from '../net/ipv4.js';
import type { HostNs, Topology } from '../netns/topology.js';
import { isAlive } from '../pid.js';
import type { Plan, VmPlan } from '../planner/plan.js';
import type { Progress } from '../progress.js';
import { ServiceClient } from '../services/client.js';
import { execOnce, SshSession } from '../ssh/session.js';
import { identifies, waitForSsh } from '../ssh/wait.js';
import { serviceNodesOf } from '../state/service-nodes.js';
import { type StateStore, type TestbedState, upsertResource } from '../state/store.js';
import { BootTracker, type VmBoot } from './boot-tracker.js';

export interface EmulatedStageOptions {
  /** Power on the VMs and wait for them (false: stop once the emulated hosts answer SSH). */
  vms: boolean;
  /** Power resets of a failed VM before it is reported failed. */
  retries: number;
  /** Per boot, from power-on to answering SSH; default from the boot model's slowest boot. */
  bootTimeoutMs?: number;
}

/** Emulated VMs fetch these instead of the real kernel and initrd: 4552 × 30 MB is too much to move. */
const placeholder = { kernelBytes: 64 * 1024, initrdBytes: 256 * 1024 };

/** At once: SSH connections being opened, host commands, VM probes. */
const window = 16;

export async function runEmulatedStage(
  store: StateStore,
  state: TestbedState,
  plan: Plan,
  topo: Topology,
  opts: EmulatedStageOptions,
  progress: Progress,
  logger: Logger,
): Promise<{ vms: VmBoot[]; hosts: number }> {
  await placePlaceholders(store, plan);
  const groups = topo.namespaces.filter((n) => n.role === 'emulated');
  await progress.step(`Start ${groups.length} emulated host group(s)`, async (step) => {
    let n = 0;
    for (const g of groups) {
      await startGroup(store, state, plan, g);
      step.status(`${++n}/${groups.length} listening`);
    }
  });
  const key = store.layout.ssh.clientKey;
  const hosts = groups.flatMap((g) => g.hosts ?? []);
  const sessions = new Map<string, SshSession>();
  const privateKey = await readFile(key);
  try {
    await progress.step(`Check the ${hosts.length} emulated hosts answer SSH`, async (step) => {
      const down: string[] = [];
      await eachLimited(hosts, window, async (h) => {
        try {
          const s = await SshSession.connect({ host: h.ip, privateKey, timeoutMs: 15_000 });
          const r = await s.exec('hostname', 10_000);
          if (r.stdout.trim() !== h.fqdn) {
            s.close();
            throw new Error(`hostname says ${r.stdout.trim() || r.error || r.stderr.trim()}`);
          }
          sessions.set(h.fqdn, s);
        } catch (e) {
          down.push(`${h.fqdn} (${(e as Error).message})`);
        }
        step.status(`${sessions.size}/${hosts.length} answering`);
      });
      if (down.length) {
        throw new TestbedError(
          `${down.length} emulated host(s) do not answer SSH: ${down.slice(0, 5).join(', ')}`,
        );
      }
    });
    if (!opts.vms) return { vms: [], hosts: hosts.length };
    const model = state.config.vms.emulated;
    const slowest = Math.max(defaultModel.kinds.pxe.maxMs, defaultModel.kinds.reboot.maxMs);
    // Queueing for DHCP and HTTP at thousands of VMs comes on top of the modelled boot.
    const bootTimeoutMs = opts.bootTimeoutMs ?? slowest * model.timeScale + 60_000;
    return {
      vms: await bootAll(state, plan, sessions, privateKey, bootTimeoutMs, opts.retries, progress, logger),
      hosts: hosts.length,
    };
  } finally {
    for (const s of sessions.values()) s.close();
  }
}

async function placePlaceholders(store: StateStore, plan: Plan): Promise<void> {
  const fill = (bytes: number, what: string) => {
    const head = Buffer.from(`kabootstrap emulated deployment environment: placeholder ${what}\n`);
    return Buffer.concat([head, Buffer.alloc(bytes - head.length, 0x6b)]);
  };
  for (const site of plan.sites) {
    for (const sn of site.serviceNodes) {
      const files = store.layout.serviceNode(sn.host, site.name);
      await mkdir(dirname(files.deployKernel), { recursive: true });
      await writeFile(files.deployKernel, fill(placeholder.kernelBytes, 'kernel'));
      await writeFile(files.deployInitrd, fill(placeholder.initrdBytes, 'initrd'));
    }
  }
}

/** The group's entry script: the built one, or the TypeScript source when run from source (tests). */
function groupEntry(): string[] {
  const here = fileURLToPath(import.meta.url);
  const ext = here.endsWith('.ts') ? 'ts' : 'js';
  const main = join(here, '..', '..', 'emulated', `main.${ext}`);
  return ext === 'ts' ? ['--import', 'tsx', main] : [main];
}

async function startGroup(store: StateStore, state: TestbedState, plan: Plan, g: HostNs): Promise<void> {
  const key = `emulated/${g.ns}`;
  const dir = store.layout.emulatedDir;
  const files = store.layout.emulatedGroup(g.site);
  const logFile = files.log;
  const rec = state.resources.find((r) => r.key === key && r.status === 'created');
  if (rec && isAlive(rec.data.pid as number)) return;
  const site = plan.sites.find((s) => s.name === g.site)!;
  const snIp = new Map(site.serviceNodes.map((s) => [s.host, s.ip]));
  const length = parsePrefix(site.network).length;
  const em = state.config.vms.emulated;
  const { transient, reboot, ...rates } = em.faults;
  const config: Omit<EmulatedGroupOptions, 'authorizedKey'> & {
    authorizedKeyFile: string;
    progressMs: number;
  } = {
    interface: 'vlan0',
    hosts: (g.hosts ?? []).map((h) => ({ name: h.fqdn, ip: h.ip })),
    vms: site.vms.map((vm: VmPlan) => ({
      name: vm.name,
      mac: vm.mac,
      ip: vm.ip,
      prefixLength: length,
      serviceNodeIp: vm.serviceNode ? (snIp.get(vm.serviceNode) ?? '') : '',
      host: vm.host,
    })),
    authorizedKeyFile: store.layout.ssh.clientPublicKey,
    seed: em.seed,
    model: { ...defaultModel, timeScale: em.timeScale },
    faults: { rates, transient, rebootHang: reboot },
    concurrency: em.concurrency,
    autostart: false,
    // relays of a tree reach VMs of other sites too, never beyond the testbed
    forwardPrefix: state.config.network.prefix,
    // the TakTuk engines' shims and socket, removed with the testbed's state
    commandDir: files.commandDir,
    progressMs: 10_000,
  };
  await mkdir(dir, { recursive: true });
  const configFile = files.config;
  await writeFile(configFile, `${JSON.stringify(config)}\n`);
  upsertResource(state, { kind: 'process', key, status: 'creating', data: { ns: g.ns, logFile } });
  await store.write(state);
  const out = openSync(logFile, 'w');
  // `ip netns exec` execs node in place: the pid recorded is the group's own.
  const child = spawn('ip', ['netns', 'exec', g.ns, process.execPath, ...groupEntry(), configFile], {
    detached: true,
    stdio: ['ignore', out, out],
  });
  child.unref();
  upsertResource(state, {
    kind: 'process',
    key,
    status: 'created',
    data: { ns: g.ns, pid: child.pid, match: 'emulated', logFile },
  });
  await store.write(state);
  const deadline = Date.now() + 60_000;
  for (;;) {
    const log = await readFile(logFile, 'utf8').catch(() => '');
    if (log.includes('"listening"')) return;
    if (child.exitCode !== null || !isAlive(child.pid!) || Date.now() > deadline) {
      const last = log.trim().split('\n').slice(-3).join(' | ') || 'no output';
      throw new TestbedError(`emulated host group ${g.ns} did not start (see ${logFile}): ${last}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

function byHost(vms: VmPlan[]): Map<string, VmPlan[]> {
  const m = new Map<string, VmPlan[]>();
  for (const vm of vms) m.set(vm.host, [...(m.get(vm.host) ?? []), vm]);
  return m;
}

async function bootAll(
  state: TestbedState,
  plan: Plan,
  sessions: Map<string, SshSession>,
  privateKey: Buffer,
  bootTimeoutMs: number,
  retries: number,
  progress: Progress,
  logger: Logger,
): Promise<VmBoot[]> {
  const vms = plan.sites.flatMap((s) => s.vms);
  const tracker = new BootTracker(vms);
  const abort = new AbortController();
  const following = serviceNodesOf(state).map((s) =>
    new ServiceClient(s.url).followEvents((e) => tracker.event(e), { signal: abort.signal }),
  );
  try {
    return await progress.step(`Power on ${vms.length} emulated VM(s) and wait for SSH`, async (step) => {
      const started = Date.now();
      const tick = setInterval(() => {
        const eta = tracker.eta(Date.now());
        step.status(`${tracker.summary()}${eta === null ? '' : `, ETA ${eta} s`}`);
      }, 500);
      try {
        await power(sessions, byHost(vms), 'on', tracker);
        await waitRound(vms, sessions, privateKey, tracker, bootTimeoutMs);
        for (let round = 1; round <= retries; round++) {
          const failed = vms.filter((vm) => tracker.get(vm.mac)?.state === 'failed');
          if (failed.length === 0) break;
          logger.info(`retry ${round}: power-cycling ${failed.length} failed VM(s)`);
          await power(sessions, byHost(failed), 'reset', tracker);
          await waitRound(failed, sessions, privateKey, tracker, bootTimeoutMs);
        }
        logger.debug(`emulated VMs: ${tracker.summary()} after ${Date.now() - started} ms`);
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

async function power(
  sessions: Map<string, SshSession>,
  hosts: Map<string, VmPlan[]>,
  action: 'on' | 'reset',
  tracker: BootTracker,
): Promise<void> {
  await eachLimited([...hosts], window, async ([host, list]) => {
    const t = Date.now();
    const r = await sessions
      .get(host)!
      .exec(`kb-host power ${action} ${list.map((v) => v.name).join(' ')}`, 30_000);
    for (const vm of list) {
      if (action === 'reset') tracker.retry(vm.mac, t);
      if (r.code === 0) tracker.launched(vm.mac, t);
      else
        tracker.failed(
          vm.mac,
          t,
          `power ${action} through ${host} failed: ${r.stderr.trim() || `exit ${r.code}`}`,
        );
    }
  });
}

/**
 * Until each VM of `vms` answers SSH or fails: the hosts say where each VM is (and why a VM is
 * stuck, as its console would), and a VM the host reports up is checked over SSH from here.
 */
async function waitRound(
  vms: VmPlan[],
  sessions: Map<string, SshSession>,
  privateKey: Buffer,
  tracker: BootTracker,
  bootTimeoutMs: number,
): Promise<void> {
  const pending = () => vms.filter((vm) => !['ssh', 'failed'].includes(tracker.get(vm.mac)!.state));
  /** VMs their host last reported up: worth an SSH probe from here. */
  const hostSaysUp = new Set<string>();
  let waiting = true;
  const followHosts = async () => {
    while (waiting && pending().length) {
      const round = Date.now();
      await eachLimited([...byHost(pending())], window, async ([host, list]) => {
        const r = await sessions
          .get(host)!
          .exec(`kb-host status ${list.map((v) => v.name).join(' ')}`, 30_000);
        let vmsStatus: VmStatus[];
        try {
          if (r.code !== 0) throw new Error(r.error ?? `exit ${r.code}`);
          vmsStatus = (JSON.parse(r.stdout) as { vms: VmStatus[] }).vms;
        } catch {
          return; // asked again next time; the deadline bounds it
        }
        const status = new Map(vmsStatus.map((s) => [s.name, s]));
        for (const vm of list) {
          const s = status.get(vm.name);
          if (s?.state === 'ssh') hostSaysUp.add(vm.mac);
          else if ((s?.state === 'failed' || s?.state === 'hung') && s.reason) {
            tracker.failed(vm.mac, Date.now(), s.reason);
          }
        }
      });
      const pause = 1000 - (Date.now() - round);
      if (waiting && pause > 0) await new Promise((r) => setTimeout(r, pause));
    }
  };
  const following = followHosts();
  const launchedAt = (vm: VmPlan) => tracker.get(vm.mac)!.launchedAt;
  try {
    await waitForSsh(vms, {
      exec: (vm, command, t) => execOnce({ host: vm.ip, privateKey, timeoutMs: t }, command, t),
      command: 'kb-agent identify',
      // this VM's agent, not something else on its address
      check: (vm, r) => identifies({ name: vm.name, mac: vm.mac, ip: vm.ip }, r.stdout),
      // each boot's own deadline, counted from its (latest) power-on
      deadline: (vm) => {
        const t = launchedAt(vm);
        return t === null ? Number.POSITIVE_INFINITY : t + bootTimeoutMs;
      },
      intervalMs: 1000,
      probeTimeoutMs: 10_000,
      window,
      ready: (vm) => hostSaysUp.has(vm.mac),
      givenUp: (vm) => tracker.get(vm.mac)!.state === 'failed',
      onUp: (vm) => tracker.sshUp(vm.mac, Date.now()),
      // (a VM already failed stays failed with its own reason)
      onDown: (vm) =>
        tracker.failed(
          vm.mac,
          Date.now(),
          `no SSH after ${Math.round(bootTimeoutMs / 1000)} s (last step: ${tracker.get(vm.mac)!.state})`,
        ),
    });
  } finally {
    waiting = false;
    await following;
  }
}

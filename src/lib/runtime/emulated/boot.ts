// The emulated runtime's VMs phase, as on a real testbed: power on every VM through its host's
// SSH, follow the boots on the service nodes' event stream and the hosts' `kb-host status`, and
// check each VM answers SSH in the deployment environment. Failed VMs get a power reset and
// another wait, `retries` times.
import { eachLimited } from '../../concurrency.js';
import type { VmStatus } from '../../emulated/host.js';
import type { Logger } from '../../log.js';
import type { Plan, VmPlan } from '../../planner/plan.js';
import type { Progress } from '../../progress.js';
import { sq } from '../../shell.js';
import type { KnownHosts } from '../../ssh/known-hosts.js';
import { execOnce } from '../../ssh/pool.js';
import type { SshSession } from '../../ssh/session.js';
import { identifies, waitForSsh } from '../../ssh/wait.js';
import type { TestbedState } from '../../state/store.js';
import { type BootTracker, deadlinesFrom, noSshReason, type VmBoot } from '../boot-tracker.js';
import { followBoots } from '../follow-boots.js';
import { byHost } from '../runtime.js';
import { window } from './hosts.js';
import { hostPowerCommand } from './power.js';

/** What an SSH probe of a VM logs in with and checks the VM's host key against. */
export interface VmLogin {
  privateKey: Buffer;
  knownHosts?: KnownHosts;
}

export async function bootAll(
  state: TestbedState,
  plan: Plan,
  sessions: Map<string, SshSession>,
  /** The testbed's key, and the host keys pinned for the VMs. */
  login: VmLogin,
  /** The testbed's control secret, for the service nodes' event streams. */
  controlSecret: string | null,
  bootTimeoutMs: number,
  retries: number,
  progress: Progress,
  logger: Logger,
): Promise<VmBoot[]> {
  const vms = plan.sites.flatMap((s) => s.vms);
  return followBoots(
    state,
    vms,
    `Power on ${vms.length} emulated VM(s) and wait for SSH`,
    { progress, logger, what: 'emulated VMs', controlSecret },
    async (tracker) => {
      await power(sessions, byHost(vms), 'on', tracker);
      await waitRound(vms, sessions, login, tracker, bootTimeoutMs);
      for (let round = 1; round <= retries; round++) {
        const failed = vms.filter((vm) => tracker.get(vm.mac)?.state === 'failed');
        if (failed.length === 0) break;
        logger.info(`retry ${round}: power-cycling ${failed.length} failed VM(s)`);
        await power(sessions, byHost(failed), 'reset', tracker);
        await waitRound(failed, sessions, login, tracker, bootTimeoutMs);
      }
    },
  );
}

async function power(
  sessions: Map<string, SshSession>,
  hosts: Map<string, VmPlan[]>,
  action: 'on' | 'reset',
  tracker: BootTracker,
): Promise<void> {
  await eachLimited([...hosts], window, async ([host, list]) => {
    const t = Date.now();
    const r = await hostPowerCommand(
      sessions.get(host)!,
      action,
      list.map((v) => v.name),
    );
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
  login: VmLogin,
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
          .exec(`kb-host status ${list.map((v) => sq(v.name)).join(' ')}`, 30_000);
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
          else if (s && s.state !== 'failed' && s.state !== 'hung')
            tracker.hostReports(vm.mac, s.state, Date.now());
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
  const rule = deadlinesFrom(bootTimeoutMs);
  try {
    await waitForSsh(vms, {
      exec: (vm, command, t) => execOnce({ host: vm.ip, node: vm.name, ...login, timeoutMs: t }, command, t),
      command: 'kb-agent identify',
      // this VM's agent, not something else on its address
      check: (vm, r) => identifies({ name: vm.name, mac: vm.mac, ip: vm.ip }, r.stdout),
      // each boot's own deadline, from its (latest) power-on, held off while boots move forward
      deadline: (vm) => tracker.deadline(vm.mac, rule),
      intervalMs: 1000,
      probeTimeoutMs: 10_000,
      window,
      ready: (vm) => hostSaysUp.has(vm.mac),
      givenUp: (vm) => tracker.get(vm.mac)!.state === 'failed',
      onUp: (vm) => tracker.sshUp(vm.mac, Date.now()),
      // (a VM already failed stays failed with its own reason)
      onDown: (vm) => tracker.failed(vm.mac, Date.now(), noSshReason(tracker.get(vm.mac)!, Date.now())),
    });
  } finally {
    waiting = false;
    await following;
  }
}

// Launching the plan's QEMU VMs on their hosts (over SSH, as on a real testbed) and waiting until
// each one has network-booted into the deployment environment and answers SSH. Progress comes
// from the service nodes' per-MAC event stream; every VM ends answering or failed with a reason.
// Each host gets its bridge and one tap per VM first (taps are per VM: they come with the launch).
// A VM whose QEMU runs already (a resumed setup) is kept if it answers, else booted again; a VM
// that did not come up gets a reset and another wait, `retries` times.
import { readFile } from 'node:fs/promises';
import { eachLimited } from '../../concurrency.js';
import type { Logger } from '../../log.js';
import type { Plan, VmPlan } from '../../planner/plan.js';
import type { Progress } from '../../progress.js';
import { KnownHosts } from '../../ssh/known-hosts.js';
import { execOnce, openSession } from '../../ssh/pool.js';
import type { SshSession } from '../../ssh/session.js';
import { identifies, waitForSsh } from '../../ssh/wait.js';
import { readControlSecret } from '../../state/control-secret.js';
import { type StateStore, type TestbedState, upsertResource } from '../../state/store.js';
import { type BootTracker, deadlinesFrom, noSshReason, type VmBoot } from '../boot-tracker.js';
import { followBoots } from '../follow-boots.js';
import { byHost, type VmHostAccess } from '../runtime.js';
import { bootAgain, type HostVm, powerOn, prepareHostScript, type QemuOptions } from './host.js';

export interface LaunchOptions {
  qemu: QemuOptions;
  /** Per VM, from its launch to answering SSH. */
  bootTimeoutMs: number;
  /** At most this many VMs starting at once (Kadeploy's reboot window). */
  window: number;
  /** Resets of a VM that did not come up, each followed by another wait. */
  retries: number;
}

export async function launchVms(
  store: StateStore,
  state: TestbedState,
  plan: Plan,
  access: Pick<VmHostAccess, 'hostAddresses' | 'uplink'>,
  opts: LaunchOptions,
  progress: Progress,
  logger: Logger,
): Promise<VmBoot[]> {
  const vms = plan.sites.flatMap((s) => s.vms);
  const key = store.layout.ssh.clientKey;
  const knownHosts = KnownHosts.at(store.layout.knownHosts);
  const sessions = new Map<string, SshSession>();
  try {
    return await followBoots(
      state,
      vms,
      `Launch ${vms.length} VM(s) and wait for the deployment environment`,
      { progress, logger, what: 'VMs', controlSecret: await readControlSecret(store.layout.controlSecret) },
      async (tracker) => {
        const hostVms = new Map<string, HostVm>();
        const privateKey = await readFile(key);
        for (const [host, list] of byHost(vms)) {
          const session = await openSession({
            host: access.hostAddresses.get(host)!,
            node: host,
            privateKey,
            knownHosts,
            timeoutMs: 15_000,
          });
          sessions.set(host, session);
          const hvms = list.map((v, i) => ({
            name: v.name,
            mac: v.mac,
            vcpus: plan.flavour.vcpus,
            memoryMB: plan.flavour.memoryMB,
            diskMB: plan.flavour.diskMB,
            tap: `tap${i}`,
          }));
          for (const h of hvms) hostVms.set(h.mac, h);
          const r = await session.exec(prepareHostScript(hvms, access.uplink));
          if (r.code !== 0) throw new Error(`cannot prepare ${host} for its VMs: ${r.stderr.trim()}`);
        }
        const login = { privateKey, knownHosts };
        // Launch in windows; each VM is then probed until it answers SSH or times out.
        const waits: Promise<void>[] = [];
        for (let i = 0; i < vms.length; i += opts.window) {
          await Promise.all(
            vms.slice(i, i + opts.window).map(async (vm) => {
              upsertResource(state, {
                kind: 'vm',
                key: `vm/${vm.name}`,
                status: 'creating',
                data: { host: vm.host, mac: vm.mac },
              });
              const session = sessions.get(vm.host)!;
              const hvm = hostVms.get(vm.mac)!;
              try {
                const found = await powerOn(session, state.name, hvm, opts.qemu);
                tracker.launched(vm.mac, Date.now());
                upsertResource(state, { kind: 'vm', key: `vm/${vm.name}`, status: 'created', data: {} });
                if (found === 'started') waits.push(waitForBoot(vm, login, tracker, opts.bootTimeoutMs));
                else
                  waits.push(
                    adopt(vm, found, login, tracker, opts.bootTimeoutMs, () =>
                      bootAgain(session, state.name, hvm, opts.qemu),
                    ),
                  );
              } catch (e) {
                tracker.failed(vm.mac, Date.now(), `did not start: ${(e as Error).message}`);
              }
            }),
          );
          await store.write(state);
        }
        await Promise.all(waits);
        for (let round = 1; round <= opts.retries; round++) {
          const failed = vms.filter((vm) => tracker.get(vm.mac)?.state === 'failed');
          if (failed.length === 0) break;
          logger.info(`retry ${round}: booting ${failed.length} VM(s) that did not come up again`);
          await eachLimited(failed, opts.window, async (vm) => {
            const t = Date.now();
            tracker.retry(vm.mac, t);
            try {
              await bootAgain(sessions.get(vm.host)!, state.name, hostVms.get(vm.mac)!, opts.qemu);
            } catch (e) {
              tracker.failed(vm.mac, Date.now(), `reset failed: ${(e as Error).message}`);
              return;
            }
            tracker.launched(vm.mac, t);
            await waitForBoot(vm, login, tracker, opts.bootTimeoutMs);
          });
        }
      },
    );
  } finally {
    for (const s of sessions.values()) s.close();
  }
}

/**
 * A VM whose QEMU an earlier launch left running: kept when its agent answers now, else (paused,
 * hung in its firmware, or another system) booted again and waited for like a new one.
 */
async function adopt(
  vm: VmPlan,
  found: 'running' | 'paused',
  login: { privateKey: Buffer; knownHosts: KnownHosts },
  tracker: BootTracker,
  timeoutMs: number,
  again: () => Promise<void>,
): Promise<void> {
  if (found === 'running') {
    const r = await execOnce(
      { host: vm.ip, node: vm.name, ...login, timeoutMs: 10_000 },
      'kb-agent identify',
      10_000,
    ).catch(() => null);
    if (r?.code === 0 && identifies({ mac: vm.mac }, r.stdout) === null) {
      tracker.sshUp(vm.mac, Date.now());
      return;
    }
  }
  try {
    await again();
  } catch (e) {
    tracker.failed(vm.mac, Date.now(), `booting it again failed: ${(e as Error).message}`);
    return;
  }
  tracker.bootsAgain(vm.mac, Date.now());
  await waitForBoot(vm, login, tracker, timeoutMs);
}

/** Until the VM's own agent answers SSH (its MAC in `kb-agent identify`) or its time is up. */
async function waitForBoot(
  vm: VmPlan,
  login: { privateKey: Buffer; knownHosts: KnownHosts },
  tracker: BootTracker,
  timeoutMs: number,
): Promise<void> {
  const state = () => tracker.get(vm.mac)!.state;
  const rule = deadlinesFrom(timeoutMs);
  const answers = await waitForSsh([vm], {
    exec: (v, command, t) =>
      execOnce({ host: v.ip, node: v.name, ...login, timeoutMs: Math.min(t, 20_000) }, command, t),
    command: 'kb-agent identify',
    check: (v, r) => identifies({ mac: v.mac }, r.stdout),
    // from its launch, held off while the boots move forward (TCG guests queue for the CPU)
    deadline: (v) => tracker.deadline(v.mac, rule),
    intervalMs: 1000,
    probeTimeoutMs: 10_000,
    // Probing before the kernel is even fetched only adds load; the events say when to start.
    ready: () => state() === 'initrd' || state() === 'kernel',
    onUp: (v) => tracker.sshUp(v.mac, Date.now()),
  });
  const answer = answers.get(vm);
  if (answer?.ok) return;
  // the last probe's error says what stood in the way (no route, refused, another system)
  const probe = answer?.last && answer.last !== 'no answer' ? `; last probe: ${answer.last}` : '';
  tracker.failed(vm.mac, Date.now(), `${noSshReason(tracker.get(vm.mac)!, Date.now())}${probe}`);
}

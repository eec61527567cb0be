// The workflow engine's hands: each micro-step done for real on a set of nodes, through the
// service nodes (netboot profiles), the hosts (power) and the node agent over SSH. The same
// driver runs QEMU VMs and emulated VMs; only the host's power commands differ. waitReboot reports
// each node to the engine as soon as it is back, so it goes on without waiting for the others.
import { posix } from 'node:path';
import { eachLimited, Limiter } from '../concurrency.js';
import type { EnvBootFiles } from '../envs/boot-files.js';
import type { RegisteredEnvironment } from '../envs/registry.js';
import type { DeployNode } from '../nodes/targets.js';
import type { PowerControl } from '../runtime/power.js';
import { ServiceClient } from '../services/client.js';
import { sq } from '../shell.js';
import { type KnownHosts, knownHostsAddress } from '../ssh/known-hosts.js';
import type { SshPool } from '../ssh/pool.js';
import { identifies, waitForSsh } from '../ssh/wait.js';
import { envBootOf, uploadOnce } from './env-boot.js';
import type { BroadcastMethod, MicroContext, MicroStep, NodeOutcome, WorkflowDriver } from './workflow.js';

export interface DiskLayout {
  device: string;
  partition: string;
  /** Where the deployed system is written (the environment's root). */
  mount: string;
}

export const defaultDisk: DiskLayout = { device: '/dev/vda', partition: '/dev/vda1', mount: '/mnt/dest' };

/** Where SetDeploymentEnv stages the user's key until the post-install writes it into the new system. */
const stagedKeys = '/run/kb/keys';

export interface DriverDeps {
  nodes: Map<string, DeployNode>;
  pool: SshPool;
  /**
   * The pool's pinned host keys: a node rebooting into the deployed system may present that
   * system's own key, which is learned then (the deployment environment's key still passes).
   */
  knownHosts?: KnownHosts;
  power: PowerControl;
  env: RegisteredEnvironment;
  /** The image to the nodes; `ctx` bounds it: the step's abort signal and the time left in it. */
  broadcast(
    method: BroadcastMethod,
    nodes: DeployNode[],
    ctx: { signal: AbortSignal; timeoutMs: number },
  ): Promise<Map<string, NodeOutcome>>;
  disk?: DiskLayout;
  /**
   * The environment's kernel and initrd, taken out of its image: booting the deployed system
   * (switchProfile(deployed)) then sets the `env` profile (that kernel over HTTP, root= the deployed
   * partition) instead of `local` (iPXE sanboot of the disk). Null or absent: `local`.
   */
  envBoot?: EnvBootFiles | null;
  /** The testbed's control secret, sent to the service nodes; null for a testbed without one. */
  controlSecret?: string | null;
  /** Puts envBoot's files on a service node (by its control URL): once per deployment by default. */
  uploadEnvBoot?: (serviceUrl: string) => Promise<void>;
  /** Nodes handled at once by per-node commands (across all calls: nodes back early run alone). */
  window?: number;
  probeIntervalMs?: number;
  /** Wait before the first probe after a reboot: a node answering at once has not rebooted yet. */
  rebootGraceMs?: number;
  /** When a node not back counts as hung, from its peers' return times (default HUNG). */
  hung?: typeof HUNG;
}

/**
 * When a node still not back from its reboot counts as hung, measured on its peers: once `quorum`
 * of the `total` nodes rebooted together are back, a node not back after `factor` times the time
 * that quorum took (and never before `minMs`) is given up, instead of waiting out the reboot
 * timeout sized for the slowest possible boot of that many nodes. `backMs`: when each node that is
 * back came back, from the start of the wait, in order. Infinity while too few are back to tell,
 * or too few rebooted together to compare.
 */
/** A node rebooting is probed for at least this long from its first probe (at most the call's budget). */
export const PROBE_SPAN_MS = 10_000;

export const HUNG = { quorum: 0.9, factor: 3, minMs: 10_000, minNodes: 20 };

export function hungAfterMs(backMs: readonly number[], total: number, rule = HUNG): number {
  if (total < rule.minNodes) return Number.POSITIVE_INFINITY;
  const need = Math.ceil(rule.quorum * total);
  if (backMs.length < need) return Number.POSITIVE_INFINITY;
  return Math.max(rule.minMs, rule.factor * backMs[need - 1]);
}

export function createDriver(deps: DriverDeps): WorkflowDriver {
  const disk = deps.disk ?? defaultDisk;
  const window = deps.window ?? 64;
  const desc = deps.env.description;
  const label = `${desc.name} ${desc.version}`;
  const node = (name: string) => deps.nodes.get(name)!;
  const target = (n: DeployNode) => ({ name: n.name, ip: n.ip });
  // one bound for every call at once: the engine runs a node back early on its own, in its own call
  const commands = new Limiter(window);

  /** One command per node (built per node), ok when it exits 0. */
  const each = async (
    names: string[],
    ctx: MicroContext,
    what: string,
    command: (n: DeployNode) => string,
  ): Promise<Map<string, NodeOutcome>> => {
    const out = new Map<string, NodeOutcome>();
    const runOne = async (name: string): Promise<void> => {
      if (ctx.signal.aborted) return;
      const r = await deps.pool.exec(target(node(name)), command(node(name)), ctx.timeoutMs);
      if (r.code === 0) out.set(name, { ok: true });
      else
        out.set(name, {
          ok: false,
          reason: `${what}: ${r.error ?? (r.stderr.trim().split('\n').at(-1) || `exit ${r.code}`)}`,
        });
    };
    await Promise.all(names.map((name) => commands.run(() => runOne(name))));
    return out;
  };

  const envBoot = deps.envBoot ?? null;
  const controlSecret = deps.controlSecret ?? null;
  const upload = envBoot ? (deps.uploadEnvBoot ?? uploadOnce(envBoot, undefined, controlSecret)) : null;

  /** Opens a node's connection ahead of its commands; a failure is the commands' to report. */
  const warm = (name: string) => {
    try {
      deps.pool.connect(target(node(name))).catch(() => {});
    } catch {
      // a pool that cannot connect ahead (a test's fake) connects when a command needs it
    }
  };

  const switchProfile = async (names: string[], wanted: 'deploy' | 'deployed') => {
    // the reboot windows that follow reach the nodes over SSH: their handshakes start now, paced
    // by the pool's gate, instead of each window paying for its own before its commands run
    if (wanted === 'deploy') for (const name of names) warm(name);
    // the deployed system through its environment's kernel when there is one, else the disk
    const profile = wanted === 'deploy' ? 'deploy' : envBoot ? 'env' : 'local';
    const env = profile === 'env' && envBoot ? envBootOf(envBoot, disk.partition) : undefined;
    const out = new Map<string, NodeOutcome>();
    await eachLimited(names, window, async (name) => {
      const n = node(name);
      if (!n.serviceUrl) return void out.set(name, { ok: false, reason: 'no service node serves it' });
      try {
        if (profile === 'env' && upload) await upload(n.serviceUrl);
        await new ServiceClient(n.serviceUrl, { secret: controlSecret }).setProfile(n.mac, profile, env);
        out.set(name, { ok: true });
      } catch (e) {
        out.set(name, { ok: false, reason: `profile ${profile}: ${(e as Error).message}` });
      }
    });
    return out;
  };

  const reboot = async (names: string[], level: 'soft' | 'hard' | 'very_hard', ctx: MicroContext) => {
    // a soft reboot is ordered over the node's current connection (a failed one reconnects)
    if (level !== 'soft') for (const name of names) deps.pool.drop(target(node(name)));
    if (level !== 'soft') return deps.power.power(level === 'hard' ? 'reset' : 'cycle', names.map(node));
    // soft: the node reboots itself; the connection dropping under the command is expected
    const out = new Map<string, NodeOutcome>();
    await eachLimited(names, window, async (name) => {
      const r = await deps.pool.exec(target(node(name)), 'reboot -f', Math.min(ctx.timeoutMs, 10_000));
      deps.pool.drop(target(node(name)));
      const unreachable = r.error?.startsWith('unreachable') || r.error?.startsWith('ssh');
      out.set(name, unreachable ? { ok: false, reason: `soft reboot: ${r.error}` } : { ok: true });
    });
    return out;
  };

  /**
   * Probes until each node answers SSH in the expected system or the step's time is up; at most
   * `window` probes at once, so thousands of nodes share one deadline fairly. Each node that answers
   * is reported at once: the engine moves it on while the others are still probed.
   */
  const waitReboot = async (names: string[], env: 'deploy' | 'deployed', ctx: MicroContext) => {
    const t0 = Date.now();
    const backMs: number[] = [];
    let hungAt = Number.POSITIVE_INFINITY;
    const given = new Set<string>();
    // the call's budget, but never before a node has had PROBE_SPAN_MS of probes: at thousands of
    // nodes on a busy machine the probe window may reach a node late (the step's own timeout still
    // ends the call)
    const end = t0 + ctx.timeoutMs;
    const span = Math.min(PROBE_SPAN_MS, ctx.timeoutMs);
    const firstProbe = new Map<string, number>();
    if (env === 'deployed')
      await deps.knownHosts?.expectNewKey(names.map((n) => knownHostsAddress(node(n).ip)));
    const answers = await waitForSsh(names, {
      exec: (name, command, timeoutMs) => {
        if (!firstProbe.has(name)) firstProbe.set(name, Date.now());
        return deps.pool.exec(target(node(name)), command, timeoutMs);
      },
      command: env === 'deploy' ? 'kb-agent identify' : 'cat /etc/kb-env',
      // up in the expected system: the deployment environment on this node, or the deployed one
      check: (name, r) =>
        env === 'deploy'
          ? identifies({ mac: node(name).mac, env: 'deploy' }, r.stdout)
          : r.stdout.trim() === label
            ? null
            : `runs ${r.stdout.trim() || 'another system'}`,
      failed: (name) => deps.pool.drop(target(node(name))),
      deadline: (name) => Math.max(end, (firstProbe.get(name) ?? Date.now()) + span),
      intervalMs: deps.probeIntervalMs ?? 1000,
      probeTimeoutMs: 10_000,
      window,
      graceMs: Math.min(deps.rebootGraceMs ?? 2000, ctx.timeoutMs / 4),
      signal: ctx.signal,
      // the peers say how long a reboot takes here: far longer than theirs is a hung node
      givenUp: (name) => {
        if (Date.now() - t0 <= hungAt) return false;
        given.add(name);
        return true;
      },
      onUp: (name) => {
        backMs.push(Date.now() - t0);
        hungAt = hungAfterMs(backMs, names.length, deps.hung);
        ctx.report?.(name, { ok: true });
      },
    });
    const into = env === 'deploy' ? 'deployment environment' : 'deployed system';
    const out = new Map<string, NodeOutcome>();
    for (const name of names) {
      const a = answers.get(name);
      const hung =
        !a?.ok && a && given.has(name)
          ? `; not back after ${Math.round(a.ms / 1000)} s, ${Math.round(hungAt / (deps.hung ?? HUNG).factor / 1000)} s for ${Math.round((deps.hung ?? HUNG).quorum * 100)}% of its ${names.length} peers`
          : '';
      out.set(
        name,
        a?.ok
          ? { ok: true }
          : {
              ok: false,
              reason: `Unreachable after the reboot into the ${into} (${a?.last ?? 'no answer'}${hung})`,
            },
      );
    }
    return out;
  };

  return {
    async run(micro: MicroStep, names: string[], ctx: MicroContext) {
      switch (micro.kind) {
        case 'switchProfile':
          return switchProfile(names, micro.profile);
        case 'reboot':
          return reboot(names, micro.level, ctx);
        case 'waitReboot':
          return waitReboot(names, micro.env, ctx);
        case 'kexec': {
          const boot = desc.boot;
          if (micro.target === 'deploy') {
            return each(
              names,
              ctx,
              'kexec into the deployment environment',
              () => 'kb-agent kexec /boot/vmlinuz /boot/initrd.img console=ttyS0',
            );
          }
          if (!boot?.initrd) {
            // the agent's kexec takes a kernel and an initrd both (vm-images/deploy-env/kb-agent)
            const reason = boot
              ? `${desc.name} has no boot.initrd: kb-agent kexec needs one (boot it with a classical reboot)`
              : `${desc.name} has no boot kernel to kexec`;
            return new Map(names.map((n) => [n, { ok: false, reason }]));
          }
          const kernel = posix.join(disk.mount, boot.kernel);
          const initrd = posix.join(disk.mount, boot.initrd);
          const params = boot.kernel_params ?? '';
          const r = await each(
            names,
            ctx,
            'kexec',
            () => `kb-agent kexec ${sq(kernel)} ${sq(initrd)} ${sq(params)}`,
          );
          for (const name of names) deps.pool.drop(target(node(name)));
          return r;
        }
        case 'installKey':
          // the user's key (the testbed's: the deployment environment already trusts it), staged
          // for the post-install to put into the new system
          return each(
            names,
            ctx,
            'stage the SSH key',
            () => `kb-agent install-key /root/.ssh/authorized_keys ${sq(stagedKeys)}`,
          );
        case 'partition':
          return each(names, ctx, 'partition', () => `kb-agent partition ${sq(disk.device)}`);
        case 'format':
          return each(
            names,
            ctx,
            'format',
            () => `kb-agent format ${sq(disk.partition)} ${sq(desc.filesystem ?? 'ext4')}`,
          );
        case 'mount':
          return each(names, ctx, 'mount', () => `kb-agent mount ${sq(disk.partition)} ${sq(disk.mount)}`);
        case 'broadcast':
          return deps.broadcast(micro.method, names.map(node), {
            signal: ctx.signal,
            timeoutMs: ctx.timeoutMs,
          });
        case 'sync': {
          // post-install: the staged key and the system's identity, then everything on disk
          const out = new Map<string, NodeOutcome>();
          let left = names;
          for (const [what, command] of [
            [
              'install the SSH key',
              `kb-agent install-key ${sq(`${stagedKeys}/root/.ssh/authorized_keys`)} ${sq(disk.mount)}`,
            ],
            [
              'post-install',
              `kb-agent postinstall ${sq(disk.mount)} ${sq(desc.name)} ${sq(String(desc.version))}`,
            ],
            ['sync', 'sync'],
          ] as const) {
            const r = await each(left, ctx, what, () => command);
            for (const [name, o] of r) out.set(name, o);
            left = left.filter((n) => r.get(n)?.ok);
          }
          return out;
        }
      }
    },
  };
}

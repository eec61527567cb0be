// The workflow engine's hands: each micro-step done for real on a set of nodes, through the
// service nodes (netboot profiles), the hosts (power) and the node agent over SSH. The same
// driver runs QEMU VMs and emulated VMs; only the host's power commands differ. waitReboot reports
// each node to the engine as soon as it is back, so it goes on without waiting for the others.
import { eachLimited, Limiter } from '../concurrency.js';
import type { EnvBootFiles } from '../envs/boot-files.js';
import type { RegisteredEnvironment } from '../envs/registry.js';
import type { DeployNode } from '../nodes/targets.js';
import type { PowerControl } from '../runtime/power.js';
import { ServiceClient } from '../services/client.js';
import { sq } from '../shell.js';
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
  power: PowerControl;
  env: RegisteredEnvironment;
  broadcast(
    method: BroadcastMethod,
    nodes: DeployNode[],
    signal: AbortSignal,
  ): Promise<Map<string, NodeOutcome>>;
  disk?: DiskLayout;
  /**
   * The environment's kernel and initrd, taken out of its image: booting the deployed system
   * (switchProfile(deployed)) then sets the `env` profile (that kernel over HTTP, root= the deployed
   * partition) instead of `local` (iPXE sanboot of the disk). Null or absent: `local`.
   */
  envBoot?: EnvBootFiles | null;
  /** Puts envBoot's files on a service node (by its control URL): once per deployment by default. */
  uploadEnvBoot?: (serviceUrl: string) => Promise<void>;
  /** Nodes handled at once by per-node commands (across all calls: nodes back early run alone). */
  window?: number;
  probeIntervalMs?: number;
  /** Wait before the first probe after a reboot: a node answering at once has not rebooted yet. */
  rebootGraceMs?: number;
}

/** Single quotes for the node's shell. */

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
  const upload = envBoot ? (deps.uploadEnvBoot ?? uploadOnce(envBoot)) : null;

  const switchProfile = async (names: string[], wanted: 'deploy' | 'deployed') => {
    // the deployed system through its environment's kernel when there is one, else the disk
    const profile = wanted === 'deploy' ? 'deploy' : envBoot ? 'env' : 'local';
    const env = profile === 'env' && envBoot ? envBootOf(envBoot, disk.partition) : undefined;
    const out = new Map<string, NodeOutcome>();
    await eachLimited(names, window, async (name) => {
      const n = node(name);
      if (!n.serviceUrl) return void out.set(name, { ok: false, reason: 'no service node serves it' });
      try {
        if (profile === 'env' && upload) await upload(n.serviceUrl);
        await new ServiceClient(n.serviceUrl).setProfile(n.mac, profile, env);
        out.set(name, { ok: true });
      } catch (e) {
        out.set(name, { ok: false, reason: `profile ${profile}: ${(e as Error).message}` });
      }
    });
    return out;
  };

  const reboot = async (names: string[], level: 'soft' | 'hard' | 'very_hard', ctx: MicroContext) => {
    for (const name of names) deps.pool.drop(target(node(name)));
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
    const answers = await waitForSsh(names, {
      exec: (name, command, timeoutMs) => deps.pool.exec(target(node(name)), command, timeoutMs),
      command: env === 'deploy' ? 'kb-agent identify' : 'cat /etc/kb-env',
      // up in the expected system: the deployment environment on this node, or the deployed one
      check: (name, r) =>
        env === 'deploy'
          ? identifies({ mac: node(name).mac, env: 'deploy' }, r.stdout)
          : r.stdout.trim() === label
            ? null
            : `runs ${r.stdout.trim() || 'another system'}`,
      failed: (name) => deps.pool.drop(target(node(name))),
      deadline: Date.now() + ctx.timeoutMs,
      intervalMs: deps.probeIntervalMs ?? 1000,
      probeTimeoutMs: 10_000,
      window,
      graceMs: Math.min(deps.rebootGraceMs ?? 2000, ctx.timeoutMs / 4),
      signal: ctx.signal,
      onUp: (name) => ctx.report?.(name, { ok: true }),
    });
    const into = env === 'deploy' ? 'deployment environment' : 'deployed system';
    const out = new Map<string, NodeOutcome>();
    for (const name of names) {
      const a = answers.get(name);
      out.set(
        name,
        a?.ok
          ? { ok: true }
          : {
              ok: false,
              reason: `Unreachable after the reboot into the ${into} (${a?.last ?? 'no answer'})`,
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
          if (!boot)
            return new Map(
              names.map((n) => [n, { ok: false, reason: `${desc.name} has no boot kernel to kexec` }]),
            );
          const r = await each(
            names,
            ctx,
            'kexec',
            () =>
              `kb-agent kexec ${disk.mount}${boot.kernel} ${disk.mount}${boot.initrd} ${sq(boot.kernel_params ?? '')}`,
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
            () => `kb-agent install-key /root/.ssh/authorized_keys ${stagedKeys}`,
          );
        case 'partition':
          return each(names, ctx, 'partition', () => `kb-agent partition ${disk.device}`);
        case 'format':
          return each(
            names,
            ctx,
            'format',
            () => `kb-agent format ${disk.partition} ${desc.filesystem ?? 'ext4'}`,
          );
        case 'mount':
          return each(names, ctx, 'mount', () => `kb-agent mount ${disk.partition} ${disk.mount}`);
        case 'broadcast':
          return deps.broadcast(micro.method, names.map(node), ctx.signal);
        case 'sync': {
          // post-install: the staged key and the system's identity, then everything on disk
          const out = new Map<string, NodeOutcome>();
          let left = names;
          for (const [what, command] of [
            [
              'install the SSH key',
              `kb-agent install-key ${stagedKeys}/root/.ssh/authorized_keys ${disk.mount}`,
            ],
            ['post-install', `kb-agent postinstall ${disk.mount} ${desc.name} ${desc.version}`],
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

// What `kabootstrap deploy` does: check the request (environment, its image, the nodes, the
// rights, the steps) before touching anything, then run the workflow engine on the testbed's VMs
// with the real driver, show progress, and store the per-node, per-step stats.
import { readFile } from 'node:fs/promises';
import { broadcastStep } from '../broadcast/methods.js';
import { defaultModel } from '../emulated/model.js';
import { envBootFiles } from '../envs/boot-files.js';
import {
  canUse,
  checkDeployRights,
  getEnvironment,
  type RegisteredEnvironment,
  verifyImage,
} from '../envs/registry.js';
import { InputError } from '../errors.js';
import { findTaktuk } from '../exec/taktuk.js';
import type { Logger } from '../log.js';
import { openTestbed } from '../nodes/open-testbed.js';
import type { Progress } from '../progress.js';
import { envBootSchema } from '../services/config.js';
import { SshPool } from '../ssh/pool.js';
import { broadcastImage, emulatedRingBytes } from './broadcast-step.js';
import { createDriver, defaultDisk } from './driver.js';
import { envBootOf } from './env-boot.js';
import { hostPower } from './power.js';
import { type Deployment, listDeployments, macroSpans, newDeploymentId, saveDeployment } from './stats.js';
import { defaultWorkflow, formatSteps, mergeWorkflow, parseSteps, type Workflow } from './steps.js';
import {
  type BroadcastMethod,
  defaultRebootTimeoutMs,
  parseBreakpoint,
  startWorkflow,
  type Window,
} from './workflow.js';

export interface DeployRequest {
  testbed: string;
  user: string;
  env: string;
  envVersion?: number;
  nodeFile?: string;
  steps?: string;
  broadcast?: BroadcastMethod;
  /** `size:sleepSeconds`, as Kadeploy's reboot window. */
  rebootWindow?: string;
  breakpoint?: string;
}

export interface DeployResult extends Deployment {
  file: string;
  ok: number;
  ko: number;
}

export function parseWindow(text: string, flag: string): Window {
  const m = /^(\d+):(\d+(?:\.\d+)?)$/.exec(text.trim());
  if (!m || Number(m[1]) < 1) throw new InputError(`${flag}: "${text}" is not SIZE:SECONDS, e.g. 50:10`);
  return { size: Number(m[1]), sleepMs: Number(m[2]) * 1000 };
}

/** Everything a deployment needs, checked; throws one clear InputError and touches nothing. */
export async function checkDeployRequest(req: DeployRequest) {
  const { store, state, keyFile, nodes } = await openTestbed(req.testbed, req.nodeFile);
  let workflow: Workflow = mergeWorkflow(defaultWorkflow(), req.steps ? parseSteps(req.steps) : {});
  if (req.broadcast && !req.steps?.includes('BroadcastEnv|')) {
    const name = broadcastStep(req.broadcast);
    workflow = mergeWorkflow(
      workflow,
      parseSteps(`BroadcastEnv|${name}:1:${workflow.BroadcastEnv[0].timeoutMs / 1000}`),
    );
  }
  const window = req.rebootWindow ? parseWindow(req.rebootWindow, '--reboot-window') : undefined;
  if (req.breakpoint) parseBreakpoint(req.breakpoint);
  if (workflow.BroadcastEnv.some((i) => i.name === broadcastStep('taktuk'))) {
    // BroadcastEnv runs in the deployment environment: ours (busybox) has no TakTuk to run
    if (state.config.vms.runtime === 'qemu')
      throw new InputError(
        "BroadcastEnvTaktuk: the qemu runtime's deployment environment has no taktuk (use chain, tree or star)",
      );
    if (!findTaktuk())
      throw new InputError('BroadcastEnvTaktuk: taktuk is not installed (apt-get install taktuk)');
  }
  const env = await getEnvironment(req.env, req.envVersion);
  if (!canUse(req.user, env)) throw new InputError(`unknown environment "${req.env}"`);
  await verifyImage(env);
  await checkDeployRights(
    req.user,
    env,
    nodes.map((n) => n.fqdn),
  );
  // A classical boot of the deployed system network-boots the environment's own kernel: take it
  // out of the image now (cached per image), so a missing one is refused before anything starts.
  const classical = workflow.BootNewEnv.some((i) => i.name !== 'BootNewEnvKexec');
  const envBoot = classical ? await envBootFiles(env, store.layout.envBootCache) : null;
  if (envBoot) {
    const boot = envBootSchema.safeParse(envBootOf(envBoot, defaultDisk.partition));
    if (!boot.success) {
      throw new InputError(
        `environment ${env.description.name} v${env.description.version}: boot.kernel_params: ${boot.error.issues[0].message}`,
      );
    }
  }
  return { store, state, keyFile, env, nodes, workflow, window, envBoot };
}

/** The fastest the model allows: every node's quickest reboot and kexec, and the image at 1 GB/s. */
function lowerBoundMs(env: RegisteredEnvironment, timeScale: number): number {
  const k = defaultModel.kinds;
  return (k.reboot.minMs + k.kexec.minMs) * timeScale + (env.bytes / 1e9) * 1000;
}

export async function deployTestbed(
  req: DeployRequest,
  ctx: { logger: Logger; progress: Progress },
): Promise<DeployResult> {
  const { store, state, keyFile, env, nodes, workflow, window, envBoot } = await checkDeployRequest(req);
  await store.lock('deploy');
  const pool = new SshPool({ privateKey: await readFile(keyFile) });
  const runtime = state.config.vms.runtime;
  const power = hostPower({ testbed: state.name, runtime, keyFile });
  // Emulated boots run at the model's time scale: so do the pauses between reboot windows.
  const scale = runtime === 'emulated' ? state.config.vms.emulated.timeScale : 1;
  const byName = new Map(nodes.map((n) => [n.name, n]));
  try {
    const driver = createDriver({
      nodes: byName,
      pool,
      power,
      env,
      envBoot,
      broadcast: (method, list) =>
        broadcastImage(method, list, env, {
          keyFile,
          // the driver's connections: one per node for the whole deployment
          sshPool: pool,
          resumable: runtime === 'emulated',
          logger: ctx.logger,
          // thousands of emulated nodes share two cores: a busy one is slow, not dead
          stallMs: runtime === 'emulated' ? 10_000 : undefined,
          ringBytes: runtime === 'emulated' ? emulatedRingBytes : undefined,
        }),
      rebootGraceMs: runtime === 'emulated' ? 200 : 3000,
      probeIntervalMs: runtime === 'emulated' ? 250 : 2000,
    });
    const rebootWindow = window ?? { size: 50, sleepMs: 10_000 * scale };
    // the ETA starts from the last deployment of this environment on as many nodes, when there is one
    const earlier = (await listDeployments(state.name, { env: env.description.name }).catch(() => []))
      .filter((d) => d.nodes.length === nodes.length)
      .at(-1);
    const started = Date.now();
    const result = await ctx.progress.step(
      `Deploy ${env.description.name} v${env.description.version} on ${nodes.length} node(s): ${formatSteps(workflow)}`,
      async (step) => {
        const run = startWorkflow(
          nodes.map((n) => n.name),
          workflow,
          driver,
          {
            rebootWindow,
            // emulated boots run at the model's time scale; the floor covers queueing on this machine
            // (measured: ≈13 ms of boot queueing per VM at 1000 VMs)
            rebootTimeoutMs:
              runtime === 'emulated'
                ? (n) => Math.max(30_000, 30 * n, defaultRebootTimeoutMs(n) * scale)
                : undefined,
            // the driver bounds its probes itself; one window keeps a single deadline for all
            probeWindow: { size: nodes.length },
            breakpoint: req.breakpoint,
            priorBatchMs: earlier && macroSpans(earlier),
            onEvent: (e) => {
              const s = e.snapshot;
              const steps = Object.entries(s.byMacro)
                .filter(([, n]) => n > 0)
                .map(([m, n]) => `${n} ${m}`)
                .join(', ');
              // counted from timeouts until a batch ends (or an earlier deployment tells): at most that
              const eta =
                s.etaMs === undefined ? '' : `, ETA ${s.etaBound ? '≤ ' : ''}${Math.round(s.etaMs / 1000)} s`;
              step.status(`${s.ok} OK, ${s.ko} KO${steps ? `, ${steps}` : ''}${eta}`);
            },
          },
        );
        return run.done;
      },
    );
    const dep: Deployment = {
      id: newDeploymentId(started),
      testbed: state.name,
      user: req.user,
      env: { name: env.description.name, version: env.description.version },
      startedAt: result.startedAt,
      finishedAt: result.finishedAt,
      workflow: formatSteps(workflow),
      nodes: result.nodes,
      steps: result.steps,
      makespanMs: result.finishedAt - result.startedAt,
      // the boot model describes emulated VMs only; a QEMU VM's boot is what it is
      lowerBoundMs: runtime === 'emulated' ? lowerBoundMs(env, scale) : undefined,
    };
    const file = await saveDeployment(dep);
    const ok = dep.nodes.filter((n) => n.outcome === 'ok').length;
    return { ...dep, file, ok, ko: dep.nodes.length - ok };
  } finally {
    pool.close();
    power.close();
    await store.unlock();
  }
}

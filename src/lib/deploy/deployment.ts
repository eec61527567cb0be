// What `kabootstrap deploy` does: check the request (environment, its image, the nodes, the
// rights, the steps) before touching anything, then run the workflow engine on the testbed's VMs
// with the real driver, show progress, and store the per-node, per-step stats.
import { readFile } from 'node:fs/promises';
import { broadcastBudgetMs } from '../broadcast/controller.js';
import { broadcastStep } from '../broadcast/methods.js';
import { formatBroadcastProgress } from '../broadcast/progress.js';
import type { BroadcastProgress } from '../broadcast/types.js';
import { envBootFiles } from '../envs/boot-files.js';
import { canUse, checkDeployRights, getEnvironment, verifyImage } from '../envs/registry.js';
import { InputError } from '../errors.js';
import { findTaktuk } from '../exec/taktuk.js';
import type { Logger } from '../log.js';
import { openTestbed } from '../nodes/open-testbed.js';
import type { Progress } from '../progress.js';
import { runtimeFor } from '../runtime/index.js';
import { hostPower } from '../runtime/power.js';
import { envBootSchema } from '../services/config.js';
import { SshPool } from '../ssh/pool.js';
import { readControlSecret } from '../state/control-secret.js';
import { broadcastImage } from './broadcast-env.js';
import { createDriver, defaultDisk } from './driver.js';
import { envBootOf } from './env-boot.js';
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
  if (Number(m[2]) > 3600)
    throw new InputError(`${flag}: a pause of ${m[2]} s between windows is more than an hour`);
  return { size: Number(m[1]), sleepMs: Number(m[2]) * 1000 };
}

/** Everything a deployment needs, checked; throws one clear InputError and touches nothing. */
export async function checkDeployRequest(req: DeployRequest) {
  // the flags first: a bad one is named even when the testbed is not set up
  const window = req.rebootWindow ? parseWindow(req.rebootWindow, '--reboot-window') : undefined;
  if (req.breakpoint) parseBreakpoint(req.breakpoint);
  if (req.steps) parseSteps(req.steps);
  const { store, state, keyFile, knownHosts, nodes } = await openTestbed(req.testbed, req.nodeFile);
  let workflow: Workflow = mergeWorkflow(defaultWorkflow(), req.steps ? parseSteps(req.steps) : {});
  if (req.broadcast && !req.steps?.includes('BroadcastEnv|')) {
    const name = broadcastStep(req.broadcast);
    workflow = mergeWorkflow(
      workflow,
      parseSteps(`BroadcastEnv|${name}:1:${workflow.BroadcastEnv[0].timeoutMs / 1000}`),
    );
  }
  const env = await getEnvironment(req.env, req.envVersion);
  if (!req.steps?.includes('BroadcastEnv|')) {
    // not given: BroadcastEnv's budget follows the work (nodes, bytes), never below the default's
    workflow = {
      ...workflow,
      BroadcastEnv: workflow.BroadcastEnv.map((i) => workTimeout(i, nodes.length, env.bytes)),
    };
  }
  if (workflow.BroadcastEnv.some((i) => i.name === broadcastStep('taktuk'))) {
    // BroadcastEnv runs in the deployment environment: the runtime's may have no TakTuk to run
    const refusal = runtimeFor(state.config).tuning.taktukRefusal;
    if (refusal) throw new InputError(refusal);
    if (!findTaktuk())
      throw new InputError('BroadcastEnvTaktuk: taktuk is not installed (apt-get install taktuk)');
  }
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
  // null: a testbed set up before there were secrets, whose service nodes ask for none
  const controlSecret = await readControlSecret(store.layout.controlSecret);
  return { store, state, keyFile, knownHosts, env, nodes, workflow, window, envBoot, controlSecret };
}

/** A broadcast instance's timeout: its own, or what the work needs at the floors if that is more. */
export function workTimeout<T extends { timeoutMs: number }>(inst: T, nodes: number, bytes: number): T {
  return { ...inst, timeoutMs: Math.max(inst.timeoutMs, broadcastBudgetMs(nodes, bytes)) };
}

/** The progress line: the engine's counts, and where each running broadcast is. */
export class DeployStatus {
  private engine = '';
  private readonly casts = new Map<number, string>();
  private nextId = 0;

  constructor(private readonly show: (text: string) => void) {}

  setEngine(text: string) {
    this.engine = text;
    this.render();
  }

  /** A broadcast's progress callback; its part of the line goes once it is done. */
  broadcast(method: string): (p: BroadcastProgress) => void {
    const id = this.nextId++;
    return (p) => {
      if (p.phase === 'done') this.casts.delete(id);
      else this.casts.set(id, formatBroadcastProgress(method, p));
      this.render();
    };
  }

  private render() {
    this.show([this.engine, ...this.casts.values()].filter(Boolean).join('; '));
  }
}

export async function deployTestbed(
  req: DeployRequest,
  ctx: { logger: Logger; progress: Progress },
): Promise<DeployResult> {
  const { store, state, keyFile, knownHosts, env, nodes, workflow, window, envBoot, controlSecret } =
    await checkDeployRequest(req);
  await store.lock('deploy');
  const pool = new SshPool({ privateKey: await readFile(keyFile), knownHosts });
  const runtime = runtimeFor(state.config);
  const tuning = runtime.tuning;
  const power = hostPower({ runtime, keyFile, knownHosts });
  // Emulated boots run at the model's time scale: so do the pauses between reboot windows.
  const scale = tuning.timeScale;
  const runtimeTimeout = tuning.rebootTimeoutMs;
  const byName = new Map(nodes.map((n) => [n.name, n]));
  // the progress step's line, once the step has started
  let show: (text: string) => void = () => {};
  const status = new DeployStatus((t) => show(t));
  try {
    const driver = createDriver({
      nodes: byName,
      pool,
      knownHosts,
      power,
      env,
      envBoot,
      controlSecret,
      broadcast: (method, list, bctx) =>
        broadcastImage(method, list, env, {
          keyFile,
          knownHosts,
          // bounded by the step: its time left and its abort
          timeoutMs: bctx.timeoutMs,
          signal: bctx.signal,
          onProgress: status.broadcast(method),
          // the driver's connections: one per node for the whole deployment
          sshPool: pool,
          // the protocol the nodes' agent speaks, and how slow a receiver may be
          ...tuning.broadcast,
          logger: ctx.logger,
        }),
      rebootGraceMs: tuning.rebootGraceMs,
      probeIntervalMs: tuning.probeIntervalMs,
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
        show = (t) => step.status(t);
        const run = startWorkflow(
          nodes.map((n) => n.name),
          workflow,
          driver,
          {
            rebootWindow,
            // the runtime's own reboot timeout (the emulated one scales with the boot model)
            rebootTimeoutMs: runtimeTimeout && ((n) => runtimeTimeout(n, defaultRebootTimeoutMs(n))),
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
              status.setEngine(`${s.ok} OK, ${s.ko} KO${steps ? `, ${steps}` : ''}${eta}`);
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
      // only a runtime with a boot model has one; a QEMU VM's boot is what it is
      lowerBoundMs: tuning.lowerBoundMs?.(env.bytes),
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

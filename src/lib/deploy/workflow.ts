// The workflow engine: runs each macro-step instance on a node set, one micro-step after the other,
// through an injected driver. The set splits as it goes (Kadeploy's model): nodes that pass an
// instance move on as a batch, failed ones retry the same instance and then fall back to the next,
// each as its own concurrent batch. Pure logic: every effect goes through the driver, every wait
// through the Clock, so tests run whole deployments in virtual time.
import { setTimeout as sleepTimer } from 'node:timers/promises';
import { type BroadcastMethod, byBroadcastStep } from '../broadcast/methods.js';
import { InputError } from '../errors.js';
import type { RebootLevel } from '../runtime/power.js';
import type { NodeResult, StepRecord } from './stats.js';
import {
  type InstanceName,
  isMacroStep,
  MACRO_STEPS,
  type MacroStep,
  STEP_INSTANCES,
  type Workflow,
} from './steps.js';

// --- clock ---------------------------------------------------------------------------------------

export interface Clock {
  now(): number;
  /** Resolves after `ms`; rejects with the signal's reason if it aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const realClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) => sleepTimer(ms, undefined, { signal }),
};

// --- micro-steps ---------------------------------------------------------------------------------

export type { BroadcastMethod, RebootLevel };

export type MicroStep =
  | { kind: 'switchProfile'; profile: 'deploy' | 'deployed' }
  | { kind: 'reboot'; level: RebootLevel }
  | { kind: 'kexec'; target: 'deploy' | 'deployed' }
  | { kind: 'waitReboot'; env: 'deploy' | 'deployed' }
  | { kind: 'installKey' }
  | { kind: 'partition' }
  | { kind: 'format' }
  | { kind: 'mount' }
  | { kind: 'broadcast'; method: BroadcastMethod }
  | { kind: 'sync' };

export type MicroKind = MicroStep['kind'];

/** `reboot(hard)`, `installKey`: the name records, events and breakpoints use. */
export function microLabel(m: MicroStep): string {
  switch (m.kind) {
    case 'switchProfile':
      return `switchProfile(${m.profile})`;
    case 'reboot':
      return `reboot(${m.level})`;
    case 'kexec':
      return `kexec(${m.target})`;
    case 'waitReboot':
      return `waitReboot(${m.env})`;
    case 'broadcast':
      return `broadcast(${m.method})`;
    default:
      return m.kind;
  }
}

const prepareDisk: MicroStep[] = [
  { kind: 'installKey' },
  { kind: 'partition' },
  { kind: 'format' },
  { kind: 'mount' },
];

/** The fixed micro-steps of each instance, as run on a first attempt. */
export const INSTANCE_MICRO_STEPS: Record<InstanceName, readonly MicroStep[]> = {
  SetDeploymentEnvUntrusted: [
    { kind: 'switchProfile', profile: 'deploy' },
    { kind: 'reboot', level: 'soft' },
    { kind: 'waitReboot', env: 'deploy' },
    ...prepareDisk,
  ],
  SetDeploymentEnvKexec: [
    { kind: 'kexec', target: 'deploy' },
    { kind: 'waitReboot', env: 'deploy' },
    ...prepareDisk,
  ],
  ...byBroadcastStep<readonly MicroStep[]>((method) => [{ kind: 'broadcast', method }, { kind: 'sync' }]),
  BootNewEnvKexec: [
    { kind: 'kexec', target: 'deployed' },
    { kind: 'waitReboot', env: 'deployed' },
  ],
  BootNewEnvClassical: [
    { kind: 'switchProfile', profile: 'deployed' },
    { kind: 'reboot', level: 'soft' },
    { kind: 'waitReboot', env: 'deployed' },
  ],
  BootNewEnvHardReboot: [
    { kind: 'switchProfile', profile: 'deployed' },
    { kind: 'reboot', level: 'hard' },
    { kind: 'waitReboot', env: 'deployed' },
  ],
};

const rebootLevels: RebootLevel[] = ['soft', 'hard', 'very_hard'];

/**
 * The micro-steps of an attempt: each retry raises reboots one level (soft → hard → very_hard),
 * since a node that did not come back from a soft reboot will likely ignore the next one too.
 */
export function microStepsFor(instance: InstanceName, attempt: number): MicroStep[] {
  return INSTANCE_MICRO_STEPS[instance].map((m) => {
    if (m.kind !== 'reboot') return m;
    const level = Math.min(rebootLevels.indexOf(m.level) + Math.max(0, attempt - 1), rebootLevels.length - 1);
    return { kind: 'reboot', level: rebootLevels[level] };
  });
}

// --- driver and options --------------------------------------------------------------------------

export type NodeOutcome = { ok: true } | { ok: false; reason: string };

export interface MicroContext {
  /** 1 for the first attempt of the instance. */
  attempt: number;
  instance: InstanceName;
  /** Aborts on the instance's timeout or on cancellation. */
  signal: AbortSignal;
  /** Time the driver may take for this call. */
  timeoutMs: number;
}

export interface WorkflowDriver {
  /** Runs one micro-step on the nodes; a node missing from the map has failed. */
  run(micro: MicroStep, nodes: string[], ctx: MicroContext): Promise<Map<string, NodeOutcome>>;
}

export interface Window {
  /** Nodes per driver call. */
  size: number;
  /** Pause between two calls. */
  sleepMs: number;
}

export interface WorkflowOptions {
  clock?: Clock;
  /** Reboots are issued this many nodes at a time (default 50, then 10 s of sleep). */
  rebootWindow?: Window;
  /** At most this many nodes per waitReboot call (default 50, no sleep). */
  probeWindow?: Partial<Window> & { size: number };
  /** waitReboot's budget for n nodes, capped by what is left of the instance's timeout. */
  rebootTimeoutMs?: (n: number) => number;
  /** `Macro` or `Macro:micro` (kind like `reboot` or label like `reboot(hard)`): nodes stop before it. */
  breakpoint?: string;
  signal?: AbortSignal;
  /** Progress; an exception thrown here is ignored. */
  onEvent?: (event: WorkflowEvent) => void;
  /**
   * How long each macro-step's batch took in an earlier deployment like this one: the ETA's
   * estimate until a batch of this deployment finishes (else the instance's timeout, a bound).
   */
  priorBatchMs?: Partial<Record<MacroStep, number>>;
}

export const defaultRebootWindow: Window = { size: 50, sleepMs: 10_000 };
export const defaultProbeWindow: Window = { size: 50, sleepMs: 0 };
export const defaultRebootTimeoutMs = (n: number): number => (200 + 150 * Math.log10(Math.max(n, 1))) * 1000;

// --- progress ------------------------------------------------------------------------------------

export interface WorkflowSnapshot {
  at: number;
  total: number;
  ok: number;
  ko: number;
  /** Nodes not finished yet. */
  running: number;
  /** Running nodes per macro-step. */
  byMacro: Record<MacroStep, number>;
  /** Running nodes per `Macro:micro-label`, e.g. `BootNewEnv:waitReboot(deployed)`. */
  byMicro: Record<string, number>;
  /**
   * Time until the last running node should be done: per macro-step, the mean duration of its
   * finished batches (until one finishes: an earlier deployment's, else the first instance's
   * timeout) for what is left.
   */
  etaMs?: number;
  /** The ETA counts some timeout in: it is an upper bound rather than an estimate. */
  etaBound?: boolean;
}

interface BatchInfo {
  macro: MacroStep;
  instance: InstanceName;
  attempt: number;
  at: number;
}

export type WorkflowEvent =
  | (BatchInfo & { type: 'batchStart'; nodes: string[]; snapshot: WorkflowSnapshot })
  | (BatchInfo & { type: 'microStart'; micro: string; nodes: string[]; snapshot: WorkflowSnapshot })
  | (BatchInfo & {
      type: 'batchEnd';
      durationMs: number;
      /** Nodes that move on to the next macro-step. */
      ok: string[];
      /** Nodes that failed during this attempt (they retry, fall back or end KO). */
      ko: string[];
      /** Nodes that stopped at the breakpoint. */
      stopped: string[];
      snapshot: WorkflowSnapshot;
    })
  | { type: 'nodeDone'; at: number; result: NodeResult; snapshot: WorkflowSnapshot };

export interface WorkflowResult {
  startedAt: number;
  finishedAt: number;
  /** One per node, in input order. */
  nodes: NodeResult[];
  steps: StepRecord[];
}

export interface WorkflowRun {
  snapshot(): WorkflowSnapshot;
  done: Promise<WorkflowResult>;
}

// --- validation ----------------------------------------------------------------------------------

export interface Breakpoint {
  text: string;
  macro: MacroStep;
  micro?: string;
}

/** Reads `Macro` or `Macro:micro`; the micro-step must exist in some instance of that macro-step. */
export function parseBreakpoint(text: string): Breakpoint {
  const [macro, micro, ...rest] = text.split(':').map((s) => s.trim());
  if (!isMacroStep(macro) || rest.length > 0) {
    throw new InputError(
      `breakpoint "${text}": expected Macro or Macro:micro with Macro one of ${MACRO_STEPS.join(', ')}`,
    );
  }
  if (micro === undefined) return { text, macro };
  const known = new Set<string>();
  for (const inst of STEP_INSTANCES[macro]) {
    for (const m of [1, 2, 3].flatMap((a) => microStepsFor(inst, a))) {
      known.add(m.kind);
      known.add(microLabel(m));
    }
  }
  if (!known.has(micro)) {
    const kinds = [
      ...new Set(STEP_INSTANCES[macro].flatMap((i) => INSTANCE_MICRO_STEPS[i].map((m) => m.kind))),
    ];
    throw new InputError(
      `breakpoint "${text}": ${macro} has no micro-step "${micro}" (expected ${kinds.join(', ')})`,
    );
  }
  return { text, macro, micro };
}

function checkBatchWindow(w: { size: number; sleepMs?: number }, what: string): void {
  if (!Number.isInteger(w.size) || w.size < 1)
    throw new InputError(`${what} size ${w.size}: expected a whole number >= 1`);
  if (w.sleepMs !== undefined && !(w.sleepMs >= 0)) {
    throw new InputError(`${what} sleep ${w.sleepMs} ms: expected a duration >= 0`);
  }
}

function checkWorkflow(workflow: Workflow): void {
  for (const macro of MACRO_STEPS) {
    const list = workflow[macro];
    if (!list || list.length === 0) throw new InputError(`workflow: ${macro} has no step instance`);
    for (const i of list) {
      if (!(STEP_INSTANCES[macro] as readonly string[]).includes(i.name)) {
        throw new InputError(
          `workflow: "${i.name}" is not a ${macro} step (expected ${STEP_INSTANCES[macro].join(', ')})`,
        );
      }
      if (!Number.isInteger(i.retries) || i.retries < 0)
        throw new InputError(`workflow: ${i.name} retries ${i.retries}: expected >= 0`);
      if (!(i.timeoutMs > 0))
        throw new InputError(`workflow: ${i.name} timeout ${i.timeoutMs} ms: expected > 0`);
    }
  }
}

// --- engine --------------------------------------------------------------------------------------

const ABORTED = Symbol('aborted');

/** p's value, or ABORTED as soon as the signal aborts; a driver that ignores the signal cannot hold us. */
function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T | typeof ABORTED> {
  if (signal.aborted) return Promise.resolve(ABORTED);
  return new Promise((resolve, reject) => {
    const onAbort = () => resolve(ABORTED);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

class Engine {
  readonly clock: Clock;
  readonly rebootWindow: Window;
  readonly probeWindow: Window;
  readonly rebootTimeoutMs: (n: number) => number;
  readonly breakpoint?: Breakpoint;
  readonly signal?: AbortSignal;
  readonly startedAt: number;

  readonly records: StepRecord[] = [];
  readonly results = new Map<string, NodeResult>();
  private readonly used = new Map<string, InstanceName[]>();
  private readonly position = new Map<string, { macro: MacroStep; micro?: string }>();
  private readonly byMacro: Record<MacroStep, number> = {
    SetDeploymentEnv: 0,
    BroadcastEnv: 0,
    BootNewEnv: 0,
  };
  private readonly byMicro = new Map<string, number>();
  private readonly batchTimes: Record<MacroStep, { total: number; count: number }> = {
    SetDeploymentEnv: { total: 0, count: 0 },
    BroadcastEnv: { total: 0, count: 0 },
    BootNewEnv: { total: 0, count: 0 },
  };
  private readonly active = new Set<{ macro: MacroStep; start: number; timeoutMs: number }>();
  private ok = 0;
  private ko = 0;

  constructor(
    private readonly nodes: string[],
    private readonly workflow: Workflow,
    private readonly driver: WorkflowDriver,
    private readonly opts: WorkflowOptions,
  ) {
    this.clock = opts.clock ?? realClock;
    this.rebootWindow = opts.rebootWindow ?? defaultRebootWindow;
    this.probeWindow = { ...defaultProbeWindow, ...opts.probeWindow };
    this.rebootTimeoutMs = opts.rebootTimeoutMs ?? defaultRebootTimeoutMs;
    this.breakpoint = opts.breakpoint === undefined ? undefined : parseBreakpoint(opts.breakpoint);
    this.signal = opts.signal;
    this.startedAt = this.clock.now();
  }

  async run(): Promise<WorkflowResult> {
    if (this.nodes.length > 0) await this.macroStep(this.nodes, 0);
    // Defensive: every path above ends its nodes; a gap would be an engine bug, not a silent OK.
    for (const n of this.nodes) if (!this.results.has(n)) this.finish(n, 'ko', 'internal: no outcome');
    return {
      startedAt: this.startedAt,
      finishedAt: this.clock.now(),
      nodes: this.nodes.map((n) => this.results.get(n)!),
      steps: this.records,
    };
  }

  snapshot(): WorkflowSnapshot {
    const now = this.clock.now();
    const running = this.nodes.length - this.ok - this.ko;
    const snap: WorkflowSnapshot = {
      at: now,
      total: this.nodes.length,
      ok: this.ok,
      ko: this.ko,
      running,
      byMacro: { ...this.byMacro },
      byMicro: Object.fromEntries([...this.byMicro].filter(([, n]) => n > 0)),
    };
    if (running > 0) {
      let eta = 0;
      let bound = false;
      for (const b of this.active) {
        const mi = MACRO_STEPS.indexOf(b.macro);
        const here = this.estimate(b.macro, b.timeoutMs);
        let left = Math.max(0, b.start + here.ms - now);
        let fromTimeouts = here.bound;
        for (const m of MACRO_STEPS.slice(mi + 1)) {
          const e = this.estimate(m, this.workflow[m][0].timeoutMs);
          left += e.ms;
          fromTimeouts ||= e.bound;
        }
        if (left >= eta) {
          eta = left;
          bound = fromTimeouts;
        }
      }
      snap.etaMs = eta;
      if (bound) snap.etaBound = true;
    }
    return snap;
  }

  private estimate(macro: MacroStep, timeoutMs: number): { ms: number; bound: boolean } {
    const t = this.batchTimes[macro];
    if (t.count > 0) return { ms: t.total / t.count, bound: false };
    const prior = this.opts.priorBatchMs?.[macro];
    return prior !== undefined ? { ms: prior, bound: false } : { ms: timeoutMs, bound: true };
  }

  private emit(event: WorkflowEvent): void {
    try {
      this.opts.onEvent?.(event);
    } catch {
      // A broken progress display must not abort a deployment.
    }
  }

  private place(node: string, macro: MacroStep, micro?: string): void {
    this.unplace(node);
    this.position.set(node, { macro, micro });
    this.byMacro[macro]++;
    if (micro !== undefined)
      this.byMicro.set(`${macro}:${micro}`, (this.byMicro.get(`${macro}:${micro}`) ?? 0) + 1);
  }

  private unplace(node: string): void {
    const p = this.position.get(node);
    if (!p) return;
    this.position.delete(node);
    this.byMacro[p.macro]--;
    if (p.micro !== undefined)
      this.byMicro.set(`${p.macro}:${p.micro}`, this.byMicro.get(`${p.macro}:${p.micro}`)! - 1);
  }

  private finish(node: string, outcome: 'ok' | 'ko', reason?: string, breakpoint?: string): void {
    if (this.results.has(node)) throw new Error(`internal: node ${node} finished twice`);
    this.unplace(node);
    const result: NodeResult = {
      node,
      outcome,
      finishedAt: this.clock.now(),
      steps: [...(this.used.get(node) ?? [])],
    };
    if (reason !== undefined) result.reason = reason;
    if (breakpoint !== undefined) result.breakpoint = breakpoint;
    this.results.set(node, result);
    if (outcome === 'ok') this.ok++;
    else this.ko++;
    this.emit({ type: 'nodeDone', at: result.finishedAt, result, snapshot: this.snapshot() });
  }

  private async macroStep(nodes: string[], mi: number): Promise<void> {
    if (mi === MACRO_STEPS.length) {
      for (const n of nodes) this.finish(n, 'ok');
      return;
    }
    const macro = MACRO_STEPS[mi];
    if (this.breakpoint?.macro === macro && this.breakpoint.micro === undefined) {
      for (const n of nodes) this.finish(n, 'ok', undefined, this.breakpoint.text);
      return;
    }
    await this.attempt(nodes, mi, 0, 1);
  }

  /** One attempt of one instance on a node set, then whatever comes next for each part of the set. */
  private async attempt(nodes: string[], mi: number, ii: number, attempt: number): Promise<void> {
    if (this.signal?.aborted) {
      for (const n of nodes) this.finish(n, 'ko', 'cancelled');
      return;
    }
    const macro = MACRO_STEPS[mi];
    const inst = this.workflow[macro][ii];
    for (const n of nodes) {
      const used = this.used.get(n) ?? [];
      if (!used.includes(inst.name)) used.push(inst.name);
      this.used.set(n, used);
      this.place(n, macro);
    }
    const info = { macro, instance: inst.name, attempt };
    const start = this.clock.now();
    const batch = { macro, start, timeoutMs: inst.timeoutMs };
    this.active.add(batch);
    this.emit({ type: 'batchStart', ...info, at: start, nodes: [...nodes], snapshot: this.snapshot() });

    const next: Promise<void>[] = [];
    const failedAll: string[] = [];
    // Failed nodes leave at once, as their own batch, instead of waiting for the rest of the set.
    const onFailed = (failed: Map<string, string>) => {
      failedAll.push(...failed.keys());
      next.push(this.afterFailure(failed, mi, ii, attempt));
    };
    const { ok, stopped } = await this.runInstance(
      nodes,
      macro,
      inst.name,
      inst.timeoutMs,
      attempt,
      onFailed,
    );

    const end = this.clock.now();
    this.active.delete(batch);
    if (ok.length > 0) {
      this.batchTimes[macro].total += end - start;
      this.batchTimes[macro].count++;
    }
    this.emit({
      type: 'batchEnd',
      ...info,
      at: end,
      durationMs: end - start,
      ok,
      ko: failedAll,
      stopped,
      snapshot: this.snapshot(),
    });
    if (ok.length > 0) next.push(this.macroStep(ok, mi + 1));
    await Promise.all(next);
  }

  private async afterFailure(
    failed: Map<string, string>,
    mi: number,
    ii: number,
    attempt: number,
  ): Promise<void> {
    const nodes = [...failed.keys()];
    if (this.signal?.aborted) {
      for (const n of nodes) this.finish(n, 'ko', 'cancelled');
      return;
    }
    const list = this.workflow[MACRO_STEPS[mi]];
    if (attempt <= list[ii].retries) return this.attempt(nodes, mi, ii, attempt + 1);
    if (ii + 1 < list.length) return this.attempt(nodes, mi, ii + 1, 1);
    for (const [n, reason] of failed) this.finish(n, 'ko', reason);
  }

  /** Runs the micro-steps under the instance's timeout; returns the nodes that passed them all. */
  private async runInstance(
    nodes: string[],
    macro: MacroStep,
    instance: InstanceName,
    timeoutMs: number,
    attempt: number,
    onFailed: (failed: Map<string, string>) => void,
  ): Promise<{ ok: string[]; stopped: string[] }> {
    const start = this.clock.now();
    const ctrl = new AbortController();
    const onCancel = () => ctrl.abort(this.signal?.reason);
    this.signal?.addEventListener('abort', onCancel, { once: true });
    const timer = new AbortController();
    this.clock.sleep(timeoutMs, timer.signal).then(
      () => ctrl.abort(new Error(`timeout of ${instance}`)),
      () => {},
    );
    let live = nodes;
    try {
      for (const micro of microStepsFor(instance, attempt)) {
        const label = microLabel(micro);
        const bp = this.breakpoint;
        if (bp?.macro === macro && (bp.micro === micro.kind || bp.micro === label)) {
          for (const n of live) this.finish(n, 'ok', undefined, bp.text);
          return { ok: [], stopped: live };
        }
        for (const n of live) this.place(n, macro, label);
        this.emit({
          type: 'microStart',
          macro,
          instance,
          attempt,
          at: this.clock.now(),
          micro: label,
          nodes: [...live],
          snapshot: this.snapshot(),
        });
        const deadline = start + timeoutMs;
        const failed = await this.runMicro(
          macro,
          micro,
          label,
          live,
          instance,
          attempt,
          deadline,
          ctrl.signal,
        );
        if (failed.size > 0) {
          live = live.filter((n) => !failed.has(n));
          onFailed(failed);
        }
        if (live.length === 0) break;
      }
      return { ok: live, stopped: [] };
    } finally {
      timer.abort();
      this.signal?.removeEventListener('abort', onCancel);
    }
  }

  /** One micro-step on the live nodes, in windows; returns failed nodes with their final reason. */
  private async runMicro(
    macro: MacroStep,
    micro: MicroStep,
    label: string,
    nodes: string[],
    instance: InstanceName,
    attempt: number,
    deadline: number,
    signal: AbortSignal,
  ): Promise<Map<string, string>> {
    const failed = new Map<string, string>();
    const window =
      micro.kind === 'reboot'
        ? this.rebootWindow
        : micro.kind === 'waitReboot'
          ? this.probeWindow
          : undefined;
    const windows = window ? chunks(nodes, window.size) : [nodes];
    const microStart = this.clock.now();
    // One budget for all probe windows: nodes of later windows have been rebooting meanwhile.
    // Whole milliseconds, so the budget a driver sees is exactly what the options say.
    const budget = Math.ceil(
      micro.kind === 'waitReboot'
        ? Math.min(deadline - microStart, this.rebootTimeoutMs(nodes.length))
        : deadline - microStart,
    );
    const passed: string[] = [];

    const record = (node: string, start: number, ok: boolean, error?: string) => {
      const r: StepRecord = {
        node,
        macro,
        instance,
        micro: label,
        attempt,
        start,
        durationMs: this.clock.now() - start,
        outcome: ok ? 'ok' : 'ko',
      };
      if (error !== undefined) r.error = error;
      this.records.push(r);
    };
    const interrupt = (from: number, callStart?: number) => {
      const reason = this.signal?.aborted ? 'cancelled' : `Timeout in the ${instance} step (${label})`;
      // Nodes of earlier windows passed this micro-step but are still in the aborted attempt.
      for (const n of passed) failed.set(n, reason);
      windows.slice(from).forEach((win, k) => {
        for (const n of win) {
          record(n, k === 0 && callStart !== undefined ? callStart : this.clock.now(), false, reason);
          failed.set(n, reason);
        }
      });
    };

    for (let w = 0; w < windows.length; w++) {
      if (w > 0 && window && window.sleepMs > 0) {
        try {
          await this.clock.sleep(window.sleepMs, signal);
        } catch {
          // Only an abort ends a clock's sleep early; it is handled just below.
        }
      }
      if (signal.aborted) {
        interrupt(w);
        break;
      }
      const win = windows[w];
      const callStart = this.clock.now();
      const ctx: MicroContext = {
        attempt,
        instance,
        signal,
        timeoutMs: Math.max(0, budget - (callStart - microStart)),
      };
      const res = await raceAbort(this.call(micro, win, ctx), signal);
      if (res === ABORTED) {
        interrupt(w, callStart);
        break;
      }
      for (const n of win) {
        const o = res.get(n) ?? { ok: false, reason: 'no result' };
        if (o.ok) {
          record(n, callStart, true);
          passed.push(n);
        } else {
          record(n, callStart, false, o.reason);
          failed.set(n, `${instance}: ${o.reason}`);
        }
      }
    }
    return failed;
  }

  /** The driver's answer; an exception (sync or async) fails every node of the call with its message. */
  private async call(
    micro: MicroStep,
    nodes: string[],
    ctx: MicroContext,
  ): Promise<Map<string, NodeOutcome>> {
    try {
      return await this.driver.run(micro, [...nodes], ctx);
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      return new Map(nodes.map((n) => [n, { ok: false, reason }] as const));
    }
  }
}

/** Starts a deployment workflow; `snapshot()` reads its progress while `done` is pending. */
export function startWorkflow(
  nodes: string[],
  workflow: Workflow,
  driver: WorkflowDriver,
  opts: WorkflowOptions = {},
): WorkflowRun {
  const seen = new Set<string>();
  for (const n of nodes) {
    if (seen.has(n)) throw new InputError(`node "${n}" is listed twice`);
    seen.add(n);
  }
  checkWorkflow(workflow);
  checkBatchWindow(opts.rebootWindow ?? defaultRebootWindow, 'reboot window');
  checkBatchWindow({ ...defaultProbeWindow, ...opts.probeWindow }, 'probe window');
  const engine = new Engine([...nodes], workflow, driver, opts);
  return { snapshot: () => engine.snapshot(), done: engine.run() };
}

/** Runs a deployment workflow to its end: every node ends exactly once, OK or KO with a reason. */
export async function runWorkflow(
  nodes: string[],
  workflow: Workflow,
  driver: WorkflowDriver,
  opts: WorkflowOptions = {},
): Promise<WorkflowResult> {
  return startWorkflow(nodes, workflow, driver, opts).done;
}

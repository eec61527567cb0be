// The workflow engine: runs each macro-step instance on a node set, one micro-step after the other,
// through an injected driver. The set splits as it goes (Kadeploy's model): nodes that pass an
// instance move on as a batch, failed ones retry the same instance and then fall back to the next,
// each as its own concurrent batch. A node the driver reports back early (one back from its reboot)
// goes on to its next micro-step at once, and a node still waiting for its reboot long after its
// peers came back does not hold their departure to the next macro-step: it goes on alone, or times
// out, retries and fails alone. Pure logic: every effect goes through the driver, every wait
// through the Clock, so tests run whole deployments in virtual time.
import { setMaxListeners } from 'node:events';
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
  // The profile first, as Kadeploy does: a node reset after a kexec deployment must network-boot
  // the deployed system, not the deployment environment.
  BootNewEnvKexec: [
    { kind: 'switchProfile', profile: 'deployed' },
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
  /**
   * One node's outcome before the call returns (e.g. a node back from its reboot): that node goes on
   * to its next micro-step at once instead of waiting for the rest of the call. Its entry in the
   * returned map, if any, is then ignored; so is a report after the call has ended.
   */
  report?(node: string, outcome: NodeOutcome): void;
}

export interface WorkflowDriver {
  /** Runs one micro-step on the nodes; a node neither reported nor in the map has failed. */
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
  /**
   * waitReboot's budget when n nodes are rebooting at once (those between their reboot or kexec and
   * their return, in every batch, this one included), capped by what is left of the instance's timeout.
   */
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
/** Kadeploy's reboot timeout: 200 s, plus 150 s per tenfold more nodes rebooting at once. */
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
      /**
       * Nodes of the batch move on: all of them once each has passed, failed or stopped; before that,
       * those that passed, when the only ones left are still waiting for a reboot long after their
       * peers came back (they go on later, in another batchEnd of the same attempt).
       */
      type: 'batchEnd';
      durationMs: number;
      /** Nodes that move on to the next macro-step. */
      ok: string[];
      /** Nodes that failed during this attempt since its last batchEnd (they retry, fall back or end KO). */
      ko: string[];
      /** Nodes that stopped at the breakpoint since the attempt's last batchEnd. */
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

/**
 * A node still waiting for its reboot after this many times the slowest return of its peers no
 * longer holds their departure to the next macro-step.
 */
export const STRAGGLER_FACTOR = 2;

/** The micro-steps between a reboot order and the node's return. */
const rebooting = /^(reboot|kexec|waitReboot)\(/;

/** One attempt of one instance on a node set, while it runs: where its nodes are, for departures. */
interface Attempt {
  macro: MacroStep;
  mi: number;
  ii: number;
  instance: InstanceName;
  attempt: number;
  start: number;
  nodes: string[];
  /** Its entry among the active batches (the ETA). */
  batch: { macro: MacroStep; start: number; timeoutMs: number };
  /** Nodes that passed every micro-step, failed or stopped. */
  settled: Set<string>;
  /** Since the last batchEnd: passed (not departed yet), failed, stopped. */
  passed: string[];
  ko: string[];
  stopped: string[];
  /** Nodes in a waitReboot call, since its start. */
  waiting: Map<string, number>;
  /** The longest a node of the attempt took to come back from its reboot. */
  slowestBackMs?: number;
  /** The pending check for the time the nodes still waiting become late. */
  recheck?: AbortController;
  /** A batchEnd was emitted. */
  ended: boolean;
  /** What comes next for the nodes that left: retries, fallbacks, the next macro-step. */
  next: Promise<void>[];
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
    // every instance in flight (one per batch of nodes, thousands of nodes make many) listens
    // for the cancellation: not a leak, as Node's warning past 10 listeners would say
    if (opts.signal) setMaxListeners(0, opts.signal);
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
    const start = this.clock.now();
    const a: Attempt = {
      macro,
      mi,
      ii,
      instance: inst.name,
      attempt,
      start,
      nodes,
      batch: { macro, start, timeoutMs: inst.timeoutMs },
      settled: new Set(),
      passed: [],
      ko: [],
      stopped: [],
      waiting: new Map(),
      ended: false,
      next: [],
    };
    this.active.add(a.batch);
    this.emit({
      type: 'batchStart',
      macro,
      instance: inst.name,
      attempt,
      at: start,
      nodes: [...nodes],
      snapshot: this.snapshot(),
    });
    await this.runInstance(a, inst.timeoutMs);
    // Every node has passed, failed or stopped: what has not departed yet ends the batch.
    this.depart(a, true);
    await Promise.all(a.next);
  }

  /**
   * Nodes of the attempt that passed go on to the next macro-step together once no other node of the
   * attempt is still on its way (the last macro-step has nothing to gather for: they end at once).
   * A node waiting for its reboot for twice as long as the slowest of its peers took to come back
   * (STRAGGLER_FACTOR) is not on its way any more: the others leave without it, and it goes on alone
   * if it comes back, or fails alone at its timeout.
   */
  private checkDeparture(a: Attempt): void {
    a.recheck?.abort();
    a.recheck = undefined;
    if (a.passed.length === 0) return;
    if (a.mi + 1 < MACRO_STEPS.length) {
      const now = this.clock.now();
      let lateAt = now;
      for (const n of a.nodes) {
        if (a.settled.has(n)) continue;
        const since = a.waiting.get(n);
        if (since === undefined || a.slowestBackMs === undefined) return;
        lateAt = Math.max(lateAt, since + STRAGGLER_FACTOR * a.slowestBackMs);
      }
      if (lateAt > now) {
        const ctrl = new AbortController();
        a.recheck = ctrl;
        this.clock.sleep(lateAt - now, ctrl.signal).then(
          () => {
            if (a.recheck === ctrl) this.checkDeparture(a);
          },
          () => {},
        );
        return;
      }
    }
    this.depart(a, false);
  }

  /** A batchEnd for what passed, failed or stopped since the last one; those that passed go on. */
  private depart(a: Attempt, final: boolean): void {
    if (final ? a.ended && a.passed.length + a.ko.length + a.stopped.length === 0 : a.passed.length === 0)
      return;
    const ok = a.passed.splice(0);
    const ko = a.ko.splice(0);
    const stopped = a.stopped.splice(0);
    const end = this.clock.now();
    if (a.settled.size === a.nodes.length) {
      this.active.delete(a.batch);
      a.recheck?.abort();
      a.recheck = undefined;
    }
    if (ok.length > 0) {
      this.batchTimes[a.macro].total += end - a.start;
      this.batchTimes[a.macro].count++;
    }
    a.ended = true;
    this.emit({
      type: 'batchEnd',
      macro: a.macro,
      instance: a.instance,
      attempt: a.attempt,
      at: end,
      durationMs: end - a.start,
      ok,
      ko,
      stopped,
      snapshot: this.snapshot(),
    });
    if (ok.length > 0) a.next.push(this.macroStep(ok, a.mi + 1));
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

  /**
   * Runs the micro-steps under the instance's timeout. The set runs them together, except that a
   * node the driver reports early goes on to its next micro-step at once (with the others reported in
   * the same instant); failed nodes leave at once, as their own batch.
   */
  private async runInstance(a: Attempt, timeoutMs: number): Promise<void> {
    const { macro, instance, attempt } = a;
    const start = this.clock.now();
    const deadline = start + timeoutMs;
    const ctrl = new AbortController();
    // each node's command of the instance listens for its end (timeout, cancel): many at once
    setMaxListeners(0, ctrl.signal);
    const onCancel = () => ctrl.abort(this.signal?.reason);
    this.signal?.addEventListener('abort', onCancel, { once: true });
    const timer = new AbortController();
    this.clock.sleep(timeoutMs, timer.signal).then(
      () => ctrl.abort(new Error(`timeout of ${instance}`)),
      () => {},
    );
    const steps = microStepsFor(instance, attempt);
    const settle = (nodes: Iterable<string>, into: string[]) => {
      for (const n of nodes) {
        a.settled.add(n);
        a.waiting.delete(n);
        into.push(n);
      }
      this.checkDeparture(a);
    };
    const failed = (f: Map<string, string>) => {
      a.next.push(this.afterFailure(f, a.mi, a.ii, attempt));
      settle(f.keys(), a.ko);
    };
    const runFrom = async (group: string[], k: number): Promise<void> => {
      if (k === steps.length) return settle(group, a.passed);
      const micro = steps[k];
      const label = microLabel(micro);
      const bp = this.breakpoint;
      if (bp?.macro === macro && (bp.micro === micro.kind || bp.micro === label)) {
        for (const n of group) this.finish(n, 'ok', undefined, bp.text);
        return settle(group, a.stopped);
      }
      for (const n of group) this.place(n, macro, label);
      this.emit({
        type: 'microStart',
        macro,
        instance,
        attempt,
        at: this.clock.now(),
        micro: label,
        nodes: [...group],
        snapshot: this.snapshot(),
      });
      const children: Promise<void>[] = [];
      await this.runMicro(
        a,
        micro,
        label,
        group,
        deadline,
        ctrl.signal,
        (passed) => children.push(runFrom(passed, k + 1)),
        failed,
      );
      await Promise.all(children);
    };
    try {
      await runFrom(a.nodes, 0);
    } finally {
      timer.abort();
      this.signal?.removeEventListener('abort', onCancel);
    }
  }

  /** Nodes between their reboot (or kexec) and their return, in every batch: at least `min`. */
  private rebootingNow(min: number): number {
    let n = 0;
    for (const p of this.position.values()) if (p.micro !== undefined && rebooting.test(p.micro)) n++;
    return Math.max(n, min);
  }

  /**
   * One micro-step on the nodes, in windows. Nodes that pass go to `pass`: those the driver reports
   * early at once, the others when the micro-step ends; failed ones go to the attempt's failure
   * handler with their final reason, early ones at once too.
   */
  private async runMicro(
    a: Attempt,
    micro: MicroStep,
    label: string,
    nodes: string[],
    deadline: number,
    signal: AbortSignal,
    pass: (nodes: string[]) => void,
    fail: (failed: Map<string, string>) => void,
  ): Promise<void> {
    const { macro, instance, attempt } = a;
    const failed = new Map<string, string>();
    const window =
      micro.kind === 'reboot'
        ? this.rebootWindow
        : micro.kind === 'waitReboot'
          ? this.probeWindow
          : undefined;
    const windows = window ? chunks(nodes, window.size) : [nodes];
    const waits = micro.kind === 'waitReboot';
    const microStart = this.clock.now();
    // One budget for all probe windows: nodes of later windows have been rebooting meanwhile.
    // Whole milliseconds, so the budget a driver sees is exactly what the options say.
    const budget = Math.ceil(
      waits
        ? Math.min(deadline - microStart, this.rebootTimeoutMs(this.rebootingNow(nodes.length)))
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
    // A node back from its reboot (or given up): how long its peers take to come back.
    const back = (node: string, callStart: number, ok: boolean) => {
      if (!waits) return;
      a.waiting.delete(node);
      if (ok) a.slowestBackMs = Math.max(a.slowestBackMs ?? 0, this.clock.now() - callStart);
    };
    // Nodes reported early, gathered until the current instant's reports are all in.
    const reported = new Set<string>();
    let early: { ok: string[]; ko: Map<string, string> } | undefined;
    const flush = () => {
      if (!early) return;
      const { ok, ko } = early;
      early = undefined;
      if (ko.size > 0) fail(ko);
      if (ok.length > 0) pass(ok);
    };
    const interrupt = (from: number, callStart?: number) => {
      const reason = this.signal?.aborted ? 'cancelled' : `Timeout in the ${instance} step (${label})`;
      // Nodes of earlier windows passed this micro-step but are still in the aborted attempt.
      for (const n of passed) failed.set(n, reason);
      windows.slice(from).forEach((win, k) => {
        for (const n of win) {
          if (reported.has(n)) continue;
          record(n, k === 0 && callStart !== undefined ? callStart : this.clock.now(), false, reason);
          failed.set(n, reason);
          a.waiting.delete(n);
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
      const inCall = new Set(win);
      const callStart = this.clock.now();
      if (waits) {
        for (const n of win) a.waiting.set(n, callStart);
        this.checkDeparture(a);
      }
      let open = true;
      const ctx: MicroContext = {
        attempt,
        instance,
        signal,
        timeoutMs: Math.max(0, budget - (callStart - microStart)),
        report: (node, o) => {
          if (!open || !inCall.has(node) || reported.has(node)) return;
          reported.add(node);
          record(node, callStart, o.ok, o.ok ? undefined : o.reason);
          back(node, callStart, o.ok);
          if (!early) {
            early = { ok: [], ko: new Map() };
            queueMicrotask(flush);
          }
          if (o.ok) early.ok.push(node);
          else early.ko.set(node, `${instance}: ${o.reason}`);
        },
      };
      const res = await raceAbort(this.call(micro, win, ctx), signal);
      open = false;
      if (res === ABORTED) {
        interrupt(w, callStart);
        break;
      }
      for (const n of win) {
        if (reported.has(n)) continue;
        const o = res.get(n) ?? { ok: false, reason: 'no result' };
        back(n, callStart, o.ok);
        if (o.ok) {
          record(n, callStart, true);
          passed.push(n);
        } else {
          record(n, callStart, false, o.reason);
          failed.set(n, `${instance}: ${o.reason}`);
        }
      }
    }
    flush();
    if (failed.size > 0) fail(failed);
    const ok = passed.filter((n) => !failed.has(n));
    if (ok.length > 0) pass(ok);
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

// The experiment's report: its deployment set beside the reference experiment and the boot
// model's lower bound, with the scaling used (image bytes, the runtime's time scale), the
// per-macro-step breakdown (from deploy/stats.ts), OK %, the makespan real and modelled, and
// the controller's CPU time and peak memory. Pure: data in, a JSON-able object and a text out.
import { table } from '../cli/render.js';
import { type Deployment, durationsByStep, macroSpans } from '../deploy/stats.js';
import { MACRO_STEPS } from '../deploy/steps.js';
import { MiB } from './image.js';
import { reference } from './reference.js';

/** The testbed an experiment ran on, as setup left it (kept in the record, shown in the report). */
export interface ExperimentTestbed {
  sites: number;
  vmHosts: number;
  serviceNodes: number;
  vms: number;
  vmsUp: number;
  /** The reservation: one job per site (a resumed run keeps these). */
  jobs: { site: string; uid: number }[];
}

export interface ControllerUsage {
  /** User plus system CPU time of the controller's processes, every run of this experiment. */
  cpuMs: number;
  /** The controller's peak resident memory (the largest of every run's sampled RSS and maxRSS). */
  peakRssBytes: number;
  /** How many runs (the first and each resume) this covers. */
  runs: number;
}

export interface MacroStepReport {
  macro: string;
  /** The instances that ran, in order (fallbacks after the first). */
  instances: string[];
  /** First start to last end of the first instance's first attempts (deploy/stats.ts macroSpans). */
  spanMs: number;
  /** The slowest node's time in it on the reference's clock (modelledNodeTimes). */
  modelledSpanMs: number;
  /** Node attempts at an instance of it (a retry or a fallback is one more). */
  attempts: number;
  /** Failed micro-step attempts. */
  failures: number;
  /** Per micro-step attempt: the median and the slowest. */
  micro: {
    instance: string;
    micro: string;
    attempts: number;
    failures: number;
    medianMs: number;
    maxMs: number;
  }[];
}

export interface ExperimentReport {
  experiment: string;
  recipe: string;
  startedAt: string;
  finishedAt: string;
  resumed: boolean;
  stages: { stage: string; status: 'ran' | 'resumed'; ms: number }[];
  testbed: ExperimentTestbed;
  environment: { name: string; version: number; imageBytes: number; sha256: string };
  scaling: {
    /** The image's size in the recipe, in MiB, and its divisor here (recipe bytes / image bytes). */
    imageMB: number;
    imageScale: number;
    imageScaleReason: string;
    imageBytes: number;
    /** Real ms per modelled ms of the emulated boots (1: real time). */
    timeScale: number;
  };
  deployment: {
    id: string;
    workflow: string;
    nodes: number;
    ok: number;
    ko: number;
    okPercent: number;
    /** Wall-clock makespan here. */
    makespanMs: number;
    /** The slowest node's whole deployment on the reference's clock (modelledNodeTimes): full image, real boots. */
    modelledMakespanMs: number;
    /** The runtime's lower bound for this run (the scaled image at the scaled boots); absent without a boot model. */
    lowerBoundMs?: number;
    /** The same bound for the full image at real time: what the model says the reference could at best do. */
    modelLowerBoundMs?: number;
    macroSteps: MacroStepReport[];
    /** The KO reasons, most frequent first. */
    koReasons: { reason: string; nodes: number }[];
  };
  reference: typeof reference;
  comparison: {
    /** This run's OK % minus the reference's. */
    okPercentDelta: number;
    /** Modelled makespan / the reference's 58 min. */
    modelledMakespanRatio: number;
    /** The reference's makespan / the model's lower bound at full size (how far it was from the bound). */
    referenceOverLowerBound?: number;
    /** This run's VMs / the reference's. */
    vmRatio: number;
  };
  controller: ControllerUsage;
}

export interface ReportInput {
  experiment: string;
  recipe: string;
  startedAt: number;
  resumed: boolean;
  stages: ExperimentReport['stages'];
  testbed: ExperimentReport['testbed'];
  dep: Deployment;
  env: ExperimentReport['environment'];
  imageMB: number;
  imageScale: number;
  imageScaleReason: string;
  timeScale: number;
  modelLowerBoundMs?: number;
  controller: ControllerUsage;
}

/**
 * Each node's time per macro-step on the reference's clock: a boot it waited for and that came
 * (`waitReboot`) ÷ timeScale, its image transfer (`broadcast(...)`) × imageScale, the rest (SSH
 * commands, timeouts that ran out) as it ran here.
 */
export function modelledNodeTimes(
  dep: Deployment,
  timeScale: number,
  imageScale: number,
): Map<string, Map<string, number>> {
  const out = new Map<string, Map<string, number>>();
  for (const s of dep.steps) {
    const factor =
      s.micro.startsWith('waitReboot') && s.outcome === 'ok'
        ? 1 / timeScale
        : s.micro.startsWith('broadcast')
          ? imageScale
          : 1;
    let node = out.get(s.node);
    if (!node) {
      node = new Map();
      out.set(s.node, node);
    }
    node.set(s.macro, (node.get(s.macro) ?? 0) + s.durationMs * factor);
  }
  return out;
}

const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;

export function buildReport(i: ReportInput): ExperimentReport {
  const dep = i.dep;
  const ok = dep.nodes.filter((n) => n.outcome === 'ok').length;
  const ko = dep.nodes.length - ok;
  const okPercent = dep.nodes.length ? round((100 * ok) / dep.nodes.length, 2) : 0;
  const spans = macroSpans(dep);
  const steps = durationsByStep(dep);
  const modelled = modelledNodeTimes(dep, i.timeScale, i.imageScale);
  const macroSteps: MacroStepReport[] = MACRO_STEPS.filter((m) => spans[m] !== undefined).map((macro) => {
    const mine = steps.filter((s) => s.macro === macro);
    const spanMs = spans[macro];
    return {
      macro,
      instances: [...new Set(mine.map((s) => s.instance))],
      spanMs,
      modelledSpanMs: Math.round(Math.max(0, ...[...modelled.values()].map((n) => n.get(macro) ?? 0))),
      // one per node, instance and attempt
      attempts: new Set(
        dep.steps.filter((s) => s.macro === macro).map((s) => `${s.node}\0${s.instance}\0${s.attempt}`),
      ).size,
      failures: mine.reduce((a, s) => a + s.failures, 0),
      micro: mine.map((s) => ({
        instance: s.instance,
        micro: s.micro,
        attempts: s.durations.length,
        failures: s.failures,
        medianMs: Math.round(s.median),
        maxMs: s.max,
      })),
    };
  });
  const reasons = new Map<string, number>();
  for (const n of dep.nodes)
    if (n.outcome === 'ko') reasons.set(n.reason ?? '-', (reasons.get(n.reason ?? '-') ?? 0) + 1);
  const modelledMakespanMs = Math.round(
    Math.max(0, ...[...modelled.values()].map((n) => [...n.values()].reduce((a, b) => a + b, 0))),
  );
  return {
    experiment: i.experiment,
    recipe: i.recipe,
    startedAt: new Date(i.startedAt).toISOString(),
    finishedAt: new Date().toISOString(),
    resumed: i.resumed,
    stages: i.stages,
    testbed: i.testbed,
    environment: i.env,
    scaling: {
      imageMB: i.imageMB,
      imageScale: round(i.imageScale, 3),
      imageScaleReason: i.imageScaleReason,
      imageBytes: i.env.imageBytes,
      timeScale: i.timeScale,
    },
    deployment: {
      id: dep.id,
      workflow: dep.workflow,
      nodes: dep.nodes.length,
      ok,
      ko,
      okPercent,
      makespanMs: dep.makespanMs,
      modelledMakespanMs,
      lowerBoundMs: dep.lowerBoundMs,
      modelLowerBoundMs: i.modelLowerBoundMs,
      macroSteps,
      koReasons: [...reasons].map(([reason, nodes]) => ({ reason, nodes })).sort((a, b) => b.nodes - a.nodes),
    },
    reference,
    comparison: {
      okPercentDelta: round(okPercent - reference.okPercent, 2),
      modelledMakespanRatio: round(modelledMakespanMs / reference.makespanMs, 3),
      referenceOverLowerBound:
        i.modelLowerBoundMs && i.modelLowerBoundMs > 0
          ? round(reference.makespanMs / i.modelLowerBoundMs, 1)
          : undefined,
      vmRatio: round(dep.nodes.length / reference.vms, 4),
    },
    controller: i.controller,
  };
}

function duration(ms: number | undefined): string {
  if (ms === undefined) return '-';
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${(ms / 60_000).toFixed(1)} min`;
}

/** The short text form: the result beside the reference, then the per-macro-step table. */
export function renderReport(r: ExperimentReport): string {
  const d = r.deployment;
  const s = r.scaling;
  const lines = [
    `Experiment ${r.experiment} (${r.recipe})${r.resumed ? ', resumed' : ''}: ${r.testbed.vms} VMs on ${r.testbed.vmHosts} hosts in ${r.testbed.sites} sites, ${r.testbed.serviceNodes} service nodes`,
    `Scaling: image ${s.imageMB} MiB ÷ ${s.imageScale} = ${(s.imageBytes / MiB).toFixed(1)} MiB (${s.imageScaleReason}); boots at time scale ${s.timeScale}`,
    '',
    table(
      ['', 'this run', 'reference'],
      [
        ['VMs', d.nodes, r.reference.vms],
        ['OK', `${d.ok} (${d.okPercent}%)`, `${r.reference.okNodes} (${r.reference.okPercent}%)`],
        ['makespan (real)', duration(d.makespanMs), duration(r.reference.makespanMs)],
        ['makespan (modelled)', duration(d.modelledMakespanMs), duration(r.reference.makespanMs)],
        ['model lower bound', duration(d.lowerBoundMs), duration(d.modelLowerBoundMs)],
      ],
    ),
    '',
    table(
      ['macro-step', 'instances', 'span', 'modelled', 'attempts', 'KO'],
      d.macroSteps.map((m) => [
        m.macro,
        m.instances.join(','),
        duration(m.spanMs),
        duration(m.modelledSpanMs),
        m.attempts,
        m.failures,
      ]),
    ),
    '',
    `Controller: ${(r.controller.cpuMs / 1000).toFixed(1)} s CPU, peak ${(r.controller.peakRssBytes / MiB).toFixed(0)} MiB RSS (${r.controller.runs} run${r.controller.runs > 1 ? 's' : ''})`,
  ];
  if (d.koReasons.length) {
    lines.push(
      `KO: ${d.koReasons
        .slice(0, 3)
        .map((k) => `${k.nodes} × ${k.reason}`)
        .join('; ')}`,
    );
  }
  return lines.join('\n');
}

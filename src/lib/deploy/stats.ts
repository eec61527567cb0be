// Per-deployment statistics (Kadeploy's kastat): one JSON file per deployment under the
// testbed's directory, and queries over them that return plain data for tables and reports.
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../atomic-file.js';
import { InputError } from '../errors.js';
import { TestbedLayout } from '../state/layout.js';

/** One attempt of one micro-step on one node. Times are epoch milliseconds. */
export interface StepRecord {
  node: string;
  macro: string;
  instance: string;
  micro: string;
  attempt: number;
  start: number;
  durationMs: number;
  outcome: 'ok' | 'ko';
  error?: string;
}

export interface NodeResult {
  node: string;
  outcome: 'ok' | 'ko';
  reason?: string;
  breakpoint?: string;
  finishedAt: number;
  steps: string[];
}

export interface Deployment {
  id: string;
  testbed: string;
  user: string;
  env: { name: string; version: number };
  startedAt: number;
  finishedAt: number;
  workflow: string;
  nodes: NodeResult[];
  steps: StepRecord[];
  makespanMs: number;
  lowerBoundMs?: number;
}

// --- store ---------------------------------------------------------------------------------------

const idPattern = /^\d{8}T\d{9}Z-[0-9a-f]{6}$/;

/**
 * `20250101T120000123Z-1a2b3c`: UTC time to the millisecond first, so ids sort by time as text;
 * the random tail keeps two deployments started in the same millisecond apart.
 */
export function newDeploymentId(now: number = Date.now()): string {
  const stamp = new Date(now).toISOString().replace(/[-:.]/g, '');
  return `${stamp}-${randomBytes(3).toString('hex')}`;
}

export function deploymentsDir(testbed: string): string {
  return TestbedLayout.of(testbed).deploymentsDir;
}

function checkId(id: string): void {
  // Ids become file names: anything else could escape the directory.
  if (!idPattern.test(id))
    throw new InputError(`deployment id "${id}": expected the form 20250101T120000123Z-1a2b3c`);
}

/** Writes the deployment atomically (temp file, fsync, rename); returns the file's path. */
export async function saveDeployment(dep: Deployment): Promise<string> {
  checkId(dep.id);
  const dir = deploymentsDir(dep.testbed);
  await mkdir(dir, { recursive: true });
  const file = join(dir, `${dep.id}.json`);
  await writeFileAtomic(file, `${JSON.stringify(dep)}\n`);
  return file;
}

async function deploymentIds(testbed: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(deploymentsDir(testbed));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  return names
    .filter((n) => n.endsWith('.json'))
    .map((n) => n.slice(0, -'.json'.length))
    .filter((id) => idPattern.test(id))
    .sort();
}

/** One deployment by id, or the most recent with `'last'`. */
export async function loadDeployment(testbed: string, id: string): Promise<Deployment> {
  const ids = await deploymentIds(testbed);
  if (id === 'last') {
    if (ids.length === 0) throw new InputError(`testbed ${testbed}: no deployment recorded yet`);
    id = ids[ids.length - 1];
  } else {
    checkId(id);
    if (!ids.includes(id)) {
      const recent = ids.slice(-5).join(', ');
      throw new InputError(
        `testbed ${testbed}: no deployment "${id}" (${recent ? `latest: ${recent}` : 'none recorded yet'})`,
      );
    }
  }
  const file = join(deploymentsDir(testbed), `${id}.json`);
  try {
    return JSON.parse(await readFile(file, 'utf8')) as Deployment;
  } catch (e) {
    throw new InputError(`deployment ${file}: cannot read it (${(e as Error).message})`);
  }
}

/** Every recorded deployment of the testbed, oldest first, narrowed by env name and date range. */
export async function listDeployments(testbed: string, filter: DeploymentFilter = {}): Promise<Deployment[]> {
  const out: Deployment[] = [];
  for (const id of await deploymentIds(testbed)) out.push(await loadDeployment(testbed, id));
  return filterDeployments(out, filter);
}

/**
 * Per macro-step, how long the first attempt of its first instance took across all nodes (first
 * start to last end, retries and fallbacks left out): what a like deployment's ETA can expect of
 * each macro-step before one of its own batches finishes.
 */
export function macroSpans(dep: Deployment): Record<string, number> {
  const first = new Map<string, StepRecord>();
  for (const s of dep.steps) {
    const f = first.get(s.macro);
    if (!f || s.start < f.start) first.set(s.macro, s);
  }
  const span = new Map<string, { from: number; to: number }>();
  for (const s of dep.steps) {
    if (s.attempt !== 1 || s.instance !== first.get(s.macro)?.instance) continue;
    const cur = span.get(s.macro) ?? { from: s.start, to: s.start };
    cur.from = Math.min(cur.from, s.start);
    cur.to = Math.max(cur.to, s.start + s.durationMs);
    span.set(s.macro, cur);
  }
  return Object.fromEntries([...span].map(([m, { from, to }]) => [m, to - from]));
}

// --- filters -------------------------------------------------------------------------------------

export interface DeploymentFilter {
  /** Environment name. */
  env?: string;
  /** Deployments started at or after this time (epoch ms). */
  since?: number;
  /** Deployments started before this time (epoch ms). */
  until?: number;
  /** Keep only step records whose macro, instance or micro name equals this. */
  step?: string;
}

export function filterDeployments(deps: readonly Deployment[], filter: DeploymentFilter = {}): Deployment[] {
  return deps.filter(
    (d) =>
      (filter.env === undefined || d.env.name === filter.env) &&
      (filter.since === undefined || d.startedAt >= filter.since) &&
      (filter.until === undefined || d.startedAt < filter.until),
  );
}

export function stepMatches(s: StepRecord, step: string | undefined): boolean {
  return step === undefined || s.macro === step || s.instance === step || s.micro === step;
}

function stepsOf(deps: readonly Deployment[], filter: DeploymentFilter): StepRecord[] {
  return filterDeployments(deps, filter).flatMap((d) => d.steps.filter((s) => stepMatches(s, filter.step)));
}

// --- queries -------------------------------------------------------------------------------------

function getOrAdd<K, V>(m: Map<K, V>, k: K, make: () => V): V {
  let v = m.get(k);
  if (v === undefined) {
    v = make();
    m.set(k, v);
  }
  return v;
}

export interface FailureRate {
  attempts: number;
  failures: number;
  /** failures / attempts, 0 when there were none. */
  rate: number;
}

export interface InstanceFailureRate extends FailureRate {
  macro: string;
  instance: string;
}

export interface MicroFailureRate extends InstanceFailureRate {
  micro: string;
}

/** Attempts, failures and failure rate of each step instance and each of its micro-steps. */
export function failureRateByStep(
  deps: readonly Deployment[],
  filter: DeploymentFilter = {},
): { byInstance: InstanceFailureRate[]; byMicro: MicroFailureRate[] } {
  const inst = new Map<string, InstanceFailureRate>();
  const micro = new Map<string, MicroFailureRate>();
  // An instance attempt is one node's try at it (several micro-step records); it fails if one does.
  const tries = new Map<string, { rate: InstanceFailureRate; ko: boolean }>();
  for (const d of filterDeployments(deps, filter)) {
    for (const s of d.steps.filter((x) => stepMatches(x, filter.step))) {
      const ik = `${s.macro}\0${s.instance}`;
      const rate = getOrAdd(inst, ik, () => ({
        macro: s.macro,
        instance: s.instance,
        attempts: 0,
        failures: 0,
        rate: 0,
      }));
      const t = getOrAdd(tries, `${d.id}\0${s.node}\0${ik}\0${s.attempt}`, () => ({ rate, ko: false }));
      t.ko ||= s.outcome === 'ko';
    }
  }
  for (const t of tries.values()) {
    t.rate.attempts++;
    if (t.ko) t.rate.failures++;
  }
  for (const s of stepsOf(deps, filter)) {
    const ik = `${s.macro}\0${s.instance}`;
    const mk = `${ik}\0${s.micro}`;
    const b = getOrAdd(micro, mk, () => ({
      macro: s.macro,
      instance: s.instance,
      micro: s.micro,
      attempts: 0,
      failures: 0,
      rate: 0,
    }));
    b.attempts++;
    if (s.outcome === 'ko') b.failures++;
  }
  const finish = <T extends FailureRate>(m: Map<string, T>): T[] =>
    [...m.values()].map((r) => ({ ...r, rate: r.attempts ? r.failures / r.attempts : 0 }));
  return { byInstance: finish(inst), byMicro: finish(micro) };
}

export interface NodeDuration {
  node: string;
  outcome: 'ok' | 'ko';
  /** From the node's first step start to its last step end (0 when it ran no step). */
  durationMs: number;
  steps: number;
}

/** Per node, from its first step's start to its last step's end. */
export function nodeDurations(dep: Deployment, filter: DeploymentFilter = {}): NodeDuration[] {
  const span = new Map<string, { from: number; to: number; steps: number }>();
  for (const s of dep.steps) {
    if (!stepMatches(s, filter.step)) continue;
    const cur = span.get(s.node);
    const end = s.start + s.durationMs;
    if (!cur) span.set(s.node, { from: s.start, to: end, steps: 1 });
    else {
      cur.from = Math.min(cur.from, s.start);
      cur.to = Math.max(cur.to, end);
      cur.steps++;
    }
  }
  const outcome = new Map(dep.nodes.map((n) => [n.node, n.outcome] as const));
  const names = new Set([...dep.nodes.map((n) => n.node), ...span.keys()]);
  return [...names].map((node) => {
    const s = span.get(node);
    return {
      node,
      outcome: outcome.get(node) ?? 'ko',
      durationMs: s ? s.to - s.from : 0,
      steps: s?.steps ?? 0,
    };
  });
}

/** The n nodes that took longest, longest first (ties by name). */
export function slowestNodes(dep: Deployment, n: number, filter: DeploymentFilter = {}): NodeDuration[] {
  return nodeDurations(dep, filter)
    .sort((a, b) => b.durationMs - a.durationMs || a.node.localeCompare(b.node))
    .slice(0, Math.max(0, n));
}

export interface NodeRetries {
  node: string;
  /** Re-runs of a step instance beyond its first attempt, summed over deployments. */
  retries: number;
  /** Step records that ended KO. */
  failedSteps: number;
  deployments: number;
}

/**
 * Retries per node across deployments, most first. A retry re-runs every micro-step of an
 * instance, so retries count distinct (instance, attempt) pairs beyond the first per instance,
 * not micro records.
 */
export function retriesByNode(deps: readonly Deployment[], filter: DeploymentFilter = {}): NodeRetries[] {
  const out = new Map<string, NodeRetries>();
  for (const d of filterDeployments(deps, filter)) {
    const attempts = new Map<string, Set<number>>();
    const seen = new Set<string>();
    for (const s of d.steps) {
      if (!stepMatches(s, filter.step)) continue;
      const r = getOrAdd(out, s.node, () => ({ node: s.node, retries: 0, failedSteps: 0, deployments: 0 }));
      if (!seen.has(s.node)) {
        seen.add(s.node);
        r.deployments++;
      }
      if (s.outcome === 'ko') r.failedSteps++;
      const k = `${s.node}\0${s.macro}\0${s.instance}`;
      getOrAdd(attempts, k, () => new Set<number>()).add(s.attempt);
    }
    for (const [k, set] of attempts) out.get(k.slice(0, k.indexOf('\0')))!.retries += set.size - 1;
  }
  return [...out.values()].sort((a, b) => b.retries - a.retries || a.node.localeCompare(b.node));
}

export interface StepDurations {
  macro: string;
  instance: string;
  micro: string;
  /** Every attempt's duration, ascending. */
  durations: number[];
  min: number;
  max: number;
  mean: number;
  median: number;
  failures: number;
}

/** Durations of each micro-step (in workflow order of first appearance), for histograms. */
export function durationsByStep(dep: Deployment, filter: DeploymentFilter = {}): StepDurations[] {
  const m = new Map<string, { macro: string; instance: string; micro: string; d: number[]; ko: number }>();
  for (const s of dep.steps) {
    if (!stepMatches(s, filter.step)) continue;
    const k = `${s.macro}\0${s.instance}\0${s.micro}`;
    const e = getOrAdd(m, k, () => ({
      macro: s.macro,
      instance: s.instance,
      micro: s.micro,
      d: [] as number[],
      ko: 0,
    }));
    e.d.push(s.durationMs);
    if (s.outcome === 'ko') e.ko++;
  }
  return [...m.values()].map((e) => {
    const d = e.d.sort((a, b) => a - b);
    const mid = d.length >> 1;
    return {
      macro: e.macro,
      instance: e.instance,
      micro: e.micro,
      durations: d,
      min: d[0],
      max: d[d.length - 1],
      mean: d.reduce((a, b) => a + b, 0) / d.length,
      median: d.length % 2 ? d[mid] : (d[mid - 1] + d[mid]) / 2,
      failures: e.ko,
    };
  });
}

export interface HistogramBin {
  /** Inclusive lower edge. */
  from: number;
  /** Exclusive upper edge (inclusive for the last bin). */
  to: number;
  count: number;
}

/** Equal-width bins over [min, max]; one bin when every value is the same. */
export function histogram(values: readonly number[], bins = 20): HistogramBin[] {
  if (values.length === 0) return [];
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (hi === lo) return [{ from: lo, to: hi, count: values.length }];
  const n = Math.max(1, Math.floor(bins));
  const width = (hi - lo) / n;
  const out: HistogramBin[] = Array.from({ length: n }, (_, i) => ({
    from: lo + i * width,
    to: i === n - 1 ? hi : lo + (i + 1) * width,
    count: 0,
  }));
  for (const v of values) out[Math.min(n - 1, Math.floor((v - lo) / width))].count++;
  return out;
}

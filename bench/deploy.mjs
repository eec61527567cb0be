// Deploy benchmark (root, local only): the reference experiment's recipe (recipes/seed-4552.yaml,
// its boot model and its faults) scaled to N emulated VMs — each cluster's hosts and each site's
// service nodes by N / 4552 — replayed by `kabootstrap experiment run` (setup, the environment,
// deploy, report, teardown) for each N: makespan real and modelled, OK %, the per-macro-step
// breakdown, the controller's CPU and peak RSS. The scaling curve goes to BENCHMARKS.md.
// Usage: node bench/deploy.mjs [--vms 100,1000,4552] [--runs 3] [--image-scale 100] [--timeout S] [--merge]
// --runs applies up to 1000 VMs; a larger size runs once (a run of 4552 takes ≈ 11 min here).
// Bounded: the global timeout kills the run and tears its testbed down; 10.236.0.0/16 only.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { bounded, flag, machine, repoRoot, table, timed, versions, writeResult } from './lib/common.mjs';
import { summarize } from './lib/stats.mjs';

const sizes = flag('--vms', '100,1000').split(',').map(Number);
const runsEach = Number(flag('--runs', '3'));
const imageScale = flag('--image-scale', '100');
const timeoutS = Number(flag('--timeout', '5400'));
const bin = join(repoRoot, 'bin', 'run.js');
const name = 'kbb-deploy';
const home = mkdtempSync(join(tmpdir(), 'kb-bench-deploy-'));
const env = { ...process.env, KABOOTSTRAP_HOME: join(home, '.kabootstrap') };
const cfg = join(home, `${name}.yaml`);
const seed = parse(readFileSync(join(repoRoot, 'recipes', 'seed-4552.yaml'), 'utf8'));
const REFERENCE_VMS = 4552;

/** The seed recipe at N VMs: hosts and service nodes scaled alike, the rest (model, faults) kept. */
function scaledRecipe(n) {
  const f = n / REFERENCE_VMS;
  const r = structuredClone(seed);
  r.name = name;
  r.network = { prefix: '10.236.0.0/16' };
  for (const site of r.sites) {
    site.serviceNodes = Math.max(1, Math.round(site.serviceNodes * f));
    for (const c of site.clusters) c.hosts = Math.max(1, Math.ceil(c.hosts * f));
  }
  r.vms.count = n;
  return stringify(r);
}

/** What one replay's report says, in the benchmark's terms. */
function summary(report, wallMs) {
  const d = report.deployment;
  const died = d.koReasons.filter((k) => /died|die|dead/i.test(k.reason)).reduce((a, k) => a + k.nodes, 0);
  // alive: up after setup (a VM whose boot fault is permanent never is) and not killed by its fault
  const alive = Math.min(d.nodes, report.testbed.vmsUp) - died;
  return {
    wallMs,
    vms: report.testbed.vms,
    vmsUp: report.testbed.vmsUp,
    hosts: report.testbed.vmHosts,
    setupMs: report.stages.find((s) => s.stage === 'setup')?.ms ?? null,
    nodes: d.nodes,
    ok: d.ok,
    ko: d.ko,
    okPercent: d.okPercent,
    died,
    okOfAlivePercent: alive > 0 ? (100 * Math.min(d.ok, alive)) / alive : 0,
    makespanMs: d.makespanMs,
    modelledMakespanMs: d.modelledMakespanMs,
    lowerBoundMs: d.lowerBoundMs ?? null,
    macroSteps: d.macroSteps.map((m) => ({
      macro: m.macro,
      spanMs: m.spanMs,
      failures: m.failures,
      micro: m.micro.filter((x) => x.failures > 0),
    })),
    koReasons: d.koReasons.slice(0, 20),
    cpuMs: report.controller.cpuMs,
    peakRssBytes: report.controller.peakRssBytes,
    imageBytes: report.scaling.imageBytes,
    imageScale: report.scaling.imageScale,
    timeScale: report.scaling.timeScale,
  };
}

const result = {
  date: new Date().toISOString(),
  machine: machine(),
  versions: versions(),
  runsEach,
  imageScale: Number(imageScale),
  cases: [],
};
// --merge keeps the sizes of the previous results that this run does not measure (a 4552 run
// takes long enough to be made on its own)
if (process.argv.includes('--merge')) {
  try {
    const before = JSON.parse(readFileSync(join(repoRoot, 'bench', 'results', 'deploy.json'), 'utf8'));
    result.cases = before.cases
      .filter((c) => !sizes.includes(c.vms))
      .map((c) => ({ ...c, from: before.date }));
  } catch {}
}

await bounded(
  timeoutS,
  async () => {
    await timed(process.execPath, [bin, 'teardown', '-c', cfg, '-q'], { env, timeoutMs: 600_000 });
    rmSync(home, { recursive: true, force: true });
  },
  async () => {
    for (const n of sizes) {
      writeFileSync(cfg, scaledRecipe(n));
      const runs = [];
      const count = n > 1000 ? 1 : runsEach;
      for (let i = 0; i < count; i++) {
        const r = await timed(
          process.execPath,
          [bin, 'experiment', 'run', cfg, '--image-scale', imageScale, '--json', '-q'],
          { env, timeoutMs: timeoutS * 1000 },
        );
        let report;
        try {
          report = JSON.parse(r.stdout);
          if (!report.deployment) throw new Error('no deployment in the report');
        } catch {
          console.error(r.stdout.slice(0, 2000));
          const why = r.stderr.trim().split('\n').pop();
          console.error(`N = ${n}, run ${i + 1}: no report (exit ${r.code}): ${why}`);
          runs.push({ failed: why ?? `exit ${r.code}` });
          await timed(process.execPath, [bin, 'teardown', '-c', cfg, '-q'], { env, timeoutMs: 600_000 });
          continue;
        }
        const s = summary(report, r.ms);
        runs.push(s);
        console.error(
          `N = ${n}, run ${i + 1}: ${s.ok}/${s.nodes} OK (${s.okOfAlivePercent.toFixed(2)}% of the alive), makespan ${(s.makespanMs / 1000).toFixed(1)} s, setup ${((s.setupMs ?? 0) / 1000).toFixed(0)} s, peak RSS ${(s.peakRssBytes / 2 ** 20).toFixed(0)} MiB`,
        );
      }
      const done = runs.filter((x) => !x.failed);
      const pick = (k) => (done.length ? summarize(done.map((x) => x[k])) : null);
      result.cases.push({
        vms: n,
        runs,
        makespan: pick('makespanMs'),
        modelled: pick('modelledMakespanMs'),
        setup: pick('setupMs'),
        okOfAlive: pick('okOfAlivePercent'),
        peakRss: pick('peakRssBytes'),
        cpu: pick('cpuMs'),
      });
      result.loadAfter = machine().load;
      writeResult('deploy', result);
    }
    console.log(
      table(
        ['N', 'runs', 'makespan s', 'min–max s', 'OK % of alive (worst)', 'setup s', 'peak RSS MiB'],
        result.cases.map((c) => [
          c.vms,
          c.runs.length,
          c.makespan ? (c.makespan.median / 1000).toFixed(1) : '-',
          c.makespan ? `${(c.makespan.min / 1000).toFixed(1)}–${(c.makespan.max / 1000).toFixed(1)}` : '-',
          c.okOfAlive ? c.okOfAlive.min.toFixed(2) : '-',
          c.setup ? (c.setup.median / 1000).toFixed(0) : '-',
          c.peakRss ? (c.peakRss.max / 2 ** 20).toFixed(0) : '-',
        ]),
      ),
    );
  },
);

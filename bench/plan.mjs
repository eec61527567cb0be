// Planning benchmark (`npm run bench -- plan`), against the built dist/:
// Usage: node bench/plan.mjs [--runs N]
//
// plan: planning the 4552-VM seed recipe (pure planner) vs. loading and validating its config
//       (the peer: work every command does anyway); plus the whole dry run through the embedded
//       API (reference documents over loopback HTTP), and the heap the plan takes.
import { performance } from 'node:perf_hooks';
import { loadConfig } from '../dist/lib/config/load.js';
import { silentLogger } from '../dist/lib/log.js';
import { buildPlan } from '../dist/lib/planner/plan.js';
import { silentProgress } from '../dist/lib/progress.js';
import { openSession } from '../dist/lib/provider/session.js';
import { planTestbed } from '../dist/lib/testbed/plan.js';
import { candidateSites, readReference } from '../dist/lib/testbed/reference.js';

const runsFlag = process.argv.indexOf('--runs');
const runs = runsFlag > 0 ? Number(process.argv[runsFlag + 1]) : 15;
const recipe = 'recipes/seed-4552.yaml';

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function time(fn) {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

const ctx = { logger: silentLogger, progress: silentProgress };
const loaded = await loadConfig(recipe);
const session = await openSession(loaded.config, { logger: silentLogger, source: loaded.source });
const sites = candidateSites(loaded.config, await readReference(session, loaded.config, loaded.source));
await session.close();

const load = [];
const plan = [];
const dry = [];
// One warm-up round, not counted.
for (let i = 0; i <= runs; i++) {
  const a = await time(() => loadConfig(recipe));
  const b = await time(() => buildPlan(loaded.config, sites, loaded.source));
  const c = await time(() => planTestbed(loaded, ctx));
  if (i > 0) {
    load.push(a);
    plan.push(b);
    dry.push(c);
  }
}

global.gc?.();
const before = process.memoryUsage().heapUsed;
const kept = buildPlan(loaded.config, sites, loaded.source);
global.gc?.();
const heapMB = (process.memoryUsage().heapUsed - before) / 2 ** 20;

const rows = [
  ['config load + validate (peer)', median(load)],
  ['plan 4552 VMs (pure planner)', median(plan)],
  ['dry run via embedded API', median(dry)],
];
console.log(`seed-4552 planning, ${runs} runs each, medians (ms):`);
for (const [name, ms] of rows) console.log(`  ${name.padEnd(32)} ${ms.toFixed(2)}`);
console.log(`  plan / peer ratio                ${(median(plan) / median(load)).toFixed(2)}`);
console.log(`  dry run / peer ratio             ${(median(dry) / median(load)).toFixed(2)}`);
console.log(
  `  plan heap ${global.gc ? '' : '(approx., run with --expose-gc for exact) '}${heapMB.toFixed(1)} MB for ${kept.totals.vms} VMs`,
);

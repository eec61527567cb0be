// Broadcast benchmark (root, local only): `put` of one file to the VMs of a small emulated testbed
// by each method, medians of repeated runs next to the star (the controller sending to every node:
// the peer every other method must beat), and the peak RSS of the emulated group processes.
// Usage: node bench/broadcast.mjs [--runs N] [--vms N] [--mb N]   (against the built dist/)
// Bounded: one testbed of N VMs in 10.239.0.0/16, torn down at the end (also on Ctrl-C).
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findTaktuk } from '../dist/lib/exec/taktuk.js';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const runs = arg('--runs', 3);
const vms = arg('--vms', 40);
const mb = arg('--mb', 32);
const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'bin', 'run.js');
const name = 'kbb-bcast';

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

const home = await mkdtemp(join(tmpdir(), 'kb-bench-'));
const env = { ...process.env, KABOOTSTRAP_HOME: join(home, '.kabootstrap') };
const cfg = join(home, `${name}.yaml`);
const kb = (args, timeoutMs = 300_000) =>
  new Promise((resolve) => {
    execFile(
      process.execPath,
      [bin, ...args],
      { env, timeout: timeoutMs, maxBuffer: 64 << 20 },
      (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    );
  });

/** Total RSS (bytes) of this testbed's emulated group processes. */
function groupRss() {
  const ps = execFileSync('ps', ['-eo', 'rss=,args='], { encoding: 'utf8' });
  let kb = 0;
  for (const l of ps.split('\n'))
    if (l.includes('emulated/main.js') && l.includes(home)) kb += Number(l.trim().split(/\s+/)[0]);
  return kb * 1024;
}

let torn = false;
const teardown = async () => {
  if (torn) return;
  torn = true;
  await kb(['teardown', '-c', cfg, '-q']);
  await rm(home, { recursive: true, force: true });
};
process.once('SIGINT', () => teardown().then(() => process.exit(130)));

try {
  const hosts = Math.max(2, Math.ceil(vms / 8));
  await writeFile(
    cfg,
    `name: ${name}
provider: local
local: { via: direct }
domain: bench.test
network:
  prefix: 10.239.0.0/16
sites:
  - name: nancy
    serviceNodes: 1
    clusters:
      - { name: grappe, hosts: ${hosts}, hardware: { cores: 4, ramMB: 16384, diskGB: 20 } }
  - name: rennes
    serviceNodes: 1
    clusters:
      - { name: paravance, hosts: ${hosts}, hardware: { cores: 4, ramMB: 16384, diskGB: 20 } }
vms:
  count: ${vms}
  runtime: emulated
  emulated: { seed: 1 }
`,
  );
  const setup = await kb(['setup', '-c', cfg, '--json', '-q']);
  if (setup.code !== 0)
    throw new Error(`setup: exit ${setup.code}: ${setup.stderr.trim().split('\n').pop()}`);
  const file = join(home, 'bench.bin');
  await writeFile(file, randomBytes(mb << 20));
  const methods = ['star', 'chain', 'tree', ...(findTaktuk() ? ['taktuk'] : [])];
  const times = Object.fromEntries(methods.map((m) => [m, []]));
  const peak = Object.fromEntries(methods.map((m) => [m, 0]));
  const baseline = groupRss();
  // one warm-up round, not counted; methods interleaved so drift hits them alike
  for (let i = 0; i <= runs; i++) {
    for (const m of methods) {
      let max = 0;
      const timer = setInterval(() => {
        max = Math.max(max, groupRss());
      }, 250);
      const r = await kb(['put', '-c', cfg, '--method', m, file, '/tmp/kb-bench.bin', '--json', '-q']);
      clearInterval(timer);
      if (r.code !== 0)
        throw new Error(`put --method ${m}: exit ${r.code}: ${r.stderr.trim().split('\n').pop()}`);
      const out = JSON.parse(r.stdout);
      if (out.ok !== vms) throw new Error(`put --method ${m}: ${out.ok} of ${vms} OK`);
      if (i > 0) {
        times[m].push(out.makespanMs);
        peak[m] = Math.max(peak[m], max);
      }
    }
  }
  const star = median(times.star);
  console.log(`broadcast of ${mb} MiB to ${vms} emulated VMs, ${runs} runs each, medians:`);
  console.log(
    `  ${'method'.padEnd(8)} ${'ms'.padStart(8)} ${'vs star'.padStart(8)} ${'MB/s all'.padStart(9)} ${'group RSS peak'.padStart(15)}`,
  );
  for (const m of methods) {
    const ms = median(times[m]);
    const agg = ((mb << 20) * vms) / 1e6 / (ms / 1000);
    console.log(
      `  ${m.padEnd(8)} ${ms.toFixed(0).padStart(8)} ${(ms / star).toFixed(2).padStart(8)} ${agg.toFixed(0).padStart(9)} ${`${(peak[m] / 2 ** 20).toFixed(0)} MiB`.padStart(15)}`,
    );
  }
  console.log(`  group RSS before the runs: ${(baseline / 2 ** 20).toFixed(0)} MiB in all`);
} finally {
  await teardown();
}

// `npm run bench -- [NAME] [flags]`: runs one benchmark by name (or the default set), then
// regenerates BENCHMARKS.md from bench/results/*.json (bench/report.mjs). Every benchmark is
// bounded in time and removes its namespaces and processes at the end, on Ctrl-C and at its timeout.
//   plan                 planning the 4552-VM recipe vs loading its config (no root)
//   exec                 `hostname` on N real sshd: kabootstrap flat/tree/taktuk vs pdsh, clush, taktuk
//                        (root; --nodes 16,64[,256] --runs 5 --timeout S)
//   broadcast            one file to N real sshd, loopback and tc-capped links: kabootstrap chain/star
//                        vs TakTuk, scp, an nc chain (root; --nodes --runs --mb --capped-mb --mbit)
//   broadcast-emulated   `put` by star, chain, tree, taktuk to emulated VMs (root; --vms --mb --runs)
//   deploy               the seed recipe scaled to N emulated VMs, replayed by `experiment run`
//                        (root; --vms 100,1000[,4552] --runs 3 --image-scale 100 --timeout S)
//   local                the README's main job timed: setup, deploy -e tiny, teardown (root; --runs)
//   report               only regenerate BENCHMARKS.md
// Without a name: plan, then broadcast-emulated when root (--no-broadcast skips it), as before.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const scripts = {
  plan: 'plan.mjs',
  exec: 'exec.mjs',
  broadcast: 'broadcast-sshd.mjs',
  'broadcast-emulated': 'broadcast.mjs',
  deploy: 'deploy.mjs',
  local: 'local.mjs',
  report: null,
};
const needsRoot = new Set(['exec', 'broadcast', 'broadcast-emulated', 'deploy', 'local']);
const isRoot = process.getuid?.() === 0;

const first = process.argv[2];
const named = first && !first.startsWith('-');
if (named && !(first in scripts)) {
  console.error(`bench: unknown benchmark ${first}; one of ${Object.keys(scripts).join(', ')}`);
  process.exit(2);
}
const flags = process.argv.slice(named ? 3 : 2);
let todo;
if (named) todo = [first];
else todo = ['plan', ...(isRoot && !flags.includes('--no-broadcast') ? ['broadcast-emulated'] : [])];

const run = (script, args) =>
  spawnSync(process.execPath, ['--expose-gc', fileURLToPath(new URL(script, import.meta.url)), ...args], {
    stdio: 'inherit',
  });

for (const name of todo) {
  const script = scripts[name];
  if (!script) continue;
  if (needsRoot.has(name) && !isRoot) {
    console.log(`${name}: skipped (needs root: network namespaces)`);
    continue;
  }
  const r = run(script, named ? flags : flags.filter((f) => f !== '--no-broadcast'));
  if (r.status) process.exitCode = r.status;
  console.log('');
}
const r = run('report.mjs', []);
if (r.status) process.exitCode = r.status;

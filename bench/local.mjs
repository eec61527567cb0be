// The local default benchmark (root): the README's main job on the built-in testbed — setup (6
// hosts, 2 service nodes, 8 QEMU VMs), `deploy -e tiny`, teardown — timed phase by phase, with the
// deployment's makespan and its macro-steps. The tiny environment is built and registered once,
// before the timed runs (the README's `images build` and `env add`, not part of the target).
// Usage: node bench/local.mjs [--runs 3] [--timeout S]
// Bounded: the global timeout kills the run and tears the testbed down; local-small's prefix only.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bounded, flag, machine, repoRoot, table, timed, versions, writeResult } from './lib/common.mjs';
import { summarize } from './lib/stats.mjs';

const runsEach = Number(flag('--runs', '3'));
const timeoutS = Number(flag('--timeout', '3600'));
const bin = join(repoRoot, 'bin', 'run.js');
const home = mkdtempSync(join(tmpdir(), 'kb-bench-local-'));
const env = { ...process.env, KABOOTSTRAP_HOME: join(home, '.kabootstrap') };
const kb = (args, timeoutMs = 1_200_000) =>
  timed(process.execPath, [bin, ...args, '-q'], { env, timeoutMs }).then((r) => {
    if (r.code !== 0)
      throw new Error(`${args.join(' ')}: exit ${r.code}: ${r.stderr.trim().split('\n').pop()}`);
    return r;
  });

const result = {
  date: new Date().toISOString(),
  machine: machine(),
  versions: versions(),
  runsEach,
  runs: [],
};

await bounded(
  timeoutS,
  async () => {
    await timed(process.execPath, [bin, 'teardown', '-q'], { env, timeoutMs: 300_000 });
    rmSync(home, { recursive: true, force: true });
  },
  async () => {
    await kb(['images', 'build']);
    await kb(['env', 'add', '--replace', join(repoRoot, 'recipes/envs/tiny.yaml')]);
    for (let i = 0; i < runsEach; i++) {
      const setup = await kb(['setup', '--json']);
      const setupResult = JSON.parse(setup.stdout);
      const vms = setupResult.vms;
      // through the sites' twin setup reinstalls the reserved machines; the direct path has none
      result.via = setupResult.machines?.length ? 'twin' : 'direct';
      const deploy = await timed(process.execPath, [bin, 'deploy', '-e', 'tiny', '--json', '-q'], {
        env,
        timeoutMs: 1_200_000,
      });
      let dep = null;
      try {
        dep = JSON.parse(deploy.stdout);
      } catch {}
      const teardown = await kb(['teardown']);
      const run = {
        setupMs: setup.ms,
        vms: vms.length,
        vmsUp: vms.filter((v) => v.state === 'ssh').length,
        deployMs: deploy.ms,
        ok: dep?.nodes?.filter((n) => n.outcome === 'ok').length ?? 0,
        nodes: dep?.nodes?.length ?? 0,
        makespanMs: dep?.makespanMs ?? null,
        koReasons: dep?.nodes?.filter((n) => n.outcome !== 'ok').map((n) => `${n.node}: ${n.reason}`) ?? [
          deploy.stderr.trim().split('\n').pop(),
        ],
        teardownMs: teardown.ms,
      };
      run.setupDeployMs = run.setupMs + run.deployMs;
      result.runs.push(run);
      console.error(
        `run ${i + 1}: setup ${(run.setupMs / 1000).toFixed(1)} s (${run.vmsUp}/${run.vms} VMs up), deploy ${(run.deployMs / 1000).toFixed(1)} s (${run.ok}/${run.nodes} OK), teardown ${(run.teardownMs / 1000).toFixed(1)} s`,
      );
    }
    for (const k of ['setupMs', 'deployMs', 'setupDeployMs', 'teardownMs'])
      result[k] = summarize(result.runs.map((r) => r[k]));
    result.loadAfter = machine().load;
    writeResult('local', result);
    console.log(
      table(
        ['phase', 'median s', 'min–max s'],
        ['setupMs', 'deployMs', 'setupDeployMs', 'teardownMs'].map((k) => [
          k.replace('Ms', ''),
          (result[k].median / 1000).toFixed(1),
          `${(result[k].min / 1000).toFixed(1)}–${(result[k].max / 1000).toFixed(1)}`,
        ]),
      ),
    );
  },
);

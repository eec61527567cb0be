// `experiment run` through the built binary on a small emulated testbed (root): bad input is one
// line and exit 2 with nothing created; a run killed once setup is recorded is resumed by the next
// one without reserving again, which deploys the scaled environment, reports it beside the
// reference and the model's lower bound, and tears everything down.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { bin, kb, root } from '../helpers/cli.js';
import { emulatedConfig } from '../helpers/emulated-config.js';
import { leftovers } from '../helpers/leftovers.js';
import { needTools } from '../helpers/netns.js';

const skip = needTools('ip', 'tar');
const name = 'kbt-expr';
const prefix = '10.237';
const imageMB = 40;

const config = `${emulatedConfig({
  name,
  domain: 'expr.test',
  prefix,
  vms: 40,
  emulated: '{ seed: 3, faults: { reboot: 0.02 } }',
})}environments:
  - { name: expr-env, imageMB: ${imageMB} }
`;

describe('experiment run (built binary)', { skip, timeout: 900_000 }, () => {
  let home: string;
  let cfg: string;
  let env: NodeJS.ProcessEnv;
  let state: string;

  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'kb-expr-cli-'));
    env = { KABOOTSTRAP_HOME: join(home, `.kabootstrap-${name}`) };
    state = join(env.KABOOTSTRAP_HOME!, name);
    cfg = join(home, `${name}.yaml`);
    await writeFile(cfg, config);
  });

  after(async () => {
    await kb(['teardown', '-c', cfg, '-q'], { env, timeoutMs: 120_000 });
    assert.deepEqual(leftovers(name, prefix), []);
  });

  it('refuses bad input with one line and exit 2, creating nothing', async () => {
    await writeFile(join(home, 'noenv.yaml'), config.slice(0, config.indexOf('environments:')));
    const cases: [string[], RegExp][] = [
      [[join(home, 'missing.yaml')], /config .*missing\.yaml: cannot read it/],
      [[cfg, '--image-scale', '0'], /--image-scale: "0" is not a number of 1 or more/],
      [[cfg, '--no-such-flag'], /Nonexistent flag: --no-such-flag/],
      [[join(home, 'noenv.yaml')], /environments: the experiment needs an environment to deploy/],
    ];
    for (const [args, message] of cases) {
      const r = await kb(['experiment', 'run', '-q', ...args], { env });
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
    assert.equal(existsSync(env.KABOOTSTRAP_HOME!), false, 'nothing created');
  });

  it('resumes a run killed after setup, then reports beside the reference and tears down', async () => {
    const args = [bin, 'experiment', 'run', cfg, '--image-scale', '8', '--json', '-q'];
    const child = spawn(process.execPath, args, {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: 'ignore',
    });
    const exited = new Promise((r) => child.once('exit', r));
    const record = join(state, 'experiment.json');
    const deadline = Date.now() + 300_000;
    let jobs: { uid: number }[] = [];
    while (Date.now() < deadline) {
      const rec = existsSync(record) ? JSON.parse(await readFile(record, 'utf8')) : null;
      if (rec?.stages?.setup) {
        child.kill('SIGKILL');
        const st = JSON.parse(await readFile(join(state, 'state.json'), 'utf8'));
        jobs = st.resources.filter((x: { kind: string }) => x.kind === 'job');
        break;
      }
      if (child.exitCode !== null) break;
      await sleep(200);
    }
    await exited;
    assert.ok(jobs.length > 0, 'the first run recorded its setup and was killed');

    const r = await kb(['experiment', 'run', cfg, '--image-scale', '8', '--json', '-q'], {
      env,
      timeoutMs: 500_000,
    });
    assert.ok(r.code === 0 || r.code === 6, `exit ${r.code}: ${r.stderr}`);
    const rep = JSON.parse(r.stdout);
    // resumed: setup not run again, the same jobs
    assert.equal(rep.resumed, true);
    assert.deepEqual(
      rep.stages.map((s: { stage: string; status: string }) => `${s.stage}:${s.status}`).slice(0, 1),
      ['setup:resumed'],
    );
    assert.deepEqual(
      rep.stages.map((s: { stage: string }) => s.stage),
      ['setup', 'env', 'deploy', 'report', 'teardown'],
    );
    assert.equal(rep.testbed.jobs.length, jobs.length);
    assert.equal(rep.controller.runs, 2);
    // the result, its scaling and the reference
    const d = rep.deployment;
    assert.equal(d.nodes, 40);
    assert.equal(d.ok + d.ko, 40);
    assert.equal(r.code, d.ko > 0 ? 6 : 0);
    assert.ok(d.ok >= 36, `${d.ok} OK`);
    assert.equal(d.okPercent, Math.round((10000 * d.ok) / 40) / 100);
    assert.ok(d.lowerBoundMs > 0 && d.makespanMs > d.lowerBoundMs, `${d.makespanMs} > ${d.lowerBoundMs}`);
    assert.ok(d.modelLowerBoundMs > d.lowerBoundMs);
    assert.ok(d.modelledMakespanMs > d.makespanMs);
    assert.deepEqual(
      d.macroSteps.map((m: { macro: string }) => m.macro),
      ['SetDeploymentEnv', 'BroadcastEnv', 'BootNewEnv'],
    );
    assert.equal(rep.scaling.imageMB, imageMB);
    assert.ok(Math.abs(rep.scaling.imageScale - 8) < 0.1, `image scale ${rep.scaling.imageScale}`);
    assert.ok(Math.abs(rep.scaling.imageBytes - (imageMB << 20) / 8) < 64 << 10);
    assert.equal(rep.scaling.timeScale, 0.01);
    assert.equal(rep.reference.makespanMs, 58 * 60_000);
    assert.equal(rep.reference.okPercent, 99.6);
    assert.equal(rep.comparison.okPercentDelta, Math.round((d.okPercent - 99.6) * 100) / 100);
    assert.ok(rep.controller.cpuMs > 0 && rep.controller.peakRssBytes > 0);
    // kept after the teardown, which left nothing
    assert.equal(rep.tornDown, true);
    assert.deepEqual(JSON.parse(await readFile(rep.reportFile, 'utf8')).deployment.id, d.id);
    assert.equal(existsSync(state), false);
    assert.deepEqual(leftovers(name, prefix), []);
    process.stderr.write(
      `# experiment: 40 VMs, ${d.ok} OK, makespan ${d.makespanMs} ms (modelled ${d.modelledMakespanMs} ms), lower bound ${Math.round(d.lowerBoundMs)} ms, image ÷${rep.scaling.imageScale}, controller ${rep.controller.cpuMs} ms CPU\n`,
    );
  });
});

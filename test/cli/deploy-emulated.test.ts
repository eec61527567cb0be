// The deployment engine through the real binary on an emulated testbed (root): transient boot
// hangs injected on every reboot and one VM that dies while it receives the image. Every VM that
// stays alive ends OK, the dead one KO with a reason; exec by tree and put by chain reach every
// node, and so do exec, put and BroadcastEnv through the installed TakTuk (whose engines the
// emulated VMs run for real); stats and report read what was stored; bad input is one line and
// changes nothing.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { planFaults } from '../../src/lib/emulated/model.js';
import type { Plan } from '../../src/lib/planner/plan.js';
import { kb } from '../helpers/cli.js';
import { emulatedConfig } from '../helpers/emulated-config.js';
import { leftovers } from '../helpers/leftovers.js';
import { addMiniEnvironment } from '../helpers/mini-env.js';
import { needTools } from '../helpers/netns.js';

const skip = needTools('ip', 'tar');
const name = 'kbt-dep';
const prefix = '10.229';

function config(seed: number): string {
  return emulatedConfig({
    name,
    domain: 'dep.test',
    prefix,
    vms: 40,
    emulated: `{ seed: ${seed}, faults: { die-mid-transfer: 0.03, reboot: 0.05 } }`,
  });
}

describe('deployment on an emulated testbed (built binary)', { skip, timeout: 400_000 }, () => {
  let home: string;
  let cfg: string;
  let env: NodeJS.ProcessEnv;
  let plan: Plan;
  let victim: string;
  const deployments = () => readdir(join(env.KABOOTSTRAP_HOME!, name, 'deployments')).catch(() => []);

  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'kb-dep-cli-'));
    env = { KABOOTSTRAP_HOME: join(home, `.kabootstrap-${name}`) };
    cfg = join(home, `${name}.yaml`);
    await writeFile(cfg, config(1));
    const dry = await kb(['setup', '--dry-run', '-c', cfg, '--json', '-q'], { env });
    assert.equal(dry.code, 0, dry.stderr);
    plan = JSON.parse(dry.stdout);
    const names = plan.sites.flatMap((s) => s.vms.map((v) => v.name));
    // The first seed that kills exactly one VM during the transfer.
    let seed = 1;
    for (; seed < 200; seed++) {
      const dying = [...planFaults(names, { rates: { 'die-mid-transfer': 0.03 } }, seed)].filter(
        ([, f]) => f.kind === 'die-mid-transfer',
      );
      if (dying.length === 1) {
        victim = dying[0][0];
        break;
      }
    }
    await writeFile(cfg, config(seed));
    const setup = await kb(['setup', '-c', cfg, '--json', '-q'], { env, timeoutMs: 240_000 });
    assert.equal(setup.code, 0, setup.stderr);
    await addMiniEnvironment(home, env);
  });

  after(async () => {
    await kb(['teardown', '-c', cfg, '-q'], { env });
  });

  it('refuses bad input with one line, touching nothing', async () => {
    await writeFile(join(home, 'outside.txt'), 'vm-nancy-1\nvm-mars-1\n');
    const cases: [string[], RegExp][] = [
      [['-e', 'nope'], /unknown environment "nope" \(known: mini\)/],
      [['-e', 'mini', '-f', join(home, 'outside.txt')], /node vm-mars-1 is not in testbed kbt-dep/],
      [
        ['-e', 'mini', '--steps', 'BroadcastEnv|BroadcastEnvFoo:1:100'],
        /"BroadcastEnvFoo" is not a BroadcastEnv step/,
      ],
      [['-e', 'mini', '--reboot-window', 'ten'], /--reboot-window: "ten" is not SIZE:SECONDS/],
    ];
    for (const [args, message] of cases) {
      const r = await kb(['deploy', '-c', cfg, '-q', ...args], { env });
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
    // an image changed after registration
    const image = join(home, 'mini.tar.gz');
    const original = await readFile(image);
    await writeFile(image, Buffer.concat([original, Buffer.from('x')]));
    const r = await kb(['deploy', '-c', cfg, '-q', '-e', 'mini'], { env });
    await writeFile(image, original);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /environment mini v1: image .*mini\.tar\.gz changed since registration/);
    assert.deepEqual(await deployments(), [], 'no deployment recorded');
  });

  it('deploys: every live VM OK through retries, the VM killed mid-broadcast KO with a reason', async () => {
    const r = await kb(['deploy', '-c', cfg, '-e', 'mini', '--broadcast', 'chain', '--json', '-q'], {
      env,
      timeoutMs: 300_000,
    });
    assert.equal(r.code, 6, r.stderr); // partial: one node is KO
    const dep = JSON.parse(r.stdout);
    const ko = dep.nodes.filter((n: { outcome: string }) => n.outcome === 'ko');
    assert.deepEqual(
      ko.map((n: { node: string }) => n.node),
      [victim],
    );
    assert.match(ko[0].reason, /broadcast|Unreachable/);
    assert.equal(dep.ok, 39);
    assert.ok(dep.lowerBoundMs > 0 && dep.makespanMs > dep.lowerBoundMs);
    // the injected reboot hangs made some nodes retry or fall back, and they still ended OK
    const retried = new Set(
      dep.steps.filter((s: { attempt: number }) => s.attempt > 1).map((s: { node: string }) => s.node),
    );
    assert.ok(retried.size > 0, 'some node needed a retry');
    process.stderr.write(
      `# emulated deploy: 40 VMs, ${dep.ok} OK, makespan ${dep.makespanMs} ms, lower bound ${Math.round(dep.lowerBoundMs)} ms, ${retried.size} retried\n`,
    );

    const stats = await kb(['stats', '-c', cfg, '--json', '-q'], { env });
    assert.equal(stats.code, 0, stats.stderr);
    const st = JSON.parse(stats.stdout);
    assert.equal(st.deployments.length, 1);
    assert.ok(st.failureRates.byInstance.some((x: { failures: number }) => x.failures > 0));
    const html = join(home, 'report.html');
    const rep = await kb(['report', '-c', cfg, '-o', html, '--json', '-q'], { env });
    assert.equal(rep.code, 0, rep.stderr);
    const page = await readFile(html, 'utf8');
    assert.match(page, /<svg/);
    assert.ok(page.includes(victim));
  });

  it('runs a command on every node by tree within its window, and puts a file by chain', async () => {
    const ex = await kb(
      ['exec', '-c', cfg, '--method', 'tree', '--window', '4', '--json', '-q', '--', 'hostname'],
      {
        env,
      },
    );
    const out = JSON.parse(ex.stdout);
    const alive = plan.sites.flatMap((s) => s.vms.map((v) => v.name)).filter((n) => n !== victim);
    const okNames = out.results
      .filter((x: { code: number }) => x.code === 0)
      .map((x: { node: string }) => x.node);
    assert.deepEqual(okNames.sort(), alive.sort());
    assert.equal(out.results.length, 40, 'the dead VM is reported too');
    assert.ok(out.stats.maxDirectConnections <= 4, `${out.stats.maxDirectConnections} direct connections`);

    const file = join(home, 'big.bin');
    await writeFile(file, randomBytes(8 << 20));
    await writeFile(join(home, 'alive.txt'), `${alive.join('\n')}\n`);
    const put = await kb(
      ['put', '-c', cfg, file, '/tmp/big.bin', '-f', join(home, 'alive.txt'), '--json', '-q'],
      {
        env,
        timeoutMs: 120_000,
      },
    );
    assert.equal(put.code, 0, put.stderr);
    const p = JSON.parse(put.stdout);
    assert.equal(p.ok, 39);
    assert.ok(p.nodes.every((n: { sha256: string }) => n.sha256 === p.sha256));
  });

  it('runs a command, puts a file and deploys through the installed TakTuk', async () => {
    // `<command> -c CFG --json -q ...` through the built binary
    const json = (args: string[], timeoutMs: number) =>
      kb([args[0], '-c', cfg, '--json', '-q', ...args.slice(1)], { env, timeoutMs });
    const all = plan.sites.flatMap((s) => s.vms.map((v) => v.name));
    const alive = all.filter((n) => n !== victim);
    const ex = await json(['exec', '--method', 'taktuk', '--', 'hostname'], 120_000);
    assert.equal(ex.code, 6, ex.stderr); // partial: the dead VM
    const out = JSON.parse(ex.stdout);
    assert.equal(out.results.length, 40);
    for (const r of out.results) {
      if (r.node === victim) {
        assert.equal(r.code, null);
        assert.match(r.error, /unreachable|not reported/);
      } else assert.deepEqual([r.node, r.code, r.stdout], [r.node, 0, `${r.node}\n`]);
    }

    const file = join(home, 'tk.bin');
    await writeFile(file, randomBytes(8 << 20));
    const put = await json(
      ['put', file, '/tmp/tk.bin', '--method', 'taktuk', '-f', join(home, 'alive.txt')],
      120_000,
    );
    assert.equal(put.code, 0, put.stderr);
    const p = JSON.parse(put.stdout);
    assert.equal(p.topology, 'taktuk');
    assert.equal(p.ok, 39);
    assert.ok(p.nodes.every((n: { sha256: string }) => n.sha256 === p.sha256));

    // BroadcastEnvTaktuk in a whole deployment, on one site's live VMs
    const some = alive.filter((n) => n.startsWith('vm-rennes-')).slice(0, 8);
    await writeFile(join(home, 'some.txt'), `${some.join('\n')}\n`);
    const dep = await json(
      ['deploy', '-e', 'mini', '--broadcast', 'taktuk', '-f', join(home, 'some.txt')],
      300_000,
    );
    assert.equal(dep.code, 0, dep.stderr);
    const d = JSON.parse(dep.stdout);
    assert.equal(d.ok, some.length);
    assert.ok(d.steps.some((s: { instance: string }) => s.instance === 'BroadcastEnvTaktuk'));
    process.stderr.write(
      `# taktuk: exec on 40 in ${out.stats.ms} ms, put 8 MiB to 39 in ${p.makespanMs} ms, deploy ${some.length} in ${d.makespanMs} ms\n`,
    );
  });

  it('boots the deployed system the classical way: its own kernel and initrd from the service node', async () => {
    const alive = plan.sites.flatMap((s) => s.vms.map((v) => v.name)).filter((n) => n !== victim);
    const some = ['vm-nancy-', 'vm-rennes-'].flatMap((p) => alive.filter((n) => n.startsWith(p)).slice(0, 3));
    const list = join(home, 'classical.txt');
    await writeFile(list, `${some.join('\n')}\n`);
    const steps =
      'SetDeploymentEnv|SetDeploymentEnvUntrusted:2:100&BroadcastEnv|BroadcastEnvChain:1:100&BootNewEnv|BootNewEnvClassical:2:100';
    const r = await kb(['deploy', '-c', cfg, '-e', 'mini', '-f', list, '--steps', steps, '--json', '-q'], {
      env,
      timeoutMs: 300_000,
    });
    assert.equal(r.code, 0, r.stderr);
    const d = JSON.parse(r.stdout);
    assert.equal(d.ok, some.length);
    // an emulated VM answers as the deployed system only if its iPXE script booted an env kernel
    const id = await kb(['exec', '-c', cfg, '-f', list, '--json', '-q', '--', 'cat /etc/kb-env'], { env });
    assert.equal(id.code, 0, id.stderr);
    assert.deepEqual(
      JSON.parse(id.stdout)
        .results.map((x: { node: string; stdout: string }) => `${x.node} ${x.stdout.trim()}`)
        .sort(),
      some.map((n) => `${n} mini 1`).sort(),
    );
    process.stderr.write(
      `# classical boot of mini on ${some.length} emulated VMs: makespan ${d.makespanMs} ms\n`,
    );
  });

  it('tears down leaving nothing', async () => {
    const down = await kb(['teardown', '-c', cfg, '-q'], { env });
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(leftovers(name, `${prefix}.`), []);
    assert.equal(existsSync(join(env.KABOOTSTRAP_HOME!, name)), false);
  });
});

// The local testbed for real (root): namespaces, VLAN bridges, the controller's route, sshd on
// every host; then teardown must leave no namespace, link, route or process behind, also after
// a setup killed half-way.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { silentLogger } from '../../src/lib/log.js';
import type { Plan } from '../../src/lib/planner/plan.js';
import { loadRecipe, runRecipe } from '../../src/lib/recipes/recipe.js';
import { sshTarget } from '../../src/lib/recipes/targets.js';
import type { ServiceNodeInput } from '../../src/lib/services/config.js';
import { bin, kb, root } from '../helpers/cli.js';
import { leftovers } from '../helpers/leftovers.js';
import { needTools } from '../helpers/netns.js';

const skip = needTools('sshd', 'ssh-keygen', 'ip', 'dig', 'dnsmasq');

/** The controller asks each site's service node (through the testbed route) for a VM's A and PTR. */
function assertDnsFromController(plan: Plan) {
  for (const site of plan.sites) {
    const server = site.serviceNodes[0].ip;
    const vm = site.vms.at(-1)!;
    const a = execFileSync('dig', ['+short', '+time=2', '+tries=2', `@${server}`, vm.fqdn, 'A'], {
      encoding: 'utf8',
    });
    assert.equal(a.trim(), vm.ip, `A of ${vm.fqdn} from ${server}`);
    const ptr = execFileSync('dig', ['+short', '+time=2', '+tries=2', `@${server}`, '-x', vm.ip], {
      encoding: 'utf8',
    });
    assert.equal(ptr.trim(), `${vm.fqdn}.`, `PTR of ${vm.ip} from ${server}`);
  }
}

/** Runs recipes/service-node/debian-ssh.yaml over SSH on a host, checks the daemon answers, stops it. */
async function sshRecipeRoundTrip(testbedDir: string, result: { plan: Plan }, hostFqdn: string) {
  const state = JSON.parse(await readFile(join(testbedDir, 'state.json'), 'utf8'));
  const hostIp = state.resources.find((r: { data: { fqdn?: string } }) => r.data.fqdn === hostFqdn).data
    .ip as string;
  const dir = await mkdtemp(join(tmpdir(), 'kb-ssh-recipe-'));
  const site = result.plan.sites[0];
  const config: ServiceNodeInput = {
    name: hostFqdn,
    site: site.name,
    domain: result.plan.domain,
    ip: hostIp,
    network: { subnet: site.network, gateway: site.gateway, dns: [hostIp] },
    roles: ['http', 'dns'],
    tftpRoot: join(dir, 'tftp'),
    httpRoot: join(dir, 'http'),
    boot: { deploy: { kernel: 'k', initrd: 'i' } },
    nodes: [],
    dns: { records: [{ name: hostFqdn, ip: hostIp }] },
  };
  await writeFile(join(dir, 'service.json'), JSON.stringify(config));
  const vars = {
    node: process.execPath,
    cli: bin,
    config: join(dir, 'service.json'),
    tftpRoot: config.tftpRoot,
    httpRoot: config.httpRoot,
    logFile: join(dir, 'service.log'),
    pidFile: join(dir, 'service.pid'),
    controlPort: 8067,
  };
  const target = sshTarget(hostIp, join(testbedDir, 'ssh', 'id_ed25519'));
  // the host's sessions see a home of their own, not this machine's rc files and dotfiles
  const home = await target.exec('echo "$HOME"; ls -A ~ | wc -l', 20_000);
  assert.equal(home.code, 0, home.stderr || home.error);
  assert.deepEqual(home.stdout.trim().split('\n'), [userInfo().homedir, '0'], 'an empty home on the host');
  assert.ok(existsSync(join(testbedDir, 'ssh', 'home')), 'the hosts’ homes are the testbed’s');
  const recipe = await loadRecipe('service-node/debian-ssh.yaml');
  const up = await runRecipe(recipe, 'up', vars, target, silentLogger);
  assert.ok(up.every((s) => s.ok));
  const health = await fetch(`http://${hostIp}:8067/health`);
  assert.equal(health.status, 200);
  assert.deepEqual((await health.json()).roles, ['http', 'dns', 'control']);
  await runRecipe(recipe, 'down', vars, target, silentLogger);
  // `kill` returns before the daemon has handled SIGTERM (slow while QEMU VMs take both cores)
  let stopped = false;
  for (const deadline = Date.now() + 15_000; !stopped && Date.now() < deadline; ) {
    stopped = await fetch(`http://${hostIp}:8067/health`, { signal: AbortSignal.timeout(2000) }).then(
      () => false,
      () => true,
    );
    if (!stopped) await new Promise((r) => setTimeout(r, 250));
  }
  assert.ok(stopped, 'the daemon stopped');
}

/**
 * The built-in default config under the test's name and prefix, on the local provider's direct
 * path unless `via` says twin (its default; test/cli/twin-setup.test.ts runs the whole job so).
 */
async function configFile(
  dir: string,
  name: string,
  prefix: string,
  backend = 'builtin',
  via: 'direct' | 'twin' = 'direct',
): Promise<string> {
  const text = (await readFile(join(root, 'recipes/local-small.yaml'), 'utf8'))
    .replace('name: local-small', `name: ${name}`)
    .replace('provider: local\n', `provider: local\nlocal: { via: ${via} }\n`)
    .replace('10.213.0.0/16', `${prefix}.0.0/16`)
    .replace('backend: builtin', `backend: ${backend}`);
  assert.match(text, new RegExp(`^local: \\{ via: ${via} \\}$`, 'm'));
  const file = join(dir, `${name}.yaml`);
  await writeFile(file, text);
  return file;
}

describe('local testbed network', { skip }, () => {
  let home: string;
  // Every testbed a test made is torn down at the end, also when an assertion failed half-way.
  const made: { cfg: string; env: NodeJS.ProcessEnv }[] = [];
  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'kb-local-'));
  });
  after(async () => {
    for (const { cfg, env } of made) await kb(['teardown', '-c', cfg, '-q'], { env });
  });

  it('sets up, answers SSH on every host, and tears down leaving nothing', async () => {
    const name = 'kbt-net';
    const cfg = await configFile(home, name, '10.218');
    const env = { KABOOTSTRAP_HOME: join(home, `.kabootstrap-${name}`) };
    made.push({ cfg, env });
    const t0 = Date.now();
    const setup = await kb(['setup', '-c', cfg, '--json', '-q'], { env, timeoutMs: 900_000 });
    assert.equal(setup.code, 0, setup.stderr);
    const result = JSON.parse(setup.stdout);
    assert.equal(result.phase, 'ready');
    assert.equal(result.hosts.length, 6);
    assert.ok(result.hosts.every((h: { ok: boolean }) => h.ok));
    // The main job: every planned VM network-booted into the deployment environment.
    assert.deepEqual(
      result.vms.map((v: { name: string; state: string }) => `${v.name} ${v.state}`),
      result.plan.sites.flatMap((s: { vms: { name: string }[] }) => s.vms.map((v) => `${v.name} ssh`)),
    );
    process.stderr.write(`local testbed setup: ${Date.now() - t0} ms\n`);

    const ns = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    assert.equal(ns.split('\n').filter((l) => l.startsWith(`kb-${name}-`)).length, 7, 'fabric + 6 hosts');

    const status = await kb(['status', '-c', cfg, '--json', '-q'], { env });
    assert.equal(status.code, 0, status.stderr);
    const st = JSON.parse(status.stdout);
    assert.deepEqual(
      st.machines.map((m: { state: string }) => m.state),
      ['up', 'up', 'up', 'up', 'up', 'up'],
    );

    assert.deepEqual(
      st.services.map((x: { state: string }) => x.state),
      ['up', 'up'],
    );
    // every VM answers SSH in the deployment environment, as setup left it
    assert.deepEqual(st.vmCounts, { up: 8, down: 0, failed: 0, 'not-launched': 0, unknown: 0 });
    assertDnsFromController(result.plan);

    // The Debian-over-SSH service node recipe, run for real against a VM host through its sshd.
    const vmHost = result.plan.sites[0].hosts[0].host;
    await sshRecipeRoundTrip(join(env.KABOOTSTRAP_HOME, name), result, vmHost);

    // The deployment engine on the 8 QEMU VMs: the tiny environment, written by the busybox agent
    // through a chain, booted by kexec; each VM then answers as that system, on its kernel.
    const images = await kb(['images', 'build', '-q', '--json'], { env, timeoutMs: 300_000 });
    assert.equal(images.code, 0, images.stderr);
    const add = await kb(['env', 'add', join(root, 'recipes/envs/tiny.yaml'), '--json', '-q'], { env });
    assert.equal(add.code, 0, add.stderr);
    const t1 = Date.now();
    const dep = await kb(['deploy', '-c', cfg, '-e', 'tiny', '--json', '-q'], { env, timeoutMs: 900_000 });
    assert.equal(dep.code, 0, `${dep.stderr}${koReasons(dep.stdout)}`);
    const deployed = JSON.parse(dep.stdout);
    assert.deepEqual(
      deployed.nodes.map((n: { node: string; outcome: string }) => `${n.node} ${n.outcome}`),
      result.vms.map((v: { name: string }) => `${v.name} ok`),
    );
    process.stderr.write(
      `# QEMU deploy of tiny on 8 VMs: ${Date.now() - t1} ms (makespan ${deployed.makespanMs} ms)\n`,
    );
    const id = await kb(
      ['exec', '-c', cfg, '--json', '-q', '--', 'cat /etc/kb-env; uname -r; cat /proc/cmdline; hostname'],
      { env },
    );
    assert.equal(id.code, 0, id.stderr);
    for (const r of JSON.parse(id.stdout).results) {
      const [envLine, kernel, cmdline, hostname] = r.stdout.trim().split('\n');
      assert.equal(envLine, 'tiny 1', r.node);
      assert.match(kernel, /-cloud-amd64$/, r.node);
      assert.match(cmdline, /root=\/dev\/vda1/, r.node);
      // the post-install kept the node's name in the new system
      assert.equal(hostname, r.node);
    }
    // the busybox deployment environment has no TakTuk: refused up front, nothing recorded
    const tk = await kb(['deploy', '-c', cfg, '-e', 'tiny', '--broadcast', 'taktuk', '-q'], { env });
    assert.equal(tk.code, 2, tk.stderr);
    assert.equal(
      tk.stderr.trim(),
      "kabootstrap: BroadcastEnvTaktuk: the qemu runtime's deployment environment has no taktuk (use chain, tree or star)",
    );

    // Kadeploy's classical boot on one VM per site: back to the deployment environment by a reboot,
    // the same image again, then the deployed system network-booted from its service node with the
    // environment's own kernel and initrd (taken out of the image, uploaded, the `env` profile).
    const subset = result.plan.sites.map((s: { vms: { name: string }[] }) => s.vms[0].name);
    const nodeFile = join(home, 'classical.txt');
    await writeFile(nodeFile, `${subset.join('\n')}\n`);
    const t2 = Date.now();
    const classical = await kb(
      [
        ...['deploy', '-c', cfg, '-e', 'tiny', '-f', nodeFile, '--json', '-q', '--steps'],
        'SetDeploymentEnv|SetDeploymentEnvUntrusted:1:600&BroadcastEnv|BroadcastEnvChain:1:600&BootNewEnv|BootNewEnvClassical:1:600',
      ],
      { env, timeoutMs: 900_000 },
    );
    assert.equal(classical.code, 0, `${classical.stderr}${koReasons(classical.stdout)}`);
    const cdep = JSON.parse(classical.stdout);
    assert.deepEqual(
      cdep.nodes.map((n: { node: string; outcome: string }) => `${n.node} ${n.outcome}`),
      subset.map((n: string) => `${n} ok`),
    );
    /** Per node, the seconds BootNewEnv took (its micro-steps, first attempt). */
    const bootNewEnv = (d: { steps: { node: string; macro: string; durationMs: number }[] }, node: string) =>
      d.steps
        .filter((s) => s.node === node && s.macro === 'BootNewEnv')
        .reduce((t, s) => t + s.durationMs, 0) / 1000;
    process.stderr.write(
      `# QEMU deploy of tiny with BootNewEnvClassical on ${subset.length} VMs: ${Date.now() - t2} ms; BootNewEnv per node: ${subset
        .map(
          (n: string) =>
            `${n} classical ${bootNewEnv(cdep, n).toFixed(1)} s vs kexec ${bootNewEnv(deployed, n).toFixed(1)} s`,
        )
        .join(', ')}\n`,
    );
    // each one's service node got the kernel and initrd, content-addressed, from the controller
    for (const site of result.plan.sites as { name: string; vms: { serviceNode: string }[] }[]) {
      const http = join(
        env.KABOOTSTRAP_HOME,
        name,
        'services',
        `${site.vms[0].serviceNode.split('.')[0]}-${site.name}`,
        'http',
      );
      const stored = (await readdir(join(http, 'envs'), { recursive: true })).filter((f) =>
        /\/(kernel|initrd)$/.test(f),
      );
      assert.deepEqual(stored.map((f) => f.split('/')[1]).sort(), ['initrd', 'kernel'], http);
    }
    const cid = await kb(
      [
        'exec',
        '-c',
        cfg,
        '-f',
        nodeFile,
        '--json',
        '-q',
        '--',
        'cat /etc/kb-env; uname -r; cat /proc/cmdline',
      ],
      { env },
    );
    assert.equal(cid.code, 0, cid.stderr);
    const answers = JSON.parse(cid.stdout).results;
    assert.equal(answers.length, subset.length);
    for (const r of answers) {
      const [envLine, kernel, cmdline] = r.stdout.trim().split('\n');
      assert.equal(envLine, 'tiny 1', r.node);
      assert.match(kernel, /-cloud-amd64$/, r.node);
      // iPXE's command line (initrd=initrd), not kexec's nor the deployment environment's (kb.*)
      assert.match(cmdline, /^initrd=initrd console=ttyS0 root=\/dev\/vda1$/, `${r.node}: ${cmdline}`);
    }

    const down = await kb(['teardown', '-c', cfg, '--json', '-q'], { env });
    assert.equal(down.code, 0, down.stderr);
    const d = JSON.parse(down.stdout);
    assert.equal(d.network.namespaces, 7);
    assert.equal(d.network.links, 1);
    assert.ok(d.network.processes >= 6, 'one sshd per host');
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(leftovers(name, '10.218.'), []);
  });

  it('runs the dnsmasq backend the same way: services answer, DNS from the controller, clean teardown', async () => {
    const name = 'kbt-dnsm';
    const cfg = await configFile(home, name, '10.220', 'dnsmasq');
    const env = { KABOOTSTRAP_HOME: join(home, `.kabootstrap-${name}`) };
    made.push({ cfg, env });
    const setup = await kb(['setup', '-c', cfg, '--no-vms', '--json', '-q'], { env });
    assert.equal(setup.code, 0, setup.stderr);
    const result = JSON.parse(setup.stdout);
    assert.equal(result.phase, 'ready');
    assert.deepEqual(
      result.services.map((s: { detail: string }) => s.detail),
      // dnsmasq answers DHCP; the daemon serves HTTP and runs radvd (IPv6 router advertisements).
      ['roles http,ra,control', 'roles http,ra,control'],
    );
    assertDnsFromController(result.plan);
    const down = await kb(['teardown', '-c', cfg, '-q'], { env });
    assert.equal(down.code, 0, down.stderr);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(leftovers(name, '10.220.'), []);
  });

  it('runs the dnsmasq backend through the twin: installed over SSH, the 8 VMs boot from it, clean teardown', async () => {
    const name = 'kbt-dnst';
    const cfg = await configFile(home, name, '10.240', 'dnsmasq', 'twin');
    const env = { KABOOTSTRAP_HOME: join(home, `.kabootstrap-${name}`) };
    made.push({ cfg, env });
    const setup = await kb(['setup', '-c', cfg, '--json', '-q'], { env, timeoutMs: 900_000 });
    assert.equal(setup.code, 0, setup.stderr);
    const result = JSON.parse(setup.stdout);
    assert.equal(result.phase, 'ready');
    assert.equal(result.machines.length, 6, 'reinstalled through the twin');
    assert.deepEqual(
      result.services.map((s: { detail: string }) => s.detail),
      ['roles http,ra,control', 'roles http,ra,control'],
    );
    // dnsmasq runs inside each service node's machine, from the config copied there
    for (const site of result.plan.sites as { name: string; serviceNodes: { host: string }[] }[]) {
      const ns = `kb-${name}-${site.serviceNodes[0].host.split('.')[0]}-${site.name}`;
      const comms = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' })
        .trim()
        .split('\n')
        .map((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' '));
      assert.ok(
        comms.some((c) =>
          c.startsWith('/usr/sbin/dnsmasq --keep-in-foreground --conf-file=/var/lib/kabootstrap/'),
        ),
        `${ns}: ${comms.join(' | ')}`,
      );
    }
    // DHCP and TFTP from dnsmasq, HTTP from the daemon: every VM network-booted and answers
    assert.deepEqual(
      result.vms.map((v: { state: string }) => v.state),
      Array(8).fill('ssh'),
      JSON.stringify(result.vms),
    );
    assertDnsFromController(result.plan);
    const down = await kb(['teardown', '-c', cfg, '-q'], { env, timeoutMs: 120_000 });
    assert.equal(down.code, 0, down.stderr);
    const end = Date.now() + 20_000;
    while (leftovers(name, '10.240.').length && Date.now() < end)
      await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(leftovers(name, '10.240.'), []);
  });

  it('refuses namespaces of its name that its state does not know, and teardown sweeps them', async () => {
    const name = 'kbt-foreign';
    const cfg = await configFile(home, name, '10.221');
    const env = { KABOOTSTRAP_HOME: join(home, `.kabootstrap-${name}`) };
    made.push({ cfg, env });
    execFileSync('ip', ['netns', 'add', `kb-${name}-grappe-1-nancy`]);
    const setup = await kb(['setup', '-c', cfg, '--no-vms', '-q'], { env });
    assert.equal(setup.code, 3);
    assert.match(setup.stderr, /namespaces kb-kbt-foreign-grappe-1-nancy exist but are not in its state/);
    const down = await kb(['teardown', '-c', cfg, '-q'], { env });
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(leftovers(name, '10.221.'), []);
  });

  it('cleans after a setup killed half-way, and a new setup then resumes', async () => {
    const name = 'kbt-crash';
    const cfg = await configFile(home, name, '10.219');
    const env = { ...process.env, KABOOTSTRAP_HOME: join(home, `.kabootstrap-${name}`) };
    made.push({ cfg, env });
    const child = spawn(process.execPath, [bin, 'setup', '-c', cfg, '--no-vms', '-q'], {
      cwd: root,
      env,
      stdio: 'ignore',
    });
    // Kill it as soon as it has made a couple of namespaces (bounded: 30 s).
    const deadline = Date.now() + 30_000;
    let killedMidway = false;
    while (Date.now() < deadline && child.exitCode === null) {
      const made = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
        .split('\n')
        .filter((l) => l.startsWith(`kb-${name}-`)).length;
      if (made >= 2) {
        child.kill('SIGKILL');
        killedMidway = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    await new Promise((r) => (child.exitCode !== null || child.signalCode ? r(null) : child.once('exit', r)));
    assert.ok(killedMidway, 'setup was killed while building the network');
    const state = JSON.parse(await readFile(join(env.KABOOTSTRAP_HOME, name, 'state.json'), 'utf8'));
    assert.notEqual(state.phase, 'ready');

    // A new setup resumes from the state and finishes.
    const resumed = await kb(['setup', '-c', cfg, '--no-vms', '--json', '-q'], { env });
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.equal(JSON.parse(resumed.stdout).phase, 'ready');
    assert.equal(JSON.parse(resumed.stdout).resumed, true);
    // Every service node serves DHCP, so its daemon also runs radvd on its VLAN.
    assert.deepEqual(
      JSON.parse(resumed.stdout).services.map((s: { detail: string }) => s.detail),
      ['roles dhcp,tftp,http,dns,ra,control', 'roles dhcp,tftp,http,dns,ra,control'],
    );

    // Kill again mid-way through nothing: teardown straight after a crash.
    const down = await kb(['teardown', '-c', cfg, '-q'], { env });
    assert.equal(down.code, 0, down.stderr);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(leftovers(name, '10.219.'), []);
  });
});

/** The KO nodes of a `deploy --json` answer and why, for an assertion's message. */
function koReasons(stdout: string): string {
  try {
    const nodes: { node: string; outcome: string; reason?: string }[] = JSON.parse(stdout).nodes;
    return nodes
      .filter((n) => n.outcome !== 'ok')
      .map((n) => `\n${n.node}: ${n.reason}`)
      .join('');
  } catch {
    return '';
  }
}

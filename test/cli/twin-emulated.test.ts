// The emulated runtime on provider g5k, against a site's twin run as its own process (root): setup
// reinstalls the machines, moves them into the KaVLAN, prepares the VM hosts and installs the
// service node over SSH, then starts one emulated host group per VM host over SSH (beside the
// host's own sshd, its VMs on the host's bridge, its host control on a port of its own); the VMs
// network-boot from the service node inside the VLAN. `deploy -e tiny`, a hard reboot (power
// through the hosts' control port, as the state records it), `exec`; a VM host that dies is seen
// by `status`, with its VMs; teardown releases the job, the twin removes the machines with their
// groups. First, a machine KaVLAN refuses to move stops setup with one line naming it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { kb, type kbServe, root } from '../helpers/cli.js';
import { leftovers } from '../helpers/leftovers.js';
import { needTools } from '../helpers/netns.js';
import { injectFault, serveTwin } from '../helpers/twin.js';

const skip = needTools('sshd', 'ssh-keygen', 'ip');
const twinName = 'kbt-twm';
const testbed = 'kbt-twm-g';
const prefix = '10.233.';
const vms = 240;
const gcThresh3 = '/proc/sys/net/ipv4/neigh/default/gc_thresh3';

const twinConfig = `name: ${twinName}
provider: local
domain: ${twinName}.test
network: { prefix: 10.233.0.0/16 }
sites:
  - name: nancy
    clusters:
      - name: grappe
        hosts: 6
        hardware: { cores: 16, threads: 32, ramMB: 131072, diskGB: 200 }
`;

describe('the emulated runtime on g5k against a twin: one host group per VM host over SSH', { skip }, () => {
  let home: string;
  let env: NodeJS.ProcessEnv;
  let twin: Awaited<ReturnType<typeof kbServe>> | null = null;
  let cfg: string;
  let url: string;

  before(async () => {
    ({ home, env, twin, url } = await serveTwin(twinName, twinConfig));
    cfg = join(home, `${testbed}.yaml`);
    // one service node and three VM hosts of 80 emulated VMs each
    await writeFile(
      cfg,
      `name: ${testbed}
provider: g5k
api: { url: '${url}', credentials: none, retries: 1 }
vlan: { type: kavlan }
vms: { count: ${vms}, perHost: 80, maxPerHost: 80, runtime: emulated }
sites: [{ name: nancy, serviceNodes: 1, clusters: [{ name: grappe, hosts: [grappe-1, grappe-2, grappe-3, grappe-4] }] }]
`,
    );
  });

  after(async () => {
    if (twin && twin.child.exitCode === null) {
      twin.child.kill('SIGTERM');
      await new Promise((r) => twin!.child.once('exit', r));
    }
  });

  it('stops with one line naming the machine KaVLAN refused to move, and tears down clean', async () => {
    const refused = `grappe-6.nancy.${twinName}.test`;
    await injectFault(url, { refuseVlanMoves: [refused] });
    const small = join(home, 'refused.yaml');
    await writeFile(
      small,
      `name: ${testbed}-r
provider: g5k
api: { url: '${url}', credentials: none, retries: 1 }
vlan: { type: kavlan }
vms: { count: 2, runtime: emulated }
sites: [{ name: nancy, serviceNodes: 1, clusters: [{ name: grappe, hosts: [grappe-5, grappe-6] }] }]
`,
    );
    const setup = await kb(['setup', '-c', small, '-q'], { env, timeoutMs: 300_000 });
    assert.equal(setup.code, 3, setup.stderr);
    // the error is one line, naming the machine and its VLAN (progress logs aside)
    const errors = setup.stderr.split('\n').filter((l) => l.startsWith('kabootstrap:'));
    assert.equal(errors.length, 1, setup.stderr);
    assert.ok(errors[0].includes(refused) && /VLAN/.test(errors[0]), errors[0]);
    const down = await kb(['teardown', '-c', small, '--json', '-q'], { env, timeoutMs: 120_000 });
    assert.equal(down.code, 0, down.stderr);
    assert.equal(JSON.parse(down.stdout).releasedJobs, 1);
  });

  it(`sets up ${vms} emulated VMs over SSH, deploys them, reboots some through their hosts and leaves nothing`, async () => {
    // the kernel's ARP table is shared with the twin's machines: the twin sized it for its VM network
    assert.ok(Number(readFileSync(gcThresh3, 'utf8')) >= 4 * 4096, 'gc_thresh3 raised by the twin');

    const setup = await kb(['setup', '-c', cfg, '--json', '-q'], { env, timeoutMs: 600_000 });
    assert.equal(setup.code, 0, setup.stderr);
    const result = JSON.parse(setup.stdout);
    assert.equal(result.phase, 'ready');
    assert.equal(result.runtime, 'emulated');
    assert.equal(result.emulatedHosts, 3);
    assert.equal(result.vms.length, vms);
    assert.deepEqual(
      result.vms.filter((v: { state: string }) => v.state !== 'ssh'),
      [],
    );
    // each VM host runs its own group, inside that machine (its namespace), holding its VMs' addresses
    for (const h of result.plan.sites[0].hosts) {
      const ns = `kb-${twinName}-${h.host.split('.')[0]}-nancy`;
      const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).trim().split('\n');
      const groups = pids.filter((pid) => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('emulated/main.js');
        } catch {
          return false;
        }
      });
      assert.equal(groups.length, 1, h.host);
      const addrs = execFileSync('ip', ['-n', ns, '-o', '-4', 'addr', 'show', 'br0'], { encoding: 'utf8' });
      assert.equal(addrs.trim().split('\n').length, 1 + h.vms, `${h.host}: its address and its VMs'`);
    }

    const status = await kb(['status', '-c', cfg, '--json', '-q'], { env });
    assert.equal(status.code, 0, status.stderr);
    assert.deepEqual(JSON.parse(status.stdout).vmCounts, {
      up: vms,
      down: 0,
      failed: 0,
      'not-launched': 0,
      unknown: 0,
    });

    const images = await kb(['images', 'build', '-q', '--json'], { env, timeoutMs: 300_000 });
    assert.equal(images.code, 0, images.stderr);
    const add = await kb(['env', 'add', join(root, 'recipes/envs/tiny.yaml'), '--json', '-q'], { env });
    assert.equal(add.code, 0, add.stderr);
    const dep = await kb(['deploy', '-c', cfg, '-e', 'tiny', '--json', '-q'], { env, timeoutMs: 600_000 });
    assert.equal(dep.code, 0, dep.stderr);
    const deployed = JSON.parse(dep.stdout);
    assert.equal(deployed.nodes.filter((n: { outcome: string }) => n.outcome === 'ok').length, vms);

    // power goes through each host's group control port (2222), not the host's sshd
    const some = join(home, 'some.txt');
    await writeFile(some, ['vm-nancy-1', 'vm-nancy-100', 'vm-nancy-240'].join('\n'));
    const reboot = await kb(['reboot', '-c', cfg, '-f', some, '--level', 'hard', '--json', '-q'], { env });
    assert.equal(reboot.code, 0, reboot.stderr);
    assert.deepEqual(
      JSON.parse(reboot.stdout).map((r: { node: string; ok: boolean }) => `${r.node} ${r.ok}`),
      ['vm-nancy-1 true', 'vm-nancy-100 true', 'vm-nancy-240 true'],
    );
    const id = await kb(['exec', '-c', cfg, '--json', '-q', '--', 'cat /etc/kb-env'], { env });
    assert.equal(id.code, 0, id.stderr);
    const answers = JSON.parse(id.stdout).results.map((r: { stdout: string }) => r.stdout.trim());
    assert.deepEqual([...new Set(answers)], ['tiny 1']);

    // a VM host dies (everything in its machine stops): status says so, for it and its VMs
    const dead = result.plan.sites[0].hosts[1];
    const deadNs = `kb-${twinName}-${dead.host.split('.')[0]}-nancy`;
    for (const pid of execFileSync('ip', ['netns', 'pids', deadNs], { encoding: 'utf8' })
      .trim()
      .split('\n')) {
      process.kill(Number(pid), 'SIGKILL');
    }
    const after = await kb(['status', '-c', cfg, '--json', '-q'], { env, timeoutMs: 120_000 });
    const st = JSON.parse(after.stdout);
    assert.deepEqual(
      st.machines
        .filter((m: { state: string }) => m.state !== 'up')
        .map((m: { name: string; state: string }) => `${m.name} ${m.state}`),
      [`${dead.host} down`],
    );
    assert.equal(st.vmCounts.up, vms - dead.vms);
    assert.ok(
      st.vms
        .filter((v: { host: string; state: string }) => v.host === dead.host)
        .every((v: { state: string }) => v.state !== 'up'),
    );
    assert.notEqual(after.code, 0, 'status exits non-zero when something is down');

    const down = await kb(['teardown', '-c', cfg, '--json', '-q'], { env, timeoutMs: 120_000 });
    assert.equal(down.code, 0, down.stderr);
    assert.equal(JSON.parse(down.stdout).releasedJobs, 1);
    const end = Date.now() + 20_000;
    while (
      leftovers(twinName, prefix).some((l) => l.startsWith(`kb-${twinName}-grappe`)) &&
      Date.now() < end
    ) {
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.deepEqual(
      leftovers(twinName, prefix).filter((l) => l.startsWith(`kb-${twinName}-grappe`)),
      [],
    );

    twin!.child.kill('SIGTERM');
    assert.equal(await new Promise((r) => twin!.child.once('exit', r)), 0);
    assert.deepEqual(leftovers(twinName, prefix), []);
    // the groups ran from the package put on each host (/var/lib/kabootstrap/<testbed>/): gone too
    assert.deepEqual(leftovers(testbed, prefix), []);
  });
});

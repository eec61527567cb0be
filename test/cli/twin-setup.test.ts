// setup with provider g5k against a site's twin run as its own process (root): the jobs give
// machines, which are reinstalled with the testbed's key (one KO twice, then OK on its second
// redeploy), moved into the KaVLAN, then prepared
// over SSH (the VM hosts' bridge on the NIC facing the VMs, tmpfs, packages, KVM checked) and given
// their service node (installed over SSH, answering with the testbed's secret); stopped there
// (--until services), setup resumes and launches 8 QEMU VMs on the hosts over SSH, which
// network-boot from the service node inside the VLAN; `deploy -e tiny` makes all 8 OK; teardown
// releases the jobs and the twin removes the machines, VMs included; nothing is left. Then the same
// scenario with provider local (its default, `local.via: twin`): setup starts the twin itself, and
// the same code runs from the jobs on.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isAlive } from '../../src/lib/pid.js';
import { kb, type kbServe, root } from '../helpers/cli.js';
import { leftovers } from '../helpers/leftovers.js';
import { needTools } from '../helpers/netns.js';
import { injectFault, serveTwin } from '../helpers/twin.js';

const skip = needTools('sshd', 'ssh-keygen', 'ip', 'qemu-system-x86_64');
const twinName = 'kbt-tws';
const testbed = 'kbt-tws-g';
const prefix = '10.235.';
const flaky = `grappe-2.nancy.${twinName}.test`;

const twinConfig = `name: ${twinName}
provider: local
domain: ${twinName}.test
network: { prefix: 10.235.0.0/16 }
sites:
  - name: nancy
    clusters:
      - name: grappe
        hosts: 5
        hardware: { cores: 2, threads: 2, ramMB: 4096, diskGB: 20 }
`;

const inNs = (ns: string, ...cmd: string[]) =>
  execFileSync('ip', ['netns', 'exec', ns, ...cmd], { encoding: 'utf8' });

describe('setup, deploy and teardown on g5k against a twin: reinstall, KaVLAN, hosts, service nodes and VMs over SSH', {
  skip,
}, () => {
  let home: string;
  let env: NodeJS.ProcessEnv;
  let twin: Awaited<ReturnType<typeof kbServe>> | null = null;
  let cfg: string;

  before(async () => {
    let url: string;
    ({ home, env, twin, url } = await serveTwin(twinName, twinConfig));
    // the twin's deployments fail one machine twice: setup's redeploys bring it in
    await injectFault(url, { failDeployNodes: { nodes: [flaky], times: 2 } });
    cfg = join(home, `${testbed}.yaml`);
    // one service node and four VM hosts of two VMs each
    await writeFile(
      cfg,
      `name: ${testbed}
provider: g5k
api: { url: '${url}', credentials: none, retries: 1 }
vlan: { type: kavlan }
vms: { count: 8, perHost: 2, runtime: qemu, flavour: { vcpus: 1, memoryMB: 256, diskMB: 1024 } }
sites: [{ name: nancy, serviceNodes: 1, clusters: [{ name: grappe, hosts: 5 }] }]
`,
    );
  });

  after(async () => {
    if (twin && twin.child.exitCode === null) {
      twin.child.kill('SIGTERM');
      await new Promise((r) => twin!.child.once('exit', r));
    }
  });

  it('goes from the jobs to 8 VMs deployed OK over the API and SSH only, and leaves nothing', async () => {
    await scenario({
      cfg,
      env,
      twinName,
      testbed,
      prefix,
      flaky: true,
      stopTwin: async () => {
        twin!.child.kill('SIGTERM');
        assert.equal(await new Promise((r) => twin!.child.once('exit', r)), 0);
      },
    });
  });
});

// The same with provider local: setup starts the twin of the config's own sites itself (a detached
// process, recorded in the testbed's directory), and every later command talks to it; teardown
// releases the job, then stops the twin, which removes what it still holds.
describe('setup, deploy and teardown with provider local through its twin: the same pipeline', {
  skip,
}, () => {
  const name = 'kbt-twl';
  const localPrefix = '10.232.';
  let home: string;
  let env: NodeJS.ProcessEnv;
  let cfg: string;

  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'kb-twl-'));
    env = { KABOOTSTRAP_HOME: join(home, '.kabootstrap') };
    cfg = join(home, `${name}.yaml`);
    await writeFile(
      cfg,
      `name: ${name}
provider: local
domain: ${name}.test
network: { prefix: 10.232.0.0/16 }
vlan: { type: kavlan }
vms: { count: 8, perHost: 2, runtime: qemu, flavour: { vcpus: 1, memoryMB: 256, diskMB: 1024 } }
sites:
  - name: nancy
    serviceNodes: 1
    clusters:
      - name: grappe
        hosts: 5
        hardware: { cores: 2, threads: 2, ramMB: 4096, diskGB: 20 }
`,
    );
  });

  after(async () => {
    // a failed run: its teardown stops the twin and sweeps what is left
    await kb(['teardown', '-c', cfg, '-q'], { env, timeoutMs: 120_000 });
  });

  it('goes from the jobs to 8 VMs deployed OK through the twin it started, and leaves nothing', async () => {
    const twinRecord = join(env.KABOOTSTRAP_HOME!, name, 'twin-process.json');
    let twinPid = 0;
    await scenario({
      cfg,
      env,
      twinName: name,
      testbed: name,
      prefix: localPrefix,
      flaky: false,
      stopTwin: async () => {
        // teardown stopped it: the process is gone, its record with the testbed's directory
        assert.ok(twinPid > 0);
        // (a zombie until this machine's init reaps it: gone all the same)
        assert.equal(isAlive(twinPid), false, 'the twin process is gone');
        assert.equal(existsSync(twinRecord), false);
      },
      afterSetup: () => {
        twinPid = (JSON.parse(readFileSync(twinRecord, 'utf8')) as { pid: number }).pid;
        assert.match(readFileSync(`/proc/${twinPid}/cmdline`, 'utf8'), /testbed\0api\0-c\0/);
      },
    });
  });
});

/** One testbed and its twin, as the scenario sees them. */
interface Scenario {
  cfg: string;
  env: NodeJS.ProcessEnv;
  /** The twin's config name: its machines' namespaces are kb-<twinName>-<host>-<site>. */
  twinName: string;
  testbed: string;
  prefix: string;
  /** The machine whose deployments the twin fails twice, if any. */
  flaky: boolean;
  /** Stops the twin if the teardown did not, and checks it is gone. */
  stopTwin(): Promise<void>;
  /** Checks made once the first setup returned. */
  afterSetup?(): void;
}

/**
 * setup --until services, setup resumed to 8 QEMU VMs, status, deploy -e tiny, exec, teardown:
 * the same for provider g5k against a twin and provider local through its own twin.
 */
async function scenario(t: Scenario): Promise<void> {
  const setup = await kb(['setup', '-c', t.cfg, '--until', 'services', '--json', '-q'], {
    env: t.env,
    timeoutMs: 300_000,
  });
  assert.equal(setup.code, 0, setup.stderr);
  t.afterSetup?.();
  const result = JSON.parse(setup.stdout);
  assert.equal(result.phase, 'services');
  assert.ok(result.machines.every((m: { state: string }) => m.state === 'ok'));
  assert.deepEqual(
    result.machines.map((m: { node: string; deployments: number }) => [m.node, m.deployments]),
    [1, 2, 3, 4, 5].map((n) => [`grappe-${n}.nancy.${t.twinName}.test`, n === 2 && t.flaky ? 3 : 1]),
  );
  assert.equal(result.vlans.length, 1);

  // each VM host: its NIC in the bridge, the bridge holding its address, a tmpfs for the disks
  assert.equal(result.preparedHosts.length, 4);
  for (const h of result.preparedHosts) {
    assert.equal(h.ok, true, JSON.stringify(h));
    assert.equal(h.nic, 'eth0');
    assert.equal(h.accel, existsKvm() ? 'kvm' : 'tcg');
    assert.ok(h.address.startsWith(t.prefix), h.address);
    const ns = `kb-${t.twinName}-${h.host.split('.')[0]}-nancy`;
    assert.match(inNs(ns, 'ip', '-o', 'link', 'show', 'eth0'), /master br0/);
    assert.match(inNs(ns, 'ip', '-o', '-4', 'addr', 'show', 'br0'), new RegExp(`inet ${h.address}/`));
  }

  // the service node answers its control endpoint, with the testbed's secret only
  assert.equal(result.services.length, 1);
  const [service] = result.services;
  assert.equal(service.ok, true, JSON.stringify(service));
  assert.ok(service.url.includes(t.prefix), service.url);
  const anonymous = await fetch(`${service.url}/events?mac=52:54:00:00:00:01`);
  assert.equal(anonymous.status, 401);

  // setup goes on: no host contacted again, the running service node kept, the VMs launched
  const again = await kb(['setup', '-c', t.cfg, '--json', '-q'], { env: t.env, timeoutMs: 900_000 });
  assert.equal(again.code, 0, again.stderr);
  const resumed = JSON.parse(again.stdout);
  assert.equal(resumed.resumed, true);
  assert.equal(resumed.phase, 'ready');
  assert.ok(resumed.preparedHosts.every((h: { resumed: boolean }) => h.resumed));
  assert.deepEqual(
    resumed.services.map((s: { url: string; ok: boolean }) => [s.url, s.ok]),
    [[service.url, true]],
  );
  assert.deepEqual(
    resumed.vms.map((v: { state: string }) => v.state),
    Array(8).fill('ssh'),
    JSON.stringify(resumed.vms),
  );
  // each VM runs on its planned host (QEMU in that machine's namespace)
  for (const h of resumed.plan.sites[0].hosts) {
    const ns = `kb-${t.twinName}-${h.host.split('.')[0]}-nancy`;
    const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).trim().split('\n');
    const qemus = pids.filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('qemu-system');
      } catch {
        return false;
      }
    });
    assert.equal(qemus.length, h.vms, h.host);
  }

  // status probes it all live: the five machines, the service node and the 8 VMs
  const status = await kb(['status', '-c', t.cfg, '--json', '-q'], { env: t.env });
  assert.equal(status.code, 0, status.stderr);
  const st = JSON.parse(status.stdout);
  assert.deepEqual(
    st.machines.map((m: { state: string }) => m.state),
    Array(5).fill('up'),
  );
  assert.deepEqual(st.vmCounts, { up: 8, down: 0, failed: 0, 'not-launched': 0, unknown: 0 });

  // the deployment engine over the same path: 8 OK, each VM answering as the tiny system
  const images = await kb(['images', 'build', '-q', '--json'], { env: t.env, timeoutMs: 300_000 });
  assert.equal(images.code, 0, images.stderr);
  const add = await kb(['env', 'add', join(root, 'recipes/envs/tiny.yaml'), '--json', '-q'], { env: t.env });
  assert.equal(add.code, 0, add.stderr);
  const dep = await kb(['deploy', '-c', t.cfg, '-e', 'tiny', '--json', '-q'], {
    env: t.env,
    timeoutMs: 900_000,
  });
  assert.equal(dep.code, 0, dep.stderr);
  const deployed = JSON.parse(dep.stdout);
  assert.deepEqual(
    deployed.nodes.map((n: { node: string; outcome: string }) => `${n.node} ${n.outcome}`),
    resumed.vms.map((v: { name: string }) => `${v.name} ok`),
  );
  const id = await kb(['exec', '-c', t.cfg, '--json', '-q', '--', 'cat /etc/kb-env'], { env: t.env });
  assert.equal(id.code, 0, id.stderr);
  for (const r of JSON.parse(id.stdout).results) assert.equal(r.stdout.trim(), 'tiny 1', r.node);

  const down = await kb(['teardown', '-c', t.cfg, '--json', '-q'], { env: t.env, timeoutMs: 120_000 });
  assert.equal(down.code, 0, down.stderr);
  assert.equal(JSON.parse(down.stdout).releasedJobs, 1);
  // the twin removes a released job's machines (and their service daemon) at once
  const end = Date.now() + 20_000;
  while (leftovers(t.twinName, t.prefix).some((l) => l.startsWith('kb-')) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 200));
  }
  const machinesLeft = leftovers(t.twinName, t.prefix).filter((l) => l.startsWith(`kb-${t.twinName}-grappe`));
  assert.deepEqual(machinesLeft, []);

  await t.stopTwin();
  assert.deepEqual(leftovers(t.twinName, t.prefix), []);
  assert.deepEqual(leftovers(t.testbed, t.prefix), []);
}

function existsKvm(): boolean {
  try {
    execFileSync('sh', ['-c', '[ -c /dev/kvm ] && exec 3<>/dev/kvm'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

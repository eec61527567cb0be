// setup's SSH-only phases (provider g5k) against real sshd (root): three network namespaces play
// freshly installed hosts, reached from this machine over a veth each as a Grid'5000 node is over
// its primary NIC. Host preparation moves each host's address into a bridge without losing the
// session, mounts a tmpfs and raises neighbour thresholds inside the host's own mount namespace
// (sshd runs in one, with the host's own home as root's: the disk and neighbour paths point
// there, so nothing reaches this machine), checks the packages without apt-get (they are
// installed here), and changes nothing the second time. A service node is installed over SSH
// from the package bundle and answers its control endpoint with the testbed's secret only.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../../src/lib/config/load.js';
import { silentLogger } from '../../../src/lib/log.js';
import { neighbourThresholds } from '../../../src/lib/netns/neigh.js';
import { ensureSshFiles, startSshd } from '../../../src/lib/netns/sshd.js';
import type { Plan } from '../../../src/lib/planner/plan.js';
import { silentProgress } from '../../../src/lib/progress.js';
import { execOnce } from '../../../src/lib/ssh/pool.js';
import { readControlSecret } from '../../../src/lib/state/control-secret.js';
import { serviceNodesOf } from '../../../src/lib/state/service-nodes.js';
import { newState, StateStore, type TestbedState } from '../../../src/lib/state/store.js';
import { probeService } from '../../../src/lib/testbed/service-nodes.js';
import { installServiceNodesOverSsh } from '../../../src/lib/testbed/setup/install-service-nodes.js';
import { type HostPrepOptions, prepareHostsOverSsh } from '../../../src/lib/testbed/setup/prepare-hosts.js';
import { root } from '../../helpers/cli.js';
import { needTools } from '../../helpers/netns.js';

const skip = needTools('sshd', 'setsid', 'findmnt', 'tar');
const name = 'kbsp-phases';
const tag = `${process.pid % 100000}`;
/** Each machine's home as its sshd shows it to root: the host's own directory. */
const home = userInfo().homedir;

interface Machine {
  fqdn: string;
  ns: string;
  /** Its end of the veth on this machine. */
  link: string;
  ip: string;
}

const machines: Machine[] = ['h-1', 'h-2', 'sn-1'].map((short, i) => ({
  fqdn: `${short}.s1.kb.test`,
  ns: `kbsp-${tag}-${i + 1}`,
  link: `kbsp${i + 1}p${tag}`,
  ip: `10.238.${i + 1}.2`,
}));
const [h1, h2, sn] = machines;

const plan = {
  testbed: name,
  provider: 'g5k',
  domain: 'kb.test',
  sites: [
    {
      name: 's1',
      network: '10.238.100.0/24',
      netmask: '255.255.255.0',
      gateway: '10.238.100.1',
      serviceNodes: [
        { host: sn.fqdn, cluster: 'c', ip: '10.238.100.2', roles: ['dhcp', 'tftp', 'http', 'dns'] },
      ],
      hosts: [
        { host: h1.fqdn, vms: 2 },
        { host: h2.fqdn, vms: 1 },
      ],
      vms: [1, 2, 3].map((n) => ({
        name: `vm-${n}`,
        fqdn: `vm-${n}.s1.kb.test`,
        site: 's1',
        host: n < 3 ? h1.fqdn : h2.fqdn,
        ip: `10.238.100.${10 + n}`,
        mac: `02:00:00:00:00:0${n}`,
        serviceNode: sn.fqdn,
      })),
    },
  ],
  totals: { sites: 1, hosts: 2, serviceNodes: 1, vms: 3, subnets22: 0 },
} as unknown as Plan;

function ip(...args: string[]) {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

describe('setup phases over SSH only, on namespace hosts', { skip, timeout: 300_000 }, () => {
  let dir: string;
  let store: StateStore;
  let config: TestbedState['config'];
  let keyFile: string;
  const addresses = new Map(machines.map((m) => [m.fqdn, m.ip]));
  const homes = new Map<string, string>();
  const sh = async (m: Machine, command: string) => {
    const r = await execOnce(
      { host: m.ip, privateKey: await readFile(keyFile), timeoutMs: 10_000 },
      command,
      20_000,
    );
    assert.equal(r.code, 0, `${command} on ${m.fqdn}: ${r.stderr || r.error}`);
    return r.stdout.trim();
  };
  const hostOpts = (): HostPrepOptions => ({
    addresses,
    keyFile,
    diskRoot: `${home}/disk`,
    neighDir: `${home}/neigh`,
    allowInstall: false,
    window: 2,
  });
  const ctx = (state: TestbedState) => ({
    store,
    state,
    plan,
    progress: silentProgress,
    logger: silentLogger,
  });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kbsp-'));
    process.env.KABOOTSTRAP_HOME = join(dir, 'state');
    config = (await loadConfig(join(root, 'recipes/local-small.yaml'))).config;
    config.name = name;
    store = new StateStore(name);
    const files = await ensureSshFiles(store.layout);
    keyFile = files.clientKey;
    for (const [i, m] of machines.entries()) {
      ip('netns', 'add', m.ns);
      ip('link', 'add', m.link, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', m.ns);
      ip('addr', 'add', `10.238.${i + 1}.1/24`, 'dev', m.link);
      ip('link', 'set', m.link, 'up');
      ip('-n', m.ns, 'link', 'set', 'lo', 'up');
      ip('-n', m.ns, 'addr', 'add', `${m.ip}/24`, 'dev', 'eth0');
      ip('-n', m.ns, 'link', 'set', 'eth0', 'up');
      // a route to move with the address on one host; the other has only its subnet's
      if (m === h1) ip('-n', m.ns, 'route', 'add', 'default', 'via', `10.238.${i + 1}.1`);
      await startSshd(files, m.ns, m.ip);
      const h = files.homeDir(m.ns);
      homes.set(m.fqdn, h);
      // the host's neighbour thresholds, as a fresh kernel has them
      await mkdir(join(h, 'neigh'), { recursive: true });
      await writeFile(join(h, 'neigh', 'gc_thresh2'), '512\n');
      await writeFile(join(h, 'neigh', 'gc_thresh3'), '1024\n');
    }
  });

  after(async () => {
    for (const m of machines) {
      const pids = spawnSync('ip', ['netns', 'pids', m.ns], { encoding: 'utf8' })
        .stdout.split('\n')
        .filter(Boolean);
      for (const pid of pids) spawnSync('kill', ['-KILL', pid]);
      spawnSync('ip', ['netns', 'del', m.ns]);
      spawnSync('ip', ['link', 'del', m.link]);
    }
    // the namespaces' mounts went with their last process
    await rm(dir, { recursive: true, force: true });
    const left = [
      ...execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
        .split('\n')
        .filter((l) => l.startsWith(`kbsp-${tag}-`)),
      ...execFileSync('ip', ['-4', 'route', 'show', 'table', 'all'], { encoding: 'utf8' })
        .split('\n')
        .filter((l) => l.includes('10.238.')),
      ...execFileSync('ps', ['-eo', 'stat=,args='], { encoding: 'utf8' })
        .split('\n')
        .filter((l) => l.includes(dir) && !l.trim().startsWith('Z')),
    ];
    assert.deepEqual(left, [], 'nothing left on this machine');
  });

  it('prepares two hosts: bridge with the address, tmpfs, packages, neighbour thresholds; a second run changes nothing', async () => {
    const state = newState(config, 'test');
    const first = await prepareHostsOverSsh(ctx(state), hostOpts());
    for (const r of first) assert.ok(r.ok, `${r.host}: ${r.failedStep} ${r.detail}`);
    const want = neighbourThresholds(3 + 2 + 1);
    for (const [m, vms] of [
      [h1, 2],
      [h2, 1],
    ] as const) {
      const r = first.find((x) => x.host === m.fqdn)!;
      assert.equal(r.nic, 'eth0');
      assert.ok(r.accel === 'kvm' || r.accel === 'tcg');
      assert.ok(
        r.changed.some((c) => c.startsWith('eth0 in bridge br0')),
        r.changed.join('; '),
      );
      assert.match(await sh(m, 'ip -o -4 addr show dev br0'), new RegExp(`inet ${m.ip}/24`));
      assert.equal(await sh(m, 'ip -o -4 addr show dev eth0'), '', 'the address left the NIC');
      assert.match(await sh(m, 'ip -o link show master br0'), /eth0/);
      assert.match(await sh(m, 'ip route show default'), m === h1 ? /via 10\.238\.1\.1 dev br0/ : /^$/);
      // the tmpfs is the host's: mounted in its mount namespace, not on this machine
      const disk = `${home}/disk/${name}`;
      assert.equal(await sh(m, `findmnt -n -o FSTYPE --mountpoint ${disk}`), 'tmpfs');
      assert.equal(
        await sh(m, `findmnt -n -b -o SIZE --mountpoint ${disk}`),
        String(vms * config.vms.flavour.diskMB * 2 ** 20),
      );
      const here = spawnSync('findmnt', ['-n', '--mountpoint', join(homes.get(m.fqdn)!, 'disk', name)]);
      assert.notEqual(here.status, 0, 'no tmpfs mounted on this machine');
      assert.equal(await sh(m, `cat ${home}/neigh/gc_thresh3`), String(want.gc_thresh3));
      assert.equal(await sh(m, `cat ${home}/neigh/gc_thresh2`), String(want.gc_thresh2));
    }
    assert.deepEqual(
      state.resources
        .filter((r) => r.kind === 'vm-host')
        .map((r) => `${r.data.host} ${r.status}`)
        .sort(),
      [`${h1.fqdn} created`, `${h2.fqdn} created`],
    );

    // A second run from a fresh state: every step checks, none changes anything.
    const again = await prepareHostsOverSsh(ctx(newState(config, 'test')), hostOpts());
    for (const r of again) {
      assert.ok(r.ok, `${r.host}: ${r.failedStep} ${r.detail}`);
      assert.deepEqual(r.changed, [], `${r.host} changed nothing`);
      assert.equal(r.nic, 'eth0');
    }
    // Resumed from the first run's state: the hosts are not contacted.
    const resumed = await prepareHostsOverSsh(ctx(state), {
      ...hostOpts(),
      keyFile: join(dir, 'no-such-key'),
    });
    assert.ok(resumed.every((r) => r.ok && r.resumed));
  });

  it('reports the failing step of a host and its stderr', async () => {
    const state = newState(config, 'test');
    // the machine's own neighbour thresholds: a namespace host does not see them
    const opts = { ...hostOpts(), neighDir: undefined, bridge: 'br9', nic: 'nope0' };
    const [r] = (await prepareHostsOverSsh(ctx(state), opts)).filter((x) => x.host === h2.fqdn);
    assert.match(
      r.notes.join(),
      /no neighbour table thresholds under \/proc\/sys\/net\/ipv4\/neigh\/default/,
    );
    assert.equal(r.ok, false);
    assert.equal(r.failedStep, 'bridge');
    assert.match(r.detail ?? '', /nope0/);
    assert.equal(state.resources.find((x) => x.key === `vm-host/${h2.fqdn}`)?.status, 'failed');
    // nothing was touched: the bridge made earlier still holds the address
    assert.match(await sh(h2, 'ip -o -4 addr show dev br0'), new RegExp(`inet ${h2.ip}/24`));
  });

  it('installs a service node over SSH that answers with the secret and refuses without it', async () => {
    const state = newState(config, 'test');
    const probes = await installServiceNodesOverSsh(ctx(state), {
      addresses,
      keyFile,
      remoteRoot: `${home}/kb`,
    });
    const url = `http://${sn.ip}:8067`;
    assert.deepEqual(
      probes.map((p) => [p.name, p.url, p.ok]),
      [[sn.fqdn, url, true]],
    );
    const secret = await readControlSecret(store.layout.controlSecret);
    assert.ok(secret);
    const probe = await probeService(sn.fqdn, url, secret);
    assert.equal(probe.detail, 'roles dhcp,tftp,http,dns,ra,control');
    const wrong = await probeService(sn.fqdn, url, 'not-the-secret');
    assert.equal(wrong.ok, false);
    assert.match(wrong.detail, /wrong control secret/);
    // without a token: health says it is up and nothing more; the control routes refuse
    assert.deepEqual(await (await fetch(`${url}/health`)).json(), { status: 'ok' });
    assert.equal((await fetch(`${url}/events`)).status, 401);
    // the config on the node holds the secret: its owner's only
    const cfg = `${home}/kb/${name}/services/sn-1-s1/service.json`;
    assert.equal(await sh(sn, `stat -c %a ${cfg}`), '600');
    assert.equal(JSON.parse(await sh(sn, `cat ${cfg}`)).interface, 'eth0');
    assert.match(await sh(sn, 'ip -o -4 addr show dev eth0'), /inet 10\.238\.100\.2\/24/);
    const [rec] = serviceNodesOf(state);
    assert.equal(rec.url, url);
    assert.equal(String(rec.pid), await sh(sn, `cat ${home}/kb/${name}/services/sn-1-s1/service.pid`));

    // Resumed: the running daemon answers, so it is kept (same pid), nothing is copied again.
    const again = await installServiceNodesOverSsh(ctx(state), {
      addresses,
      keyFile,
      remoteRoot: `${home}/kb`,
    });
    assert.ok(again[0].ok);
    assert.equal(serviceNodesOf(state)[0].pid, rec.pid);
  });
});

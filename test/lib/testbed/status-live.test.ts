// `status` live against a testbed state built here (no namespaces): its machines and VMs are SSH
// servers on loopback addresses (emulated hosts, emulated VM agents), some answering, some not,
// one that accepts TCP but never completes a handshake; a service node's real control endpoint
// with the testbed's secret, and one that is gone. Each ends in the state the truth says, with
// the recorded state alone under --no-probe, and the whole probe bounded by its deadline.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseConfigText } from '../../../src/lib/config/load.js';
import { startSshServer } from '../../../src/lib/emulated/agent/server.js';
import { startHostServer } from '../../../src/lib/emulated/host.js';
import { generateHostKey, parseAuthorizedKey, type SshServerHandle } from '../../../src/lib/emulated/ssh.js';
import { silentLogger } from '../../../src/lib/log.js';
import { buildPlan, type Plan } from '../../../src/lib/planner/plan.js';
import { silentProgress } from '../../../src/lib/progress.js';
import { localLayout } from '../../../src/lib/provider/local-layout.js';
import { startControl } from '../../../src/lib/services/control.js';
import type { RunningRole } from '../../../src/lib/services/role.js';
import { writePrivateFile } from '../../../src/lib/state/control-secret.js';
import { recordServiceNodeStarted } from '../../../src/lib/state/service-nodes.js';
import { newState, StateStore } from '../../../src/lib/state/store.js';
import { writeVmRecord } from '../../../src/lib/state/vm-record.js';
import { testbedStatus } from '../../../src/lib/testbed/status.js';
import { renderStatus } from '../../../src/lib/testbed/status-view.js';
import { fakeAgentVm } from '../../helpers/agent-vm.js';
import { testKeyPair } from '../../helpers/keys.js';
import { localPlannerSites } from '../../helpers/local-plan.js';
import { loopbackService, roleContext } from '../../helpers/service-config.js';

const root = process.getuid?.() === 0;
const keys = testKeyPair();
const authorized = parseAuthorizedKey(keys.public);
const hostKey = generateHostKey();
const SECRET = randomBytes(32).toString('hex');
const ctx = { logger: silentLogger, progress: silentProgress };

const config = parseConfigText(
  `name: status-live
provider: local
local: { via: direct }
network: { prefix: 127.83.0.0/16 }
sites:
  - name: nancy
    clusters: [{ name: grappe, hosts: 3, hardware: { cores: 2, ramMB: 4096, diskGB: 20 } }]
  - name: rennes
    clusters: [{ name: paravance, hosts: 3, hardware: { cores: 2, ramMB: 4096, diskGB: 20 } }]
vms: { count: 8, perHost: 2, flavour: { vcpus: 1, memoryMB: 256, diskMB: 1024 } }
`,
  'status-live.yaml',
);

// Port 22 on loopback addresses, as the product reaches every node: needs root.
describe('status, live, against loopback machines and VMs', {
  skip: !root && 'needs root (port 22)',
  timeout: 60_000,
}, () => {
  let home: string;
  let plan: Plan;
  const servers: SshServerHandle[] = [];
  let control: RunningRole;
  let silent: Server | undefined;
  const held: Socket[] = [];

  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'kb-status-'));
    process.env.KABOOTSTRAP_HOME = home;
    plan = buildPlan(config, localPlannerSites(config, 'status-live.yaml'), 'status-live.yaml');
    const state = { ...newState(config, 'status-live.yaml'), phase: 'ready' as const, plan };
    const store = new StateStore(config.name);

    // every machine answers but rennes' service node machine
    const ips = new Map(
      localLayout(config, 'status-live.yaml').sites.flatMap((s) =>
        s.hosts.map((h) => [h.fqdn, h.ip] as const),
      ),
    );
    const [nancy, rennes] = plan.sites;
    for (const m of [
      ...nancy.hosts.map((h) => h.host),
      nancy.serviceNodes[0].host,
      ...rennes.hosts.map((h) => h.host),
    ])
      servers.push(
        await startHostServer(
          { name: m, ip: ips.get(m)! },
          [],
          { status: () => [], power: () => {} },
          { hostKey, authorized },
        ),
      );

    // VMs 1-4 answer (2 in a deployed system), 5 is gone, 6's address answers as another node,
    // 7 failed at setup and stays silent, 8 was never launched
    const vms = plan.sites.flatMap((s) => s.vms);
    const agent = (i: number, fields = {}) =>
      startSshServer(fakeAgentVm({ name: vms[i].name, ip: vms[i].ip, mac: vms[i].mac, ...fields }), {
        hostKey,
        authorized,
      });
    servers.push(await agent(0), await agent(2), await agent(3));
    servers.push(await agent(1, { env: 'deployed', disk: { bytes: 1, sha256: null, label: 'tiny 1' } }));
    servers.push(await agent(5, { mac: '02:00:00:00:00:99', name: 'stranger' }));
    await writeVmRecord(store.layout.vmsFile, [
      ...vms.slice(0, 6).map((v) => ({ name: v.name, outcome: 'up' as const, reason: null })),
      { name: vms[6].name, outcome: 'failed', reason: 'injected fault: fails to boot (never sends DHCP)' },
    ]);

    // nancy's service node answers with the secret; rennes' has gone
    await mkdir(store.dir, { recursive: true });
    await writePrivateFile(store.layout.controlSecret, SECRET);
    control = await startControl(
      roleContext(
        loopbackService({ name: nancy.serviceNodes[0].host, roles: ['http'], control: { secret: SECRET } }),
      ),
      () => ['http', 'control'],
    );
    recordServiceNodeStarted(state, 'ns-nancy', {
      pid: process.pid,
      name: nancy.serviceNodes[0].host,
      site: 'nancy',
      url: `http://127.0.0.1:${control.port}`,
    });
    const gone = createServer();
    await new Promise<void>((r) => gone.listen(0, '127.0.0.1', r));
    const gonePort = (gone.address() as { port: number }).port;
    await new Promise((r) => gone.close(r));
    recordServiceNodeStarted(state, 'ns-rennes', {
      pid: process.pid,
      name: rennes.serviceNodes[0].host,
      site: 'rennes',
      url: `http://127.0.0.1:${gonePort}`,
    });

    await mkdir(join(store.dir, 'ssh'), { recursive: true });
    await writeFile(store.layout.ssh.clientKey, keys.private, { mode: 0o600 });
    await store.write(state);
  });

  after(async () => {
    await Promise.all(servers.map((s) => s.close()));
    await control?.close();
    for (const s of held) s.destroy();
    await new Promise((r) => (silent ? silent.close(r) : r(undefined)));
    delete process.env.KABOOTSTRAP_HOME;
    await rm(home, { recursive: true, force: true });
  });

  it('tells each machine, service node and VM as it is now, and what is down', async () => {
    const r = await testbedStatus(config.name, { probe: true, timeoutMs: 20_000 }, ctx);
    assert.ok(r);
    assert.equal(r.probed, true);
    const [nancy, rennes] = plan.sites;
    const machine = new Map(r.machines.map((m) => [m.name, m]));
    assert.equal(machine.get(rennes.serviceNodes[0].host)?.state, 'down');
    assert.match(machine.get(rennes.serviceNodes[0].host)!.detail, /unreachable/);
    assert.equal(machine.get(nancy.hosts[0].host)?.state, 'up');
    assert.equal(machine.get(nancy.hosts[0].host)?.detail, `answers as ${nancy.hosts[0].host}`);
    assert.deepEqual(r.machineCounts, { up: 5, down: 1, unknown: 0, reserved: 0 });

    assert.deepEqual(
      r.services.map((s) => [s.site, s.state]),
      [
        ['nancy', 'up'],
        ['rennes', 'down'],
      ],
    );

    const vms = plan.sites.flatMap((s) => s.vms);
    assert.deepEqual(
      r.vms.map((v) => [v.name, v.state]),
      vms.map((v, i) => [v.name, ['up', 'up', 'up', 'up', 'down', 'down', 'failed', 'not-launched'][i]]),
    );
    assert.equal(r.vms[0].detail, 'deployment environment');
    assert.equal(r.vms[1].detail, 'runs tiny 1');
    assert.match(r.vms[4].detail, /^unreachable/);
    assert.equal(r.vms[5].detail, 'stranger answered at its address');
    assert.match(r.vms[6].detail, /^failed at setup: injected fault: fails to boot/);
    assert.deepEqual(r.vms[7], {
      name: vms[7].name,
      ip: vms[7].ip,
      mac: vms[7].mac,
      host: vms[7].host,
      site: vms[7].site,
      state: 'not-launched',
      detail: 'setup did not launch it',
    });
    assert.deepEqual(r.vmCounts, { up: 4, down: 2, failed: 1, 'not-launched': 1, unknown: 0 });
    assert.deepEqual(r.troubles, [
      '1 machine(s) do not answer SSH',
      '1 service node(s) do not answer on their control endpoint',
      '2 VM(s) up at setup do not answer SSH',
    ]);

    // text: counts, and only what is not up
    const text = renderStatus(r);
    assert.match(text, /Machines: 6 \(5 up, 1 down\)/);
    assert.match(text, /VMs: 8 \(4 up, 2 down, 1 failed, 1 not-launched\)/);
    for (const v of vms.slice(0, 4)) assert.doesNotMatch(text, new RegExp(`^${v.name} `, 'm'));
    for (const v of vms.slice(4)) assert.match(text, new RegExp(`^${v.name} `, 'm'));
  });

  it('--no-probe gives the recorded state without touching the network', async () => {
    const t0 = Date.now();
    const r = await testbedStatus(config.name, { probe: false, timeoutMs: 20_000 }, ctx);
    assert.ok(r);
    assert.ok(Date.now() - t0 < 2000);
    assert.equal(r.probed, false);
    assert.deepEqual(r.vmCounts, { up: 6, down: 0, failed: 1, 'not-launched': 1, unknown: 0 });
    assert.deepEqual(r.machineCounts, { up: 6, down: 0, unknown: 0, reserved: 0 });
    assert.ok(r.services.every((s) => s.state === 'up'));
    assert.deepEqual(r.troubles, []);
    assert.match(renderStatus(r), /as recorded \(not probed: --no-probe\)/);
  });

  it('stops at the deadline: a VM that never completes its handshake is unknown, not waited for', async () => {
    // VM 5 comes back as a machine that accepts TCP and then says nothing
    const vm = plan.sites.flatMap((s) => s.vms)[4];
    silent = createServer((s) => held.push(s));
    await new Promise<void>((r) => silent!.listen(22, vm.ip, r));
    const t0 = Date.now();
    const r = await testbedStatus(config.name, { probe: true, timeoutMs: 1500 }, ctx);
    const ms = Date.now() - t0;
    assert.ok(r);
    assert.ok(ms < 4000, `took ${ms} ms`);
    const v = r.vms.find((x) => x.name === vm.name)!;
    assert.equal(v.state, 'unknown');
    assert.equal(v.detail, 'not probed before the deadline');
    assert.equal(r.vmCounts.unknown, 1);
    assert.ok(
      r.troubles.includes('1 node(s) not probed before the deadline (--timeout)'),
      r.troubles.join('; '),
    );
  });
});

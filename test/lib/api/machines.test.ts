// The machines behind a twin follow the scheduler: up while their job runs, gone when it ends
// (deletion or walltime), moved with their VLAN, reinstalled by a deployment that is held until
// that is done; the status tells whether they really run. Fake hooks record what was asked.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { Inventory } from '../../../src/lib/api/inventory.js';
import { type MachineHooks, type MachineNode, MachineSync } from '../../../src/lib/api/machines.js';
import { Scheduler } from '../../../src/lib/api/scheduler.js';
import { startApiServer } from '../../../src/lib/api/server.js';
import { G5kClient } from '../../../src/lib/g5k/client.js';
import { silentLogger } from '../../../src/lib/log.js';
import { loadFixture, manualClock } from './fixtures.js';

class FakeMachines implements MachineHooks {
  readonly up = new Set<string>();
  readonly calls: string[] = [];
  readonly vlanOf = new Map<string, number | null>();
  readonly keys = new Map<string, string | undefined>();
  failReinstall = new Set<string>();
  dead = new Set<string>();
  async jobStarted(nodes: MachineNode[]) {
    this.calls.push(`start ${nodes.map((n) => n.uid).join(',')}`);
    for (const n of nodes) this.up.add(n.fqdn);
  }
  async jobEnded(nodes: MachineNode[]) {
    this.calls.push(`end ${nodes.map((n) => n.uid).join(',')}`);
    for (const n of nodes) this.up.delete(n.fqdn);
  }
  async reinstall(node: MachineNode, opts: { environment: string; key?: string }) {
    await new Promise((r) => setTimeout(r, 20));
    if (this.failReinstall.has(node.uid)) throw new Error('sshd did not start');
    this.calls.push(`reinstall ${node.uid} ${opts.environment}`);
    this.keys.set(node.uid, opts.key);
  }
  async moveToVlan(node: MachineNode, vlan: { id: number } | null) {
    this.calls.push(`vlan ${node.uid} ${vlan?.id ?? 'prod'}`);
    this.vlanOf.set(node.uid, vlan?.id ?? null);
  }
  async alive(node: MachineNode) {
    return this.up.has(node.fqdn) && !this.dead.has(node.uid);
  }
}

let inv: Inventory;
before(async () => {
  inv = await loadFixture();
});

// the fixture's grappe is a production cluster, as on Grid'5000
const job = (resources: string) => ({
  resources,
  command: 'sleep 1d',
  types: ['deploy'],
  queue: 'production',
});

describe('MachineSync', () => {
  it('brings machines up for a running job and removes them at deletion and at walltime', async () => {
    const clock = manualClock();
    const s = new Scheduler(inv, { launchDelay: 1 });
    const hooks = new FakeMachines();
    const sync = new MachineSync(s, hooks, clock.now);
    const a = s.submit('nancy', job("{cluster='grappe'}/nodes=2,walltime=0:10:00"), 'alice', clock.now());
    const b = s.submit('nancy', job("{cluster='grappe'}/nodes=1,walltime=0:01:00"), 'alice', clock.now());
    await sync.reconcile();
    assert.equal(hooks.up.size, 0, 'nothing up while launching');
    clock.add(1);
    s.advance(clock.now());
    await sync.reconcile();
    const nodesA = s.getJob('nancy', a.uid).assigned_nodes;
    const nodesB = s.getJob('nancy', b.uid).assigned_nodes;
    assert.deepEqual([...hooks.up].sort(), [...nodesA, ...nodesB].sort());
    await sync.reconcile();
    assert.equal(hooks.calls.filter((c) => c.startsWith('start')).length, 1, 'brought up once');
    clock.add(60);
    s.advance(clock.now());
    await sync.reconcile();
    assert.deepEqual([...hooks.up].sort(), [...nodesA].sort(), "the walltime removed b's machine");
    s.cancel('nancy', a.uid, clock.now());
    await sync.reconcile();
    assert.equal(hooks.up.size, 0);
  });

  it('moves a machine with its VLAN and back when the VLAN job ends', async () => {
    const clock = manualClock();
    const s = new Scheduler(inv, { launchDelay: 0 });
    const hooks = new FakeMachines();
    const sync = new MachineSync(s, hooks, clock.now);
    const nodes = s.submit('nancy', job('nodes=1,walltime=1:00:00'), 'alice', clock.now());
    const vlanJob = s.submit('nancy', job("{type='kavlan'}/vlan=1,walltime=1:00:00"), 'alice', clock.now());
    s.advance(clock.now());
    await sync.reconcile();
    const [n1] = s.getJob('nancy', nodes.uid).assigned_nodes;
    const vlan = Number(s.getJob('nancy', vlanJob.uid).resources_by_type.vlans![0]);
    const answer = s.setVlanNodes('nancy', vlan, [n1], 'alice', clock.now());
    assert.equal(answer[n1].status, 'success');
    await sync.reconcile();
    await sync.reconcile();
    const uid = n1.split('.')[0];
    assert.equal(hooks.vlanOf.get(uid), vlan);
    assert.equal(hooks.calls.filter((c) => c.startsWith('vlan')).length, 1, 'moved once');
    s.cancel('nancy', vlanJob.uid, clock.now());
    await sync.reconcile();
    assert.equal(hooks.vlanOf.get(uid), null, 'back in production once the VLAN is released');
    assert.ok(hooks.up.has(n1), 'the machine stays: its own job runs');
  });
});

describe('MachineSync after a failure', () => {
  it('retries a machine that failed to come up, but not at every request', async () => {
    const clock = manualClock();
    const s = new Scheduler(inv, { launchDelay: 0 });
    const hooks = new FakeMachines();
    let failures = 1;
    const start = hooks.jobStarted.bind(hooks);
    hooks.jobStarted = async (nodes) => {
      hooks.calls.push('try');
      if (failures-- > 0) throw new Error('no sshd');
      await start(nodes);
    };
    const sync = new MachineSync(s, hooks, clock.now);
    s.submit('nancy', job('nodes=1,walltime=1:00:00'), 'alice', clock.now());
    s.advance(clock.now());
    await assert.rejects(sync.reconcile(), /no sshd/);
    await sync.reconcile();
    assert.equal(hooks.calls.filter((c) => c === 'try').length, 1, 'not retried at once');
    clock.add(MachineSync.retryDelay);
    await sync.reconcile();
    assert.equal(hooks.up.size, 1, 'up at the retry');
  });
});

describe('a twin API (server with machine hooks)', () => {
  it('holds a deployment until its nodes are reinstalled, KO where that failed; status tells the truth', async () => {
    const hooks = new FakeMachines();
    const server = await startApiServer({
      inventory: inv,
      launchDelaySeconds: 0,
      deployDelaySeconds: 0,
      machines: hooks,
      machinesTickMs: 50,
    });
    try {
      const client = new G5kClient({ baseUrl: server.url, credentials: null, logger: silentLogger });
      const j = await client.submitJob('nancy', {
        ...job("{cluster='grappe'}/nodes=2+{type='kavlan'}/vlan=1,walltime=1:00:00"),
      });
      const running = await client.waitForJob('nancy', j.uid, { pollMs: [50] });
      const [n1, n2] = running.assigned_nodes;
      assert.ok(hooks.up.has(n1) && hooks.up.has(n2), 'up before the job is seen running');
      hooks.failReinstall.add(n2.split('.')[0]);
      const vlan = running.resources_by_type.vlans![0];
      const d = await client.submitDeployment('nancy', {
        nodes: [n1, n2],
        environment: 'debian12-min',
        key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFake test',
        vlan,
      });
      const done = await client.waitForDeployment('nancy', d.uid, { pollMs: 20 });
      assert.equal(done.result[n1].state, 'OK');
      assert.equal(done.result[n2].state, 'KO');
      assert.ok(hooks.calls.includes(`reinstall ${n1.split('.')[0]} debian12-min`));
      assert.equal(hooks.keys.get(n1.split('.')[0]), 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFake test');
      // the deployment's vlan moved the OK node's primary NIC
      const members = (await client.getVlanNodes('nancy', vlan)).map((m) => m.uid);
      assert.deepEqual(members, [n1]);
      await client.getJob('nancy', j.uid);
      assert.equal(hooks.vlanOf.get(n1.split('.')[0]), Number(vlan));

      hooks.dead.add(n2.split('.')[0]);
      const status = await (await fetch(`${server.url}/sites/nancy/status`)).json();
      assert.equal(status.nodes[n1].hard, 'alive');
      assert.equal(status.nodes[n2].hard, 'dead');

      await client.cancelJob('nancy', j.uid, { pollMs: 20 });
      for (let i = 0; i < 40 && hooks.up.size; i++) await new Promise((r) => setTimeout(r, 25));
      assert.equal(hooks.up.size, 0, 'machines removed when the job ended');
    } finally {
      await server.close();
    }
  });

  it('removes the machines of a job that reaches its walltime with no request coming', async () => {
    const hooks = new FakeMachines();
    const server = await startApiServer({
      inventory: inv,
      launchDelaySeconds: 0,
      machines: hooks,
      machinesTickMs: 50,
    });
    try {
      const client = new G5kClient({ baseUrl: server.url, credentials: null, logger: silentLogger });
      const j = await client.submitJob('nancy', job("{cluster='grappe'}/nodes=1,walltime=0:00:01"));
      await client.waitForJob('nancy', j.uid, { pollMs: [20] });
      assert.equal(hooks.up.size, 1);
      for (let i = 0; i < 60 && hooks.up.size; i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal(hooks.up.size, 0, 'gone at the walltime');
    } finally {
      await server.close();
    }
  });

  it('without hooks keeps records only: a deployment finishes on its own', async () => {
    const server = await startApiServer({ inventory: inv, launchDelaySeconds: 0, deployDelaySeconds: 0 });
    try {
      const client = new G5kClient({ baseUrl: server.url, credentials: null, logger: silentLogger });
      const j = await client.submitJob('nancy', job("{cluster='grappe'}/nodes=1,walltime=1:00:00"));
      const running = await client.waitForJob('nancy', j.uid, { pollMs: [20] });
      const d = await client.submitDeployment('nancy', {
        nodes: running.assigned_nodes,
        environment: 'debian12-min',
      });
      const done = await client.waitForDeployment('nancy', d.uid, { pollMs: 20 });
      assert.equal(done.result[running.assigned_nodes[0]].state, 'OK');
    } finally {
      await server.close();
    }
  });
});

// Re-planning after machines stayed KO: VMs move to the site's other hosts while they have room,
// the rest is reported; a lost service node is replaced by a host of its site.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfigText } from '../../../src/lib/config/load.js';
import { buildPlan, type HostPlan, type PlannerHost } from '../../../src/lib/planner/plan.js';
import { replanAfterLoss } from '../../../src/lib/planner/replan.js';
import { planVlanNetwork } from '../../../src/lib/planner/vlan.js';

const host = (n: number): PlannerHost => ({
  uid: `h-${n}`,
  fqdn: `h-${n}.s.test`,
  cluster: 'h',
  cores: 8,
  threads: 8,
  ramMB: 16384,
});

/** One site, one service node (h-4, the last) and VM hosts h-1..h-3 of `perHost` VMs each. */
function planOf(vms: number, perHost = 4, hosts = 4) {
  const config = parseConfigText(
    `name: t\nprovider: g5k\napi: { url: "http://127.0.0.1:1/stable" }\nvms: { perHost: ${perHost} }\nsites: [{ name: s, vms: ${vms}, clusters: [{ name: h, hosts: ${hosts} }] }]\n`,
    't.yaml',
  );
  return buildPlan(
    config,
    [
      {
        name: 's',
        index: 0,
        hosts: Array.from({ length: hosts }, (_, i) => host(i + 1)),
        network: '10.144.0.0/14',
        gateway: '10.147.255.254',
        wantedVms: vms,
        serviceNodes: 1,
      },
    ],
    't.yaml',
  );
}

const spare = (n: number, capacity: number): HostPlan => ({
  host: `h-${n}.s.test`,
  uid: `h-${n}`,
  cluster: 'h',
  cores: 8,
  threads: 8,
  ramMB: 16384,
  capacity,
  vms: 0,
});

describe('replanAfterLoss', () => {
  it('changes nothing when nothing was lost', () => {
    const plan = planOf(7);
    const r = replanAfterLoss(plan, new Set());
    assert.deepEqual(r.plan, plan);
    assert.deepEqual([r.lostHosts, r.moved, r.unplaced, r.replacedServiceNodes], [[], [], [], []]);
  });

  it("moves a lost host's VMs to the hosts with room and reports what does not fit", () => {
    const plan = planOf(9); // h-1, h-2, h-3: 3 of 4 each; h-4 service node
    assert.deepEqual(
      plan.sites[0].hosts.map((h) => [h.host, h.vms]),
      [
        ['h-1.s.test', 3],
        ['h-2.s.test', 3],
        ['h-3.s.test', 3],
      ],
    );
    const r = replanAfterLoss(plan, new Set(['h-1.s.test']));
    assert.deepEqual(r.lostHosts, ['h-1.s.test']);
    // 3 orphans, room for 1 + 1.
    assert.deepEqual(
      r.moved.map((m) => [m.vm, m.to]),
      [
        ['vm-s-1', 'h-2.s.test'],
        ['vm-s-2', 'h-3.s.test'],
      ],
    );
    assert.deepEqual(
      r.unplaced.map((v) => [v.name, v.host]),
      [['vm-s-3', 'h-1.s.test']],
    );
    assert.deepEqual(
      r.plan.sites[0].hosts.map((h) => [h.host, h.vms]),
      [
        ['h-2.s.test', 4],
        ['h-3.s.test', 4],
      ],
    );
    assert.equal(r.plan.totals.vms, 8);
    assert.equal(r.plan.totals.hosts, 2);
    // A moved VM keeps its address and MAC.
    const before = plan.sites[0].vms[0];
    const after = r.plan.sites[0].vms.find((v) => v.name === before.name)!;
    assert.deepEqual([after.ip, after.mac, after.host], [before.ip, before.mac, 'h-2.s.test']);

    const two = replanAfterLoss(plan, new Set(['h-1.s.test', 'h-2.s.test']));
    assert.equal(two.moved.length, 1, 'h-3 has room for 1 of the 6');
    assert.equal(two.unplaced.length, 5);
    assert.equal(two.plan.totals.vms, 4);
  });

  it('uses a spare host of the site when the others are full', () => {
    const plan = planOf(12); // three hosts, full
    const without = replanAfterLoss(plan, new Set(['h-2.s.test']));
    assert.equal(without.unplaced.length, 4);
    const r = replanAfterLoss(plan, new Set(['h-2.s.test']), { s: [spare(5, 4)] });
    assert.deepEqual(r.unplaced, []);
    assert.deepEqual(new Set(r.moved.map((m) => m.to)), new Set(['h-5.s.test']));
    assert.ok(r.plan.sites[0].hosts.some((h) => h.host === 'h-5.s.test' && h.vms === 4));
  });

  it('replaces a lost service node by the host with the fewest VMs, whose VMs move', () => {
    const plan = planOf(9);
    const sn = plan.sites[0].serviceNodes[0];
    assert.equal(sn.host, 'h-4.s.test');
    const r = replanAfterLoss(plan, new Set(['h-4.s.test']));
    assert.deepEqual(r.replacedServiceNodes, [{ site: 's', lost: 'h-4.s.test', by: 'h-1.s.test' }]);
    const site = r.plan.sites[0];
    assert.deepEqual(site.serviceNodes, [{ ...sn, host: 'h-1.s.test' }], 'same address and roles');
    assert.deepEqual(
      r.moved.map((m) => [m.from, m.to]),
      [
        ['h-1.s.test', 'h-2.s.test'],
        ['h-1.s.test', 'h-3.s.test'],
      ],
    );
    assert.equal(r.unplaced.length, 1);
    assert.ok(site.vms.every((v) => v.serviceNode === 'h-1.s.test' && v.host !== 'h-1.s.test'));
    assert.deepEqual(r.lostHosts, []);
  });

  it('reports every VM of a site left without a service node', () => {
    const plan = planOf(1, 4, 2); // h-1 carries the VM, h-2 is the service node
    const r = replanAfterLoss(plan, new Set(['h-1.s.test', 'h-2.s.test']));
    assert.deepEqual(r.replacedServiceNodes, [{ site: 's', lost: 'h-2.s.test', by: null }]);
    assert.deepEqual(
      r.unplaced.map((v) => v.name),
      ['vm-s-1'],
    );
    assert.equal(r.plan.totals.vms, 0);
  });
});

describe('planVlanNetwork', () => {
  it("gives the VMs the VLAN's gateway and the DNS service nodes", () => {
    const site = planOf(2).sites[0];
    const routed = planVlanNetwork(
      site,
      { id: 4, type: 'kavlan' },
      {
        '4': { network: '10.16.0.0/18', gateway: '10.16.63.254' },
      },
    );
    assert.equal(routed.vmGateway, '10.16.63.254');
    assert.deepEqual(routed.vmDns, [site.serviceNodes[0].ip]);
    assert.deepEqual(routed.vlan, {
      id: 4,
      type: 'kavlan',
      network: '10.16.0.0/18',
      gateway: '10.16.63.254',
    });
    const unlisted = planVlanNetwork(site, { id: 5, type: 'kavlan' }, {});
    assert.equal(unlisted.vmGateway, site.gateway, 'without a kavlans entry the site gateway stays');
    const noDns = planVlanNetwork(
      { ...site, serviceNodes: site.serviceNodes.map((s) => ({ ...s, roles: ['dhcp'] })) },
      { id: 4, type: 'kavlan' },
      { '4': { network: '10.16.0.0/18', gateway: '10.16.63.254' } },
    );
    assert.deepEqual(noDns.vmDns, ['10.16.63.254']);
  });
});

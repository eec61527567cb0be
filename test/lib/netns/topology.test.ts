import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../../src/lib/config/load.js';
import { buildTopology, overlappingRoutes, testbedTag } from '../../../src/lib/netns/topology.js';
import { buildPlan } from '../../../src/lib/planner/plan.js';
import { localLayout } from '../../../src/lib/provider/local-layout.js';
import { localPlannerSites } from '../../helpers/local-plan.js';

describe('local testbed topology', () => {
  it('gives every host and service node a namespace on the hosts network and its site VLAN', async () => {
    const { config, source } = await loadConfig();
    const plan = buildPlan(config, localPlannerSites(config, source), source);
    const topo = buildTopology(plan, localLayout(config, source), config.network.prefix);
    assert.equal(topo.fabricNs, 'kb-local-small-fabric');
    assert.deepEqual(
      topo.bridges.map((b) => `${b.name} ${b.address}`),
      ['prod 10.213.0.2/20', 'vlan0 10.213.31.254/20', 'vlan1 10.213.47.254/20'],
    );
    assert.equal(topo.namespaces.length, 6);
    const service = topo.namespaces.filter((n) => n.role === 'service');
    assert.deepEqual(
      service.map((n) => [n.ns, n.interfaces[1].bridge, n.interfaces[1].address]),
      [
        ['kb-local-small-grappe-3-nancy', 'vlan0', '10.213.16.1/20'],
        ['kb-local-small-paravance-3-rennes', 'vlan1', '10.213.32.1/20'],
      ],
    );
    const peers = topo.namespaces.flatMap((n) => n.interfaces.map((i) => i.fabricPeer));
    assert.equal(new Set(peers).size, peers.length, 'fabric peer names are unique');
    for (const name of [...peers, topo.controller.link])
      assert.ok(name.length <= 15, `${name} is too long for Linux`);
    assert.deepEqual(topo.controller.route, { dst: '10.213.0.0/16', via: '10.213.0.2' });
    assert.equal(topo.controller.link, `kb${testbedTag('local-small')}c`);
  });

  it('gives the emulated runtime one namespace per site holding every host address and VM routes by the VLAN', async () => {
    const { config, source } = await loadConfig('recipes/seed-4552.yaml');
    const plan = buildPlan(config, localPlannerSites(config, source), source);
    const topo = buildTopology(plan, localLayout(config, source), config.network.prefix, 'per-site');
    const emulated = topo.namespaces.filter((n) => n.role === 'host-group');
    assert.deepEqual(
      emulated.map((n) => n.ns),
      plan.sites.map((s) => `kb-seed-4552-emu-${s.name}`),
    );
    assert.equal(topo.namespaces.filter((n) => n.role === 'service').length, 47);
    assert.equal(topo.namespaces.filter((n) => n.role === 'host').length, 0);
    plan.sites.forEach((site, i) => {
      const ns = emulated[i];
      assert.deepEqual(
        ns.hosts?.map((h) => h.fqdn),
        site.hosts.map((h) => h.host),
      );
      const eth0 = ns.interfaces[0];
      assert.equal(1 + (eth0.aliases?.length ?? 0), site.hosts.length);
      assert.equal(ns.interfaces[1].bridge, `vlan${i}`);
      assert.equal(ns.interfaces[1].address, null);
      // VM-sourced traffic leaves by the VLAN through the site gateway, broadcasts too
      assert.deepEqual(ns.rules, [{ from: site.network, table: 100, priority: 100 }]);
      assert.ok(ns.routes.some((r) => r.dst === 'default' && r.via === site.gateway && r.table === 100));
      assert.ok(ns.routes.some((r) => r.type === 'broadcast' && r.table === 'local' && r.dev === 'vlan0'));
    });
    const peers = topo.namespaces.flatMap((n) => n.interfaces.map((i) => i.fabricPeer));
    assert.equal(new Set(peers).size, peers.length);
  });

  it('finds routes and addresses that overlap the prefix, ignoring the default route and its own link', () => {
    const routes = [
      { dst: 'default', dev: 'eth0' },
      { dst: '192.0.2.0/24', dev: 'eth0' },
      { dst: '10.213.5.7/24', dev: 'eth1' },
      { dst: '10.0.0.0/8', dev: 'wg0' },
      { dst: '10.213.0.0/16', dev: 'kbabcdefc' },
      { dst: '10.214.0.1', dev: 'lo' },
    ];
    assert.deepEqual(overlappingRoutes('10.213.0.0/16', routes, 'kbabcdefc'), [
      '10.213.5.0/24 dev eth1',
      '10.0.0.0/8 dev wg0',
    ]);
    assert.deepEqual(overlappingRoutes('10.214.0.0/16', routes, 'x'), [
      '10.0.0.0/8 dev wg0',
      '10.214.0.1/32 dev lo',
    ]);
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig, parseConfigText } from '../../../src/lib/config/load.js';
import { containsAddress, ipToInt, parsePrefix } from '../../../src/lib/net/ipv4.js';
import { macForIp } from '../../../src/lib/planner/addressing.js';
import { vmCapacity } from '../../../src/lib/planner/capacity.js';
import { apportion, buildPlan, type Plan, type PlannerSite } from '../../../src/lib/planner/plan.js';
import { localPlannerSites } from '../../helpers/local-plan.js';

function planOf(path?: string) {
  return loadConfig(path).then(({ config, source }) => {
    const sites = localPlannerSites(config, source);
    return { config, plan: buildPlan(config, sites, source) };
  });
}

/** Invariants every plan must hold, whatever its size. */
function assertSound(plan: Plan) {
  const ips = new Set<string>();
  const macs = new Set<string>();
  for (const site of plan.sites) {
    const net = parsePrefix(site.network);
    const blocks = site.blocks.map(parsePrefix);
    for (const vm of site.vms) {
      assert.ok(!ips.has(vm.ip), `duplicate IP ${vm.ip}`);
      assert.ok(!macs.has(vm.mac), `duplicate MAC ${vm.mac}`);
      ips.add(vm.ip);
      macs.add(vm.mac);
      const ip = ipToInt(vm.ip);
      assert.ok(containsAddress(net, ip), `${vm.name} ${vm.ip} outside ${site.network}`);
      assert.ok(
        blocks.some((b) => containsAddress(b, ip)),
        `${vm.name} outside reserved blocks`,
      );
      assert.notEqual(vm.ip, site.gateway);
      assert.equal(vm.mac, macForIp(ip));
    }
    for (const sn of site.serviceNodes) {
      assert.ok(!ips.has(sn.ip), `service node IP ${sn.ip} reused`);
      ips.add(sn.ip);
      assert.ok(!site.hosts.some((h) => h.host === sn.host), `${sn.host} is both service node and VM host`);
    }
    for (const h of site.hosts) {
      assert.ok(h.vms <= h.capacity, `${h.host} carries ${h.vms} VMs over its capacity ${h.capacity}`);
      assert.equal(site.vms.filter((v) => v.host === h.host).length, h.vms);
    }
  }
}

describe('planner', () => {
  it('plans the built-in local default: 8 VMs on 4 hosts, a service node per site', async () => {
    const { plan } = await planOf();
    assert.deepEqual(plan.totals, { sites: 2, hosts: 4, serviceNodes: 2, vms: 8, subnets22: 2 });
    assertSound(plan);
    assert.deepEqual(
      plan.sites.map((s) => s.hosts.map((h) => h.vms)),
      [
        [2, 2],
        [2, 2],
      ],
    );
    assert.equal(plan.sites[0].vms[0].fqdn, 'vm-nancy-1.local-small.test');
  });

  it('plans the 4552-VM seed in 6 subnets, fast, within every host capacity', async () => {
    const t0 = performance.now();
    const { plan } = await planOf('recipes/seed-4552.yaml');
    const ms = performance.now() - t0;
    assert.equal(plan.totals.vms, 4552);
    assert.equal(plan.totals.hosts, 355);
    assert.equal(plan.totals.serviceNodes, 47);
    assert.equal(new Set(plan.sites.map((s) => s.network)).size, 6);
    assertSound(plan);
    const perHost = plan.sites.flatMap((s) => s.hosts.map((h) => h.vms));
    assert.ok(Math.min(...perHost) >= 2 && Math.max(...perHost) <= 16, 'seed keeps 2-16 VMs per host');
    assert.ok(ms < 1000, `planning took ${ms} ms`);
  });

  it('is deterministic', async () => {
    const a = await planOf('recipes/seed-4552.yaml');
    const b = await planOf('recipes/seed-4552.yaml');
    assert.deepEqual(a.plan, b.plan);
  });

  it('reserves only the hosts a wanted VM count needs, biggest first', () => {
    const config = parseConfigText(
      `name: t
sites:
  - name: s
    vms: 20
    clusters:
      - { name: big, hosts: 3, hardware: { cores: 8, ramMB: 32768 } }
      - { name: small, hosts: 4, hardware: { cores: 2, ramMB: 4096 } }
`,
      't.yaml',
    );
    const plan = buildPlan(config, localPlannerSites(config, 't.yaml'), 't.yaml');
    const site = plan.sites[0];
    // big hosts carry 16 each: two of them hold 20; the service node is a small host.
    assert.deepEqual(
      site.hosts.map((h) => [h.uid, h.vms]),
      [
        ['big-1', 10],
        ['big-2', 10],
      ],
    );
    assert.deepEqual(
      site.serviceNodes.map((s) => s.host),
      ['small-4.s.t.test'],
    );
    assert.deepEqual(site.reserve.clusters, { big: 2, small: 1 });
  });

  it('splits a global VM count over sites by capacity', () => {
    const config = parseConfigText(
      `name: t
vms: { count: 30 }
sites:
  - { name: a, clusters: [{ name: x, hosts: 3, hardware: { cores: 8, ramMB: 32768 } }] }
  - { name: b, clusters: [{ name: y, hosts: 2, hardware: { cores: 8, ramMB: 32768 } }] }
`,
      't.yaml',
    );
    const plan = buildPlan(config, localPlannerSites(config, 't.yaml'), 't.yaml');
    assert.deepEqual(
      plan.sites.map((s) => s.vms.length),
      [20, 10],
    );
  });

  it('binds to reserved /22 blocks, skipping each block first address', () => {
    const config = parseConfigText(
      `name: t
provider: g5k
api: { url: 'http://127.0.0.1:1/stable' }
vms: { perHost: 3 }
sites: [{ name: s, clusters: [{ name: c, hosts: 2 }] }]
`,
      't.yaml',
    );
    const site: PlannerSite = {
      name: 's',
      index: 0,
      hosts: ['c-1', 'c-2', 'c-3'].map((uid) => ({
        uid,
        fqdn: `${uid}.s.grid5000.fr`,
        cluster: 'c',
        cores: 4,
        threads: 8,
        ramMB: 16384,
      })),
      network: '10.144.0.0/14',
      gateway: '10.147.255.254',
      blocks: ['10.144.8.0/22'],
      wantedVms: 'auto',
      serviceNodes: 1,
    };
    const plan = buildPlan(config, [site], 't.yaml');
    assert.equal(plan.sites[0].serviceNodes[0].ip, '10.144.8.1');
    assert.deepEqual(
      plan.sites[0].vms.map((v) => v.ip),
      ['10.144.8.2', '10.144.8.3', '10.144.8.4', '10.144.8.5', '10.144.8.6', '10.144.8.7'],
    );
    assert.equal(plan.sites[0].vms[0].mac, '00:16:3e:90:08:02');
    assert.equal(plan.sites[0].netmask, '255.252.0.0');
  });

  const refusals: [string, string, RegExp][] = [
    [
      'a flavour bigger than any host',
      `name: t
vms: { flavour: { memoryMB: 65536 } }
sites: [{ name: s, clusters: [{ name: c, hosts: 2, hardware: { cores: 4, ramMB: 16384 } }] }]`,
      /vms\.flavour: a VM of 1 vCPU\(s\) and 65536 MB .* fits on no host; the largest is c-1\.s\.t\.test with 16384 MB/,
    ],
    [
      'more VMs than the site subnet holds',
      `name: t
vms: { perHost: 16 }
sites: [{ name: s, subnet: 10.213.16.0/27, vms: 40, clusters: [{ name: c, hosts: 4, hardware: { cores: 16, ramMB: 65536 } }] }]`,
      /sites\[0\]\.subnet: 40 VMs and 1 service node\(s\) need 41 addresses but 10\.213\.16\.0\/27 has 29/,
    ],
    [
      'more VMs than the hosts carry',
      `name: t
sites: [{ name: s, vms: 100, clusters: [{ name: c, hosts: 2, hardware: { cores: 2, ramMB: 4096 } }] }]`,
      /sites\[0\]\.vms: 100 VMs wanted at s but its 1 VM host\(s\) carry at most 3/,
    ],
    [
      'no host left for VMs after the service nodes',
      `name: t
sites: [{ name: s, serviceNodes: 2, clusters: [{ name: c, hosts: 2, hardware: { cores: 2, ramMB: 4096 } }] }]`,
      /sites\[0\]\.clusters: site s has 2 host\(s\) but needs 2 service node\(s\) plus at least one VM host/,
    ],
  ];
  for (const [what, yaml, re] of refusals) {
    it(`refuses ${what} in one line naming the field`, () => {
      const config = parseConfigText(yaml, 't.yaml');
      assert.throws(
        () => buildPlan(config, localPlannerSites(config, 't.yaml'), 't.yaml'),
        (e: Error) => re.test(e.message) && !e.message.includes('\n'),
      );
    });
  }
});

describe('capacity', () => {
  const policy = {
    perCore: 2,
    maxPerHost: 16,
    overheadMB: 64,
    hostReserveMB: 1024,
    flavour: { vcpus: 1, memoryMB: 914, diskMB: 1 },
  };
  const table: [string, { cores: number; threads: number; ramMB: number }, number, string][] = [
    ['memory-bound', { cores: 8, threads: 8, ramMB: 8192 }, 7, 'memory'],
    ['cpu-bound', { cores: 2, threads: 2, ramMB: 32768 }, 4, 'cpu'],
    ['capped', { cores: 24, threads: 48, ramMB: 131072 }, 16, 'cap'],
    ['too small', { cores: 1, threads: 1, ramMB: 1024 }, 0, 'memory'],
  ];
  for (const [what, hw, vms, limit] of table) {
    it(what, () => assert.deepEqual(vmCapacity(hw, policy), { vms, limit }));
  }
  it('perHost overrides the policy', () => {
    assert.deepEqual(vmCapacity({ cores: 2, threads: 2, ramMB: 32768 }, { ...policy, perHost: 9 }), {
      vms: 9,
      limit: 'perHost',
    });
  });
  it('apportions by largest remainder within caps', () => {
    assert.deepEqual(apportion(10, [16, 16, 16]), [4, 3, 3]);
    assert.deepEqual(apportion(5, [1, 10]), [0, 5]);
    assert.deepEqual(apportion(12, [1, 10]), [1, 10]);
    assert.deepEqual(apportion(0, [3, 3]), [0, 0]);
  });
});

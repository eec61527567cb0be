// setup's reinstall and KaVLAN phases on the g5k provider, against the embedded API with
// injected faults: a machine KO twice then OK ends in the testbed; one KO for good is lost and
// its VMs are re-planned or reported; a refused VLAN move is an error naming the machine.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfigText } from '../../../src/lib/config/load.js';
import { ExitCode, TestbedError } from '../../../src/lib/errors.js';
import { silentLogger } from '../../../src/lib/log.js';
import { silentProgress } from '../../../src/lib/progress.js';
import { StateStore } from '../../../src/lib/state/store.js';
import { setupExitCode, setupTestbed } from '../../../src/lib/testbed/setup/index.js';
import { embeddedApiEachTest } from '../../helpers/embedded-api.js';

const ctx = { logger: silentLogger, progress: silentProgress };
const opts = { waitTimeoutMs: 20_000, until: 'vlan' as const };
const node = (n: number) => `grappe-${n}.nancy.grid5000.fr`;

// grappe-4 is the service node; grappe-1 and grappe-2 carry 2 VMs each, grappe-3 one.
function configFor(url: string) {
  const text = `name: g5k-r
provider: g5k
api: { url: '${url}', credentials: none, retries: 1 }
reinstall: { environment: debian12-min, redeploys: 2 }
vms: { perHost: 2, flavour: { memoryMB: 512 } }
sites:
  - { name: nancy, vms: 5, clusters: [{ name: grappe, queue: production, hosts: [grappe-1, grappe-2, grappe-3, grappe-4] }] }
`;
  return { config: parseConfigText(text, 'g5k-r.yaml'), source: 'g5k-r.yaml', baseDir: '.', file: '.' };
}

describe('setup on g5k: reinstall and KaVLAN', () => {
  const api = embeddedApiEachTest('g5k-r');

  it('deploys every machine with the environment, the key and the VLAN, and stops its DHCP', async () => {
    const result = await setupTestbed(configFor(api().url), opts, ctx);
    assert.equal(result.phase, 'vlan');
    assert.equal(setupExitCode(result), ExitCode.ok);
    const vlan = result.discovered.nancy.vlans[0];
    assert.deepEqual(
      result.machines.map((m) => [m.node, m.role, m.state, m.address]),
      [1, 2, 3, 4].map((n) => [
        node(n),
        n === 4 ? 'service node' : 'host',
        'ok',
        // not Grid'5000's API: its machines are reached at their reference document's address
        `172.16.70.${n}`,
      ]),
    );
    const [deployment] = api().scheduler.listDeployments('nancy');
    assert.equal(deployment.environment, 'debian12-min');
    assert.equal(deployment.vlan, String(vlan));
    const key = await import('node:fs/promises').then((fs) =>
      fs.readFile(new StateStore('g5k-r').layout.ssh.clientPublicKey, 'utf8'),
    );
    assert.equal(deployment.key, key.trim());
    assert.equal(api().scheduler.vlan('nancy', vlan).dhcpd, 'stopped');
    assert.deepEqual(api().scheduler.vlanNodes('nancy', vlan), [1, 2, 3, 4].map(node));
    assert.deepEqual(result.vlans, [
      {
        site: 'nancy',
        vlan,
        type: 'kavlan',
        members: 4,
        gateway: result.plan.sites[0].vlan?.gateway ?? null,
      },
    ]);
    assert.ok(result.plan.sites[0].vmGateway, 'the VMs have a gateway in the VLAN');
  });

  it('goes on over SSH only to machines on this machine: an API without machines is refused, nothing sent', async () => {
    // The fixture's documents give Grid'5000's own private addresses (172.16.70.N): off this machine.
    await assert.rejects(
      setupTestbed(configFor(api().url), { waitTimeoutMs: 20_000 }, ctx),
      (e: Error) =>
        e instanceof TestbedError &&
        /is not Grid'5000's, and 4 machine\(s\) it gave are not on this machine: grappe-4\.nancy\.grid5000\.fr \(172\.16\.70\.4\), grappe-1\.nancy\.grid5000\.fr \(172\.16\.70\.1\)/.test(
          e.message,
        ),
    );
    const state = await new StateStore('g5k-r').read();
    assert.equal(state?.phase, 'vlan', 'the KaVLAN phase is done; a resume goes on from there');
    assert.equal(state?.resources.filter((r) => r.kind === 'vm-host').length, 0, 'no host was contacted');
  });

  it('redeploys a machine KO twice, which then ends in the testbed; a resume deploys nothing', async () => {
    api().faults.failDeployNodes([node(2)], 2);
    const result = await setupTestbed(configFor(api().url), opts, ctx);
    const m = result.machines.find((x) => x.node === node(2))!;
    assert.deepEqual([m.state, m.deployments], ['ok', 3]);
    assert.ok(result.machines.every((x) => x.state === 'ok'));
    assert.deepEqual(result.loss?.lostHosts, []);
    assert.equal(result.plan.totals.vms, 5);
    assert.equal(setupExitCode(result), ExitCode.ok);
    assert.equal(api().scheduler.listDeployments('nancy').length, 3);

    const again = await setupTestbed(configFor(api().url), opts, ctx);
    assert.equal(api().scheduler.listDeployments('nancy').length, 3, 'OK machines are not deployed again');
    assert.deepEqual(again.machines, result.machines);
  });

  it('loses a host KO for good: its VMs go where there is room, the rest is reported', async () => {
    api().faults.failDeployNodes([node(1)], Number.POSITIVE_INFINITY);
    const result = await setupTestbed(configFor(api().url), opts, ctx);
    const lost = result.machines.find((x) => x.node === node(1))!;
    assert.equal(lost.state, 'ko');
    assert.equal(lost.deployments, 3, 'one deployment and two redeploys');
    assert.match(lost.reason ?? '', /failed at BootNewEnv\/wait_reboot/);
    assert.deepEqual(result.loss?.lostHosts, [node(1)]);
    // grappe-3 had room for one of grappe-1's two VMs.
    assert.deepEqual(result.loss?.moved, [{ vm: 'vm-nancy-1', from: node(1), to: node(3) }]);
    assert.deepEqual(result.loss?.unplaced, [{ vm: 'vm-nancy-2', host: node(1) }]);
    assert.equal(result.plan.totals.vms, 4);
    assert.ok(!result.plan.sites[0].hosts.some((h) => h.host === node(1)));
    assert.equal(setupExitCode(result), ExitCode.partial);
    const state = await new StateStore('g5k-r').read();
    assert.equal(state?.machines?.[node(1)]?.state, 'ko');
    assert.equal(state?.plan?.totals.vms, 4, 'the state holds the re-planned plan');
    assert.ok(
      !api().scheduler.vlanNodes('nancy', result.discovered.nancy.vlans[0]).includes(node(1)),
      'a KO machine is not checked for VLAN membership',
    );
  });

  it('replaces a service node KO for good by a host of its site', async () => {
    api().faults.failDeployNodes([node(4)], Number.POSITIVE_INFINITY);
    const result = await setupTestbed(configFor(api().url), opts, ctx);
    assert.deepEqual(result.loss?.replacedServiceNodes, [{ site: 'nancy', lost: node(4), by: node(3) }]);
    assert.deepEqual(
      result.plan.sites[0].serviceNodes.map((s) => s.host),
      [node(3)],
    );
    // grappe-3's VM found no room on the full grappe-1 and grappe-2.
    assert.deepEqual(result.loss?.unplaced, [{ vm: 'vm-nancy-5', host: node(3) }]);
    assert.deepEqual(result.loss?.lostHosts, []);
    assert.equal(setupExitCode(result), ExitCode.partial);
  });

  it('names a machine whose VLAN move KaVLAN refuses', async () => {
    api().faults.refuseVlanMoves([node(2)]);
    await assert.rejects(
      setupTestbed(configFor(api().url), opts, ctx),
      (e: unknown) =>
        e instanceof TestbedError &&
        /^KaVLAN \d+ at nancy: 1 machine\(s\) not in the VLAN after their deployment: grappe-2\.nancy\.grid5000\.fr \(the API answered unchanged: /.test(
          e.message,
        ),
    );
    const state = await new StateStore('g5k-r').read();
    assert.equal(state?.phase, 'failed');
    assert.equal(state?.machines?.[node(2)]?.state, 'ok', 'its deployment itself went well');
  });
});

describe('setupExitCode', () => {
  const machine = (state: 'ok' | 'ko') => ({
    node: 'n',
    site: 's',
    role: 'host' as const,
    state,
    deployments: 1,
    vlan: null,
    address: 'n',
  });
  const loss = (unplaced: number) => ({
    lostHosts: ['n'],
    replacedServiceNodes: [],
    moved: [],
    unplaced: Array.from({ length: unplaced }, () => ({ vm: 'v', host: 'n' })),
  });
  it('says whether machines were lost, and whether their VMs all found a place', () => {
    assert.equal(setupExitCode({ machines: [machine('ok')], loss: loss(0), vms: [] }), ExitCode.ok);
    assert.equal(setupExitCode({ machines: [machine('ko')], loss: loss(0), vms: [] }), ExitCode.machinesLost);
    assert.equal(setupExitCode({ machines: [machine('ko')], loss: loss(1), vms: [] }), ExitCode.partial);
    assert.equal(ExitCode.machinesLost, 8);
  });
});

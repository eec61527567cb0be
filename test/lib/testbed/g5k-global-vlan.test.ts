// setup's reinstall and KaVLAN phases with a global KaVLAN across two sites, against the embedded
// API: the VLAN is reserved once, with nancy's job, and rennes' machines join it too (as the real
// API lets its owner use it from any site), so every machine ends in the one VLAN.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfigText } from '../../../src/lib/config/load.js';
import { ExitCode } from '../../../src/lib/errors.js';
import { silentLogger } from '../../../src/lib/log.js';
import { silentProgress } from '../../../src/lib/progress.js';
import { setupExitCode, setupTestbed } from '../../../src/lib/testbed/setup/index.js';
import { embeddedApiEachTest } from '../../helpers/embedded-api.js';

const ctx = { logger: silentLogger, progress: silentProgress };
const opts = { waitTimeoutMs: 20_000, until: 'vlan' as const };
const nancy = [1, 2, 3, 4].map((n) => `grappe-${n}.nancy.grid5000.fr`);
const rennes = [1, 2, 3].map((n) => `paravance-${n}.rennes.grid5000.fr`);

function configFor(url: string) {
  const text = `name: g5k-global
provider: g5k
api: { url: '${url}', credentials: none, retries: 1 }
reinstall: { environment: debian12-min, redeploys: 0 }
vlan: { type: kavlan-global }
vms: { perHost: 2, flavour: { memoryMB: 512 } }
sites:
  - { name: nancy, vms: 6, clusters: [{ name: grappe, queue: production, hosts: [grappe-1, grappe-2, grappe-3, grappe-4] }] }
  - { name: rennes, vms: 4, clusters: [{ name: paravance, hosts: [paravance-1, paravance-2, paravance-3] }] }
`;
  return {
    config: parseConfigText(text, 'g5k-global.yaml'),
    source: 'g5k-global.yaml',
    baseDir: '.',
    file: '.',
  };
}

describe('setup on g5k with a global KaVLAN across two sites', () => {
  const api = embeddedApiEachTest('g5k-global');

  it('reserves the VLAN with the first site and ends with every machine of both sites in it', async () => {
    const result = await setupTestbed(configFor(api().url), opts, ctx);
    assert.equal(result.phase, 'vlan');
    assert.equal(setupExitCode(result), ExitCode.ok);
    assert.deepEqual(result.discovered.nancy.vlans, [16], "nancy's job holds its global VLAN");
    assert.deepEqual(result.discovered.rennes.vlans, [], "rennes' job holds no VLAN");
    const all = [...nancy, ...rennes].sort();
    assert.deepEqual(result.machines.map((m) => m.node).sort(), all, 'every machine of both sites');
    assert.ok(result.machines.every((m) => m.state === 'ok' && m.vlan === 16));
    // one L2 domain: the same members whichever site is asked
    assert.deepEqual([...api().scheduler.vlanNodes('nancy', 16)].sort(), all);
    assert.deepEqual([...api().scheduler.vlanNodes('rennes', 16)].sort(), all);
    assert.equal(api().scheduler.vlan('nancy', 16).dhcpd, 'stopped');
    assert.equal(api().scheduler.vlan('rennes', 16).dhcpd, 'stopped');
    const [deployment] = api().scheduler.listDeployments('rennes');
    assert.equal(deployment.vlan, '16', "rennes' machines were deployed into nancy's VLAN");
    assert.deepEqual(
      result.vlans.map((v) => [v.site, v.vlan, v.type, v.members]),
      [
        ['nancy', 16, 'kavlan-global', 4],
        ['rennes', 16, 'kavlan-global', 3],
      ],
    );
  });
});
